"""Reads whose work grows with the market's history run off the event loop, on one thread.

The market lives on one asyncio loop (app.py): every health check, heartbeat and bid waits
while a handler runs there. A listing that decodes every closed record of a busy tenant from the
store, an audit that replays the whole ledger, or price advice over a week of auctions takes
hundreds of milliseconds at a few thousand closed deployments, and grew with every one more
(bench/bench_loop.py). Such reads are split in two:

- on the loop, what memory holds: the open records, copied into a list (its cost grows with the
  open state only, which the market keeps small), and the cut-off between memory and store;
- here, on the reader thread, what the store holds (the archive: closed records, the stored
  ledger, log lines), merged with that snapshot. A listing asks the store only for the first
  records its page needs, sorted by the database (first_of_listing): a page's cost follows
  its position in the listing, not the market's history.

Records of closed deployments never change again, and a record leaves memory only once stored
(MarketService.committed), so a snapshot taken on the loop and the store read after it miss
nothing; a record in both is taken from memory. Core state is never changed here.

One thread: the loop shares the GIL with one reader only (as with the manifest parsers in
servicers.py), and reads queue rather than multiply memory. A queue longer than
limits.MAX_READS_WAITING is refused as UNAVAILABLE (try again), so a flood of heavy reads costs
the market a bounded backlog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from marketplace.core import limits
from marketplace.core.errors import Unavailable
from marketplace.core.state import Deployment, Lease, Order

T = TypeVar("T")

_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reads")


class _Backlog:
    waiting = 0


async def off_loop(work: Callable[[], T]) -> T:
    """`work()` on the reader thread; Unavailable when too many reads wait already."""
    if _Backlog.waiting >= limits.MAX_READS_WAITING:
        raise Unavailable(
            f"the market is busy with {_Backlog.waiting} heavy reads; try again in a moment"
        )
    _Backlog.waiting += 1  # on the loop thread only: no lock needed
    try:
        return await asyncio.get_running_loop().run_in_executor(_READER, work)
    finally:
        _Backlog.waiting -= 1


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Rec = TypeVar("Rec", bound=_HasId)


def merged(
    held: Iterable[Rec], archived: Iterable[Rec], key: Callable[[Rec], tuple[int, str]]
) -> list[Rec]:
    """The records in memory and the archived ones not among them, sorted by `key` (the
    listing's order, as core/reads.py's lists)."""
    records = list(held)
    ids = {r.id for r in records}
    records += [r for r in archived if r.id not in ids]
    return sorted(records, key=key)


def first_of_listing(
    held: list[Rec],
    stored: Callable[[int], list[Rec]],
    wanted: Callable[[Rec], bool],
    key: Callable[[Rec], tuple[int, str]],
    end: int,
) -> list[Rec]:
    """The first `end` records of a listing (one more when there are more: the page knows
    it is not the last) from what memory holds (`held`, already filtered) and the store's
    first closed ones (`stored(limit)`, in the listing's order `key`), those `wanted`.

    The records a page [start, end) shows are among the first `end` of the store's that are
    wanted and not held, so the store is asked for `end` plus what memory may hide, more only
    while `wanted` refuses some: the cost follows the page's position, not the history."""
    ids = {r.id for r in held}
    limit = end + len(held) + 1
    while True:
        found = stored(limit)
        kept = [r for r in found if r.id not in ids and wanted(r)]
        if len(kept) > end or len(found) < limit:
            return merged(held, kept, key)[: end + 1]
        limit *= 4


def deployment_number(dep: Deployment) -> tuple[int, str]:
    """Deployment "D12" → 12: deployments in the order they were created."""
    return (int(dep.id[1:]), dep.id)


def created(record: Order | Lease) -> tuple[int, str]:
    return (record.created_at_ms, record.id)
