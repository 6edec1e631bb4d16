"""The one poll loop (marketplace/polling.py) that the demo, tests and benchmarks share."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import await_until, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(values), 5, "the value", interval=0) == "ready"


def test_wait_until_says_what_timed_out() -> None:
    with pytest.raises(TimeoutError, match=r"after 0.1 s waiting for the lease to run$"):
        wait_until(lambda: None, 0.1, "the lease to run")


def test_only_the_named_errors_count_as_not_yet() -> None:
    refusals = iter([True, False])

    def probe() -> str:
        if next(refusals):
            raise OSError("refused")
        return "up"

    assert wait_until(probe, 5, "the server", interval=0, retry_on=(OSError,)) == "up"
    with pytest.raises(ValueError):
        wait_until(lambda: int("x"), 5, "a number", retry_on=(OSError,))


def test_await_until_polls_a_coroutine_and_names_the_last_error() -> None:
    tries = 0

    async def ready() -> bool:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionError(f"try {tries}")
        return tries >= 4

    assert asyncio.run(await_until(ready, 5, "the agent", interval=0, retry_on=(OSError,)))

    async def never() -> None:
        raise ConnectionError("still down")

    with pytest.raises(TimeoutError, match=r"waiting for the agent \(last error: still down\)"):
        asyncio.run(await_until(never, 0.1, "the agent", retry_on=(OSError,)))
