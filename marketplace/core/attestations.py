"""Auditors: keys that sign a provider's attributes, and the rules that decide whether a signed
attribute satisfies a placement's `signedBy` (Akash's x/audit, MsgSignProviderAttributes and
MsgDeleteProviderAttributes; matching.placement_mismatches applies signedBy itself).

Pure: the auditor's signature is checked at the wire edge before the core sees an attestation
(the server keeps the auditor's signed request as its proof). Here:

- An attestation binds provider + attribute key/value + auditor + expiry. A later signature of
  the same (provider, auditor, key) replaces the earlier one; a revocation marks it revoked.
- The market trusts only the auditors its operator names (AuditorTrust): an untrusted auditor's
  signature is refused when submitted (PermissionDenied) and, should the operator stop trusting
  an auditor later, its attestations stop counting at once.
- Aliases map a foreign auditor name that real SDLs carry (Akash's own auditor, akash1365y...)
  onto a local one, so a signedBy naming the foreign one is satisfied by the local one's
  signatures; an alias's target is trusted.
- Expiry and revocation are judged on the market's clock: an attestation counts while
  now < expires_at_ms and it is not revoked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from marketplace.core import limits
from marketplace.core.errors import InvalidArgument, NotFound, PermissionDenied

DAY_MS = 86_400_000
DEFAULT_VALIDITY_MS = 90 * DAY_MS
MAX_VALIDITY_MS = 5 * 365 * DAY_MS  # an attestation is re-checked at least this often
# An SDL's auditor name (placement.py's rule): printable, no spaces, 1-128 characters.
_FOREIGN_NAME = re.compile(r"[!-~]{1,128}")


@dataclass(frozen=True, slots=True)
class Attestation:
    """One signed attribute: `auditor` says `provider` has key=value, until expires_at_ms."""

    provider: str
    auditor: str
    key: str
    value: str
    signed_at_ms: int
    expires_at_ms: int
    revoked_at_ms: int = 0  # 0: not revoked
    proof: bytes = b""  # the auditor's signed request, as received

    def with_proof(self, proof: bytes) -> Attestation:
        return replace(self, proof=proof)

    def valid_at(self, now_ms: int) -> bool:
        return not self.revoked_at_ms and now_ms < self.expires_at_ms


@dataclass(frozen=True)
class AuditorTrust:
    """Which auditors a market trusts, and the foreign names it reads as one of them."""

    auditors: frozenset[str] = frozenset()
    aliases: tuple[tuple[str, str], ...] = ()  # (foreign name, local auditor address)

    def __post_init__(self) -> None:
        for address in self.auditors:
            limits.check_address("auditor", address)
        seen: dict[str, str] = {}
        for foreign, local in self.aliases:
            if not _FOREIGN_NAME.fullmatch(foreign):
                raise InvalidArgument(
                    f"auditor alias {limits.shown(foreign)}: 1-128 printable characters"
                )
            limits.check_address(f"auditor alias {foreign}", local)
            if seen.setdefault(foreign, local) != local:
                raise InvalidArgument(f"auditor alias {foreign} maps to two auditors")

    def trusts(self, auditor: str) -> bool:
        return auditor in self.auditors or any(local == auditor for _, local in self.aliases)

    @property
    def trusted(self) -> tuple[str, ...]:
        return tuple(sorted({*self.auditors, *(local for _, local in self.aliases)}))

    def names_of(self, auditor: str) -> tuple[str, ...]:
        """What a placement's signedBy may call `auditor` on this market: its address and every
        foreign name aliased to it."""
        return (auditor, *sorted(f for f, local in self.aliases if local == auditor))


def parse_alias(text: str) -> tuple[str, str]:
    """'akash1...=gm1...' → (foreign, local), as `market serve --auditor-alias` takes it."""
    foreign, sep, local = text.partition("=")
    if not sep or not foreign or not local:
        raise InvalidArgument(f"auditor alias {limits.shown(text)}: use FOREIGN=LOCAL_ADDRESS")
    return foreign.strip(), local.strip()


class AttestationBook:
    """Every attestation the market holds, by provider; what changed waits for take_changed()."""

    def __init__(self, trust: AuditorTrust | None = None) -> None:
        self.trust = trust or AuditorTrust()
        self._by_provider: dict[str, dict[tuple[str, str], Attestation]] = {}
        self._changed: list[Attestation] = []

    def restore(self, attestations: Iterable[Attestation]) -> None:
        """Load stored attestations (nothing to write back)."""
        for att in attestations:
            self._by_provider.setdefault(att.provider, {})[(att.auditor, att.key)] = att

    def has_changes(self) -> bool:
        return bool(self._changed)

    def take_changed(self) -> list[Attestation]:
        """What changed since the last call: for the server to store."""
        changed, self._changed = self._changed, []
        return changed

    def _put(self, att: Attestation) -> None:
        self._by_provider.setdefault(att.provider, {})[(att.auditor, att.key)] = att
        self._changed.append(att)

    def sign(
        self,
        provider: str,
        auditor: str,
        attributes: Mapping[str, str],
        now_ms: int,
        expires_at_ms: int,
        proof: bytes = b"",
    ) -> list[Attestation]:
        """Record `auditor`'s signature of `attributes` for `provider` (already registered)."""
        if not self.trust.trusts(auditor):
            raise PermissionDenied(
                f"{auditor} is not an auditor this marketplace trusts "
                "(its operator names them: market serve --auditor)"
            )
        if not attributes:
            raise InvalidArgument("sign at least one attribute (KEY=VALUE)")
        limits.check_attributes(attributes)
        if expires_at_ms <= now_ms:
            raise InvalidArgument("the attestation has already expired (expires_at_ms ≤ now)")
        if expires_at_ms - now_ms > MAX_VALIDITY_MS:
            raise InvalidArgument(
                f"an attestation may run at most {MAX_VALIDITY_MS // DAY_MS} days; sign again later"
            )
        held = {key for signer, key in self._by_provider.get(provider, {}) if signer == auditor}
        if len(held | set(attributes)) > limits.MAX_ATTRIBUTES:
            raise InvalidArgument(
                f"an auditor may sign at most {limits.MAX_ATTRIBUTES} attributes of one provider; "
                "revoke some first"
            )
        signed = [
            Attestation(provider, auditor, key, value, now_ms, expires_at_ms, 0, proof)
            for key, value in sorted(attributes.items())
        ]
        for att in signed:
            self._put(att)
        return signed

    def revoke(
        self, provider: str, auditor: str, keys: Iterable[str], now_ms: int
    ) -> list[Attestation]:
        """Revoke `auditor`'s signatures of `keys` (all of them when none) for `provider`."""
        held = self._by_provider.get(provider, {})
        wanted = set(keys)
        mine = [
            att
            for (signer, key), att in sorted(held.items())
            if signer == auditor and (not wanted or key in wanted) and not att.revoked_at_ms
        ]
        if not mine:
            raise NotFound(f"{auditor} has signed no such attribute for {provider}")
        revoked = [replace(att, revoked_at_ms=now_ms) for att in mine]
        for att in revoked:
            self._put(att)
        return revoked

    def of_provider(self, provider: str) -> list[Attestation]:
        """Everything held for `provider`, expired and revoked ones too, by auditor and key."""
        return [att for _, att in sorted(self._by_provider.get(provider, {}).items())]

    def counts(self, att: Attestation, now_ms: int) -> bool:
        """Whether `att` satisfies signedBy now: trusted, not expired, not revoked."""
        return att.valid_at(now_ms) and self.trust.trusts(att.auditor)

    def signed_for(self, provider: str, now_ms: int) -> dict[str, dict[str, str]]:
        """What matching.placement_mismatches takes: for every name a placement may give an
        auditor (its address, its aliases), the attributes it signed for `provider` that count
        now."""
        audited: dict[str, dict[str, str]] = {}
        for (auditor, key), att in self._by_provider.get(provider, {}).items():
            if self.counts(att, now_ms):
                for name in self.trust.names_of(auditor):
                    audited.setdefault(name, {})[key] = att.value
        return audited
