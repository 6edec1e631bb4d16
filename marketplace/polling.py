"""Wait for a condition with a deadline: the one poll loop, for the demo, tests and benchmarks.

No project imports, so any layer may use it. A condition is a callable returning something
truthy when it holds (that value is returned) and None/False/empty while it does not yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Retryable = tuple[type[Exception], ...]


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    retry_on: Retryable = (),
) -> T:
    """Poll `predicate` until it returns something truthy; TimeoutError naming `what` after
    `timeout` s. An exception in `retry_on` counts as "not yet" (and is named on timeout)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except retry_on as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last)
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    retry_on: Retryable = (),
) -> T:
    """wait_until for a coroutine predicate, sleeping on the event loop between tries."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = await predicate()
            if value:
                return value
        except retry_on as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last)
        await asyncio.sleep(interval)


def _timed_out(timeout: float, what: str, last: Exception | None) -> TimeoutError:
    hint = f" (last error: {last})" if last else ""
    return TimeoutError(f"timed out after {timeout:g} s waiting for {what}{hint}")
