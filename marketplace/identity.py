"""Ed25519 identities and request signatures. The only module that imports `cryptography`.

A signature covers `signing_bytes(market, message_type, nonce, timestamp_ms, payload)`:

    b"gpumarket/v1\\x00" + market + b"\\x00" + message_type + b"\\x00" + nonce(16)
        + timestamp_ms (8 bytes, big endian) + payload

The market is the id of the marketplace the request is meant for (its admin key's address,
served by Market.Info), so a request signed for one marketplace is refused by every other. The
message type (e.g. "marketplace.api.v1.PlaceBid") separates domains, so a signed bid can never
pass as a signed manifest; the nonce and timestamp stop replays; the payload is the exact
serialized bytes the signer sent (protobuf serialization is not canonical, so the verifier never
re-serializes).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from marketplace.core.clock import Clock
from marketplace.core.errors import InvalidArgument, NotFound, Unauthenticated
from marketplace.core.limits import ADDRESS_PREFIX as ADDRESS_PREFIX  # the core checks addresses
from marketplace.core.limits import clipped
from marketplace.core.limits import is_address as is_address  # (limits.is_address) without us
from marketplace.userfiles import read_bounded

DOMAIN = b"gpumarket/v1\x00"
NONCE_BYTES = 16
MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM key file; a key is ~120 bytes of it
# A request older or newer than this (against the verifier's clock) is refused as stale.
DEFAULT_MAX_SKEW_MS = 60_000


@lru_cache(maxsize=65_536)  # every request derives its signer's address
def address_of(public_key: bytes) -> str:
    """A short, stable account address derived from a raw Ed25519 public key."""
    digest = hashlib.sha256(public_key).digest()[:20]
    return ADDRESS_PREFIX + base64.b32encode(digest).decode().lower()


def signing_bytes(
    market: str, message_type: str, nonce: bytes, timestamp_ms: int, payload: bytes
) -> bytes:
    return b"".join(
        (
            DOMAIN,
            market.encode(),
            b"\x00",
            message_type.encode(),
            b"\x00",
            nonce,
            struct.pack(">q", timestamp_ms),
            payload,
        )
    )


@dataclass(frozen=True)
class Signature:
    """What a signer attaches to a payload; maps 1:1 onto the wire's SignedRequest."""

    public_key: bytes
    signature: bytes
    nonce: bytes
    timestamp_ms: int
    market: str  # the marketplace it is meant for


