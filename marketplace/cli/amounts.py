"""Amounts the tenant commands take: `deploy --deposit`, `deposit AMOUNT`, `--auto-top-up`."""

from __future__ import annotations

import re

from marketplace.core import limits
from marketplace.core.errors import InvalidArgument
from marketplace.core.money import parse_amount

_AUTO_TOP_UP = re.compile(r"^\s*([^/\s]+)\s*(?:/\s*max\s*[=\s]?\s*(\S+))?\s*$", re.IGNORECASE)


def parse_money(what: str, text: str) -> int:
    """An amount as `deploy --deposit` takes it (12.5 units or 12500000u), in the market's
    bounds (limits.py) before it is sent."""
    negative = text.strip().startswith("-")  # refused by limits.py, as zero is
    try:
        micro = parse_amount(text.strip().removeprefix("-"))
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    return limits.check_amount(what, -micro if negative else micro)


def parse_auto_top_up(text: str | None) -> tuple[int, int]:
    """`AMOUNT[/max TOTAL]` → (step, cap) in micro-units; (0, 0) for none; cap 0: the market's
    default (escrow.DEFAULT_CAP_AMOUNTS steps)."""
    if text is None:
        return 0, 0
    match = _AUTO_TOP_UP.match(text)
    if not match:
        raise InvalidArgument(
            f"--auto-top-up {text!r}: use AMOUNT or AMOUNT/max TOTAL, e.g. 5/max 50"
        )
    step = parse_money("--auto-top-up", match.group(1))
    cap = parse_money("--auto-top-up max", match.group(2)) if match.group(2) else 0
    limits.check_auto_top_up(step, cap)
    return step, cap
