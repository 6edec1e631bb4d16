"""The reader thread's queue is bounded: past limits.MAX_READS_WAITING waiting reads, a heavy
read is refused at once as Unavailable (UNAVAILABLE on the wire: try again), and the reads
already queued still finish; nothing runs on the loop meanwhile."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest

from marketplace.core import limits
from marketplace.core.errors import Unavailable
from marketplace.server.offloop import off_loop


def test_a_read_past_the_backlog_is_refused_and_the_queued_ones_finish() -> None:
    gate = threading.Event()
    loop_thread = threading.get_ident()

    def read(n: int) -> tuple[int, int]:
        gate.wait(30)  # the reader is busy: the others queue behind this one
        return n, threading.get_ident()

    async def flood() -> None:
        queued = [
            asyncio.ensure_future(off_loop(functools.partial(read, n)))
            for n in range(limits.MAX_READS_WAITING)
        ]
        await asyncio.sleep(0)  # all of them counted as waiting
        with pytest.raises(Unavailable, match="busy"):
            await off_loop(lambda: read(-1))
        gate.set()
        done = await asyncio.gather(*queued)
        assert [n for n, _ in done] == list(range(limits.MAX_READS_WAITING))
        assert all(thread != loop_thread for _, thread in done)  # off the loop, every one
        assert (await off_loop(lambda: read(99)))[0] == 99  # the queue drained: taken again

    asyncio.run(flood())
