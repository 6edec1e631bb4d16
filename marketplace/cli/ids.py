"""Short ids: what a person types for a deployment, order, bid or lease, resolved against the
caller's own records (signed list reads), in one place for every command.

The market's ids nest:

    deployment  D<n>                              D2
    order       <deployment>/<group>/<order seq>  D2/1/1   (a re-ordered group counts up: D2/1/2)
    bid         <order>/<provider address>        D2/1/1/<address>
    lease       the id of the bid that won it     D2/1/1/<address>

Short forms, each resolved among your own records only:
- `d2` and a bare `2` are D2;
- numbers are never cut short (D1 is D1, not D12), but the provider address may be: D2/1/1/3fa
  is the lease (or bid) of the provider whose address starts with 3fa;
- trailing parts may be left out when only one record matches: D2/1/1 or D2 names the lease of
  that order or deployment when it has just one.
A prefix that fits several records is refused with the candidates; one that fits none says so.
A full deployment, order or lease id is sent as typed: the market itself answers whether it is
yours (PERMISSION_DENIED when it is someone else's), so an outsider learns nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.limits import is_address, whole_number

SHOWN_CANDIDATES = 6
_DEPLOYMENT = re.compile(r"^D\d+$")
_ORDER = re.compile(r"^D\d+/\d+/\d+$")


def normalize(text: str) -> str:
    """Spaces trimmed, trailing slashes dropped, `d2`/`2` → `D2`."""
    text = text.strip().rstrip("/")
    head, sep, rest = text.partition("/")
    if whole_number(head) is not None:
        head = f"D{head}"
    elif head[:1] == "d" and whole_number(head[1:]) is not None:
        head = head.upper()
    return head + sep + rest


def matching(text: str, ids: Sequence[str]) -> list[str]:
    """The ids that `text` names: each of its parts equal to the id's, except that a provider
    address (the 4th part) may be cut short, and the id may have more parts."""
    parts = text.split("/")
    found = []
    for candidate in ids:
        have = candidate.split("/")
        if len(parts) > len(have) or have[: len(parts) - 1] != parts[:-1]:
            continue
        last, theirs = parts[-1], have[len(parts) - 1]
        if last == theirs or (len(parts) == 4 and theirs.startswith(last)):
            found.append(candidate)
    return found


def pick(kind: str, text: str, ids: Sequence[str]) -> str:
    """The one id of `ids` that `text` names; NotFound or InvalidArgument (ambiguous) else."""
    found = matching(normalize(text), ids)
    if not found:
        raise NotFound(f"no {kind} of yours matches {text!r}")
    if len(found) > 1:
        shown = ", ".join(found[:SHOWN_CANDIDATES])
        more = f" and {len(found) - SHOWN_CANDIDATES} more" if len(found) > SHOWN_CANDIDATES else ""
        raise InvalidArgument(
            f"{text!r} matches {len(found)} {kind}s: {shown}{more}; type more of it"
        )
    return found[0]


class Ids:
    """Resolves short ids for one command, reading each list of your records at most once."""

    def __init__(self, client: TenantClient) -> None:
        self.client = client
        self._lists: dict[str, list[str]] = {}

    def _listed(self, kind: str, read: Callable[[], list[str]]) -> list[str]:
        if kind not in self._lists:
            self._lists[kind] = read()
        return self._lists[kind]

    def _me(self) -> str:
        assert self.client.key is not None, "short ids are resolved for a signing client"
        return self.client.key.address

    def deployment(self, text: str) -> str:
        full = normalize(text)
        if _DEPLOYMENT.match(full):
            return full  # a full id: the market says whether it is yours
        ids = self._listed(
            "deployment", lambda: [d.id for d in self.client.list_deployments(self._me())]
        )
        return pick("deployment", text, ids)

    def order(self, text: str) -> str:
        full = normalize(text)
        if _ORDER.match(full):
            return full
        ids = self._listed("order", lambda: [o.id for o in self.client.list_orders(self._me())])
        return pick("order", text, ids)

    def lease(self, text: str, open_only: bool = False) -> str:
        """`open_only`: a short form counts only leases not closed (a shell or a copy needs a
        container), so `D1` names the lease running after a failover, not also the lost one."""
        full = normalize(text)
        head, _, provider = full.rpartition("/")
        if _ORDER.match(head) and is_address(provider):
            return full  # a full id: the market says whether it is yours
        kind = "open lease" if open_only else "lease"
        ids = self._listed(
            kind,
            lambda: [
                x.id
                for x in self.client.list_leases(self._me())
                if not open_only or x.state != pb.LEASE_CLOSED
            ],
        )
        return pick(kind, text, ids)

    def bid(self, text: str) -> str:
        full = normalize(text)
        order = self.order("/".join(full.split("/")[:3]))
        bids = [b.id for b in self.client.list_bids(order)]
        provider = full.split("/")[3:]
        return pick("bid", "/".join([order, *provider]), bids)