class Key:
    """An Ed25519 key pair with its address."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.address = address_of(self.public_key)

    @classmethod
    def generate(cls) -> Key:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> Key:
        """The key in an unencrypted PEM; anything else is InvalidArgument, never a library's
        own exception (a user hands us key files: a typo must read as one line, not a trace)."""
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # TypeError: an encrypted key; ValueError: not PEM, or PEM of no key we read
            reason = "it is encrypted" if isinstance(exc, TypeError) else "not a PEM private key"
            raise InvalidArgument(f"not an Ed25519 private key ({reason})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise InvalidArgument("not an Ed25519 private key")
        return cls(private)

    @classmethod
    def from_file(cls, path: Path) -> Key:
        """The key in a PEM file; a missing, unreadable or malformed file is InvalidArgument
        naming the path."""
        try:
            pem = read_bounded(path, MAX_KEY_FILE_BYTES, "a key")  # a key is ~120 bytes
        except OSError as exc:
            raise InvalidArgument(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            return cls.from_pem(pem)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: {exc}") from None

    def to_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, market: str, message_type: str, payload: bytes, timestamp_ms: int) -> Signature:
        nonce = secrets.token_bytes(NONCE_BYTES)
        data = signing_bytes(market, message_type, nonce, timestamp_ms, payload)
        return Signature(self.public_key, self._private.sign(data), nonce, timestamp_ms, market)


@lru_cache(maxsize=65_536)  # a provider signs every message with one key: load it once
def _public_key(raw: bytes) -> Ed25519PublicKey:
    """The key object of 32 raw bytes (raises ValueError, never cached, for invalid ones)."""
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(message_type: str, payload: bytes, sig: Signature, market: str) -> str:
    """Check the signature alone, for the marketplace `market`; return the signer's address.
    Raises Unauthenticated."""
    if len(sig.public_key) != 32 or len(sig.signature) != 64 or len(sig.nonce) != NONCE_BYTES:
        raise Unauthenticated("malformed signature envelope")
    if sig.market != market:
        named = clipped(sig.market, 64) if sig.market else "none named"  # the sender's: cut
        raise Unauthenticated(
            f"signed for another marketplace ({named}); this is marketplace {market}"
        )
    data = signing_bytes(market, message_type, sig.nonce, sig.timestamp_ms, payload)
    try:
        _public_key(sig.public_key).verify(sig.signature, data)
    except (InvalidSignature, ValueError) as exc:
        raise Unauthenticated(f"bad signature for {message_type}") from exc
    return address_of(sig.public_key)


def envelope_digest(payload: bytes, sig: Signature) -> bytes:
    """What makes two envelopes the same message: every signed byte and the signature."""
    h = hashlib.blake2b(sig.signature, digest_size=16)
    h.update(payload)
    h.update(sig.timestamp_ms.to_bytes(8, "big", signed=True))
    h.update(sig.market.encode())
    return h.digest()


@dataclass(frozen=True, slots=True)
class SeenNonce:
    """A nonce the marketplace accepted: kept (in the store too) while its timestamp is fresh.

    `digest` names the envelope that spent it (envelope_digest; empty for a read's nonce), and
    `outcome` what that envelope's command came to, once it ran (None before): the result a
    resend's answer is found by (store_api.outcome_of says how it is written)."""

    public_key: bytes
    nonce: bytes
    timestamp_ms: int
    digest: bytes = b""
    outcome: str | None = None


class Resent(Unauthenticated):
    """The very envelope of a command accepted before: a resend, to be answered, not run
    again (server/once.py). Where no one answers it, it is refused as a replay."""

    def __init__(self, seen: SeenNonce) -> None:
        super().__init__("replayed request: nonce already used")
        self.seen = seen


class ReplayGuard:
    """Refuses stale timestamps and nonces seen before (within the skew window).

    A nonce only needs remembering while its timestamp is fresh: once it is older than the
    allowed skew, the timestamp check refuses it anyway, so the memory stays bounded.

    Across restarts: nonces of requests that change the market (`durable=True`) are also handed
    to the server (take_durable()), which writes them in the same transaction as the command
    they authorised, or an earlier one, and loads them again at start (remember()). So a
    request whose effect is on disk has its nonce on disk too. Reads (`durable=False`) change
    nothing a replay could repeat, so their nonces are kept in memory only (no write per read).

    Resends: a durable nonce is kept with its envelope's digest, and (settle()) what its
    command came to, written in the command's own transaction. The same envelope again raises
    Resent, carrying both, for the server to answer it without running it twice; the same
    nonce on other bytes is a forgery (or a signer's bug): refused as a replay.
    """

    def __init__(self, clock: Clock, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> None:
        self._clock = clock
        self.max_skew_ms = max_skew_ms
        self._seen: OrderedDict[bytes, SeenNonce] = OrderedDict()
        self._durable: list[SeenNonce] = []
        self._settled: list[SeenNonce] = []

    def check(self, sig: Signature, durable: bool = True, digest: bytes = b"") -> None:
        now = self._clock.now_ms()
        if abs(now - sig.timestamp_ms) > self.max_skew_ms:
            raise Unauthenticated(
                f"stale request: timestamp is {(now - sig.timestamp_ms) / 1000:+.1f}s off "
                f"the marketplace's clock (allowed ±{self.max_skew_ms / 1000:.0f}s)"
            )
        self._forget_before(self.cutoff_ms())
        key = sig.public_key + sig.nonce
        seen = self._seen.get(key)
        if seen is not None:
            if durable and seen.digest and seen.digest == digest:
                raise Resent(seen)
            raise Unauthenticated("replayed request: nonce already used")
        seen = SeenNonce(sig.public_key, sig.nonce, sig.timestamp_ms, digest if durable else b"")
        self._seen[key] = seen
        if durable:
            self._durable.append(seen)

    def accepted(self, public_key: bytes, nonce: bytes) -> bool:
        """Whether this nonce of this key was accepted (and is still remembered)."""
        return public_key + nonce in self._seen

    def settle(self, public_key: bytes, nonce: bytes, outcome: str) -> None:
        """What the command of an accepted nonce came to; for the store with the next
        transaction (the command's own, when called before the loop moves on)."""
        key = public_key + nonce
        seen = self._seen.get(key)
        if seen is None or seen.outcome is not None:
            return  # forgotten (stale), or settled already
        settled = SeenNonce(seen.public_key, seen.nonce, seen.timestamp_ms, seen.digest, outcome)
        self._seen[key] = settled
        self._settled.append(settled)

    def cutoff_ms(self) -> int:
        """Nonces with timestamps before this are refused as stale: no need to keep them."""
        return self._clock.now_ms() - self.max_skew_ms

    def remember(self, seen: SeenNonce) -> None:
        """A nonce accepted before a restart (loaded from the store, oldest first)."""
        self._seen[seen.public_key + seen.nonce] = seen

    def has_durable(self) -> bool:
        return bool(self._durable or self._settled)

    def take_durable(self) -> list[SeenNonce]:
        """The nonces of commands accepted since the last call, for the store."""
        taken, self._durable = self._durable, []
        return taken

    def take_settled(self) -> list[SeenNonce]:
        """The nonces whose outcome was settled since the last call, for the store."""
        taken, self._settled = self._settled, []
        return taken

    def _forget_before(self, cutoff_ms: int) -> None:
        # Insertion order approximates timestamp order; stop at the first fresh entry.
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if seen.timestamp_ms >= cutoff_ms:
                break
            del self._seen[key]


def verify(
    message_type: str,
    payload: bytes,
    sig: Signature,
    market: str,
    guard: ReplayGuard | None = None,
    durable: bool = True,
) -> str:
    """Signature (for `market`), then freshness and replay. Returns the signer's address."""
    address = verify_signature(message_type, payload, sig, market)
    if guard is not None:
        guard.check(sig, durable, envelope_digest(payload, sig) if durable else b"")
    return address


# ---------------------------------------------------------------------------------------------
# Key files


def config_dir() -> Path:
    """$GPUMARKET_HOME, else $XDG_CONFIG_HOME/gpumarket, else ~/.config/gpumarket."""
    if home := os.environ.get("GPUMARKET_HOME"):
        return Path(home)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpumarket"


def keys_dir() -> Path:
    return config_dir() / "keys"


def _key_path(name: str) -> Path:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise InvalidArgument(f"bad key name {name!r}: use letters, digits, '-', '_' and '.'")
    if name.endswith(".pem"):  # --key NAME.pem reads a file of that name, not this key
        raise InvalidArgument(f"bad key name {name!r}: name it without .pem")
    return keys_dir() / f"{name}.pem"


def create_key(name: str) -> Key:
    path = _key_path(name)
    if path.exists():
        raise InvalidArgument(f"key {name!r} exists already at {path}")
    key = Key.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL + mode 0600: the private key is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.to_pem())
    except OSError as exc:  # GPUMARKET_HOME a file, read-only, full, ...
        raise InvalidArgument(
            f"cannot create key {name!r} in {path.parent}: {exc.strerror or exc} "
            "(keys live under $GPUMARKET_HOME/keys, default ~/.config/gpumarket/keys)"
        ) from None
    return key


def is_key_path(name_or_path: str) -> bool:
    """Whether --key names a file (`./me.pem`, `/etc/gpumarket/key`) rather than a key name."""
    return "/" in name_or_path or name_or_path.endswith(".pem")


def load_key(name_or_path: str) -> Key:
    """A key by name (in keys_dir()) or by file path."""
    if is_key_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise NotFound(
                f"no key file {name_or_path}: pass an existing PEM file, or a key name "
                "(`gpumarket keys list`)"
            )
        return Key.from_file(path)
    path = _key_path(name_or_path)
    if not path.exists():
        raise NotFound(f"no key {name_or_path!r}: create one with `gpumarket keys create NAME`")
    return Key.from_file(path)


def load_agent_key(name_or_path: str) -> Key:
    """A provider agent's key, for the commands that read with it (they create none). A missing
    one is not to be created anew (that would be another provider): the hint says where the
    agent keeps its own."""
    try:
        return load_key(name_or_path)
    except NotFound:
        if is_key_path(name_or_path):
            raise  # "no key file PATH" says it
        raise NotFound(
            f"no provider key {name_or_path!r} in {keys_dir()}: the agent creates its key at its "
            "first `gpumarket provider run`; use the agent's GPUMARKET_HOME and its key "
            "([provider] key in its provider.toml)"
        ) from None


def load_or_create_key(name: str) -> Key:
    try:
        return load_key(name)
    except NotFound:
        if is_key_path(name):
            raise  # a file the user named is not made up in its place
        return create_key(name)


def list_keys() -> list[tuple[str, Key]]:
    directory = keys_dir()
    if not directory.exists():
        return []
    return [(p.stem, Key.from_file(p)) for p in sorted(directory.glob("*.pem"))]
