"""Several addresses of one marketplace (a leader and its standbys), and the rule for moving
between them: the one place the tenant CLI's clients (client.py) and the provider agent's link
(provider_agent/link.py) share.

    ring = AddressRing.parse("10.0.0.1:7420,10.0.0.2:7420")
    ring.current          # where calls go now
    ring.advance()        # it answered UNAVAILABLE (refused, or a standby "not the leader")

A ring sticks to the address that works: it moves only when told to (advance), and a round
trip through every address is one `round`, after which a caller should pause before the next
(`pause_s`, growing to a cap) until its time budget (`Failover`) runs out.

Every address must be the same marketplace: a signature names the market's id, not the
address, so a request sealed for one answers the same at another; a client checks each
address's id (Market.Info) before it sends there, and refuses to mix two markets
(`different_market`).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from marketplace.core.errors import InvalidArgument, MarketError

MAX_ADDRESSES = 16
DEFAULT_FAILOVER_S = 20.0  # a standby takes over within 10 s (issue 14): room for that and more


def parse_addresses(value: str | Iterable[str]) -> tuple[str, ...]:
    """'a:1,b:2' (or a list of such strings) as ('a:1', 'b:2'): blanks around commas dropped,
    repeats kept once, in order. Refuses an empty list or an empty entry."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    if not "".join(parts).strip():
        raise InvalidArgument("no marketplace address given: HOST:PORT[,HOST:PORT...]")
    found: list[str] = []
    for raw in parts:
        address = raw.strip()
        if not address:
            raise InvalidArgument(
                f"marketplace address list {_shown(value)!r} has an empty entry: "
                "give HOST:PORT[,HOST:PORT...]"
            )
        _check_host_port(address)
        if address not in found:
            found.append(address)
    if len(found) > MAX_ADDRESSES:
        raise InvalidArgument(f"at most {MAX_ADDRESSES} marketplace addresses, got {len(found)}")
    return tuple(found)


# HOST:PORT: a name or IPv4 address, or an IPv6 address in brackets, then a port
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def _check_host_port(address: str) -> None:
    """Refuse what cannot be dialled as one (no port, a port out of range, a URL), so the user
    reads what is wrong instead of "cannot reach"."""
    match = _HOST_PORT.match(address)
    if match is None or not 0 < int(match.group(1)) < 65536:
        shown = address if len(address) <= 80 else address[:80] + "…"
        raise InvalidArgument(
            f"marketplace address {shown!r} is not HOST:PORT (e.g. 127.0.0.1:7420)"
        )


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an IP, IPv6 with or without brackets) is this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def off_loopback(addresses: str) -> str | None:
    """The first of the HOST:PORT `addresses` that is not this machine, or None. Plaintext
    there puts everything on the wire readable (manifests, their env secrets, logs): the
    callers refuse it unless told to send it on purpose."""
    for address in parse_addresses(addresses):
        if not is_loopback(address.rpartition(":")[0]):
            return address
    return None


def _shown(value: str | Iterable[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def different_market(first: str, first_id: str, other: str, other_id: str) -> MarketError:
    """The error for two addresses that answer as different marketplaces."""
    return MarketError(
        f"the marketplaces at {first} (id {first_id}) and {other} (id {other_id}) are "
        "different markets: list only addresses of one marketplace (its leader and standbys)"
    )


@dataclass
class AddressRing:
    """The addresses, and which one calls go to now."""

    addresses: tuple[str, ...]
    index: int = 0
    moves: int = 0  # advances since the last success (a full round: len(addresses))

    @classmethod
    def parse(cls, value: str | Iterable[str]) -> AddressRing:
        return cls(parse_addresses(value))

    @property
    def current(self) -> str:
        return self.addresses[self.index]

    @property
    def several(self) -> bool:
        return len(self.addresses) > 1

    def advance(self) -> str:
        """Move on to the next address (after the last one: the first); the new current."""
        self.index = (self.index + 1) % len(self.addresses)
        self.moves += 1
        return self.current

    def succeeded(self) -> None:
        """The current address answered: stick to it."""
        self.moves = 0

    @property
    def round_done(self) -> bool:
        """Every address was tried since the last success (time to pause before going on)."""
        return self.moves > 0 and self.moves % len(self.addresses) == 0

    def __str__(self) -> str:
        return ",".join(self.addresses)


@dataclass
class Failover:
    """A time budget for moving between addresses: how long to keep trying, and the pauses
    between rounds (0.2 s, growing to 2 s)."""

    budget_s: float = DEFAULT_FAILOVER_S
    started: float = field(default_factory=time.monotonic)
    pause: float = 0.2

    @property
    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def next_pause_s(self) -> float:
        """How long to wait before the next round (never past the budget)."""
        wait = min(self.pause, max(self.left_s, 0.0))
        self.pause = min(self.pause * 2, 2.0)
        return wait
