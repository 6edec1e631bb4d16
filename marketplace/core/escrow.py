"""How long a deployment's escrow lasts, when it counts as low, and what an auto top-up moves.

Pure arithmetic over ledger.Billing lines (the deployment's running leases); MarketService
(market.py) keeps the deadlines and moves the money. The rules:

- Time left: from now until the escrow runs dry at the running leases' rates
  (ledger.run_dry_at); none while nothing runs (nothing is billed).
- Low: time left at most config.escrow_low_ms. The market emits `escrow_low` once per crossing,
  at dry − threshold (or at once, when a lease starts on an escrow already that low); the
  deployment's `escrow_low` flag remembers it was said, and is cleared (re-armed) whenever the
  time left is back above the threshold: after a deposit, an auto top-up, or a lease closing.
- Auto top-up (per deployment, set at deploy time): when `escrow_low` fires, the market moves
  AMOUNT from the tenant's account into the escrow, or as many AMOUNTs as it takes to lift the
  time left above the threshold, never past the deployment's cap (the total it may move over its
  life) nor past the account's balance; what it could not move is said in the event.
- Deposits: one that would not pay for a minute at the deployment's current rate is refused
  with the time it would buy; the current rate is what its running leases pay, or before any
  runs, what its open leases and orders may cost at most.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.core import ledger, money
from marketplace.core.errors import InvalidArgument

MIN_DEPOSIT_MS = 60_000  # a deposit must buy at least this much time at the current rate
DEFAULT_CAP_AMOUNTS = 10  # an auto top-up without a cap may move at most 10 × AMOUNT


def rate_per_hour(lines: list[ledger.Billing]) -> int:
    """What the billing lines cost an hour together."""
    return sum(line.rate for line in lines if line.stop_ms is None)


def time_left_ms(lines: list[ledger.Billing], funds: int, now_ms: int) -> int | None:
    """Milliseconds until the lines owe more than `funds`; None while nothing is billed."""
    if not lines:
        return None
    dry = ledger.run_dry_at(lines, funds, now_ms)
    return None if dry is None else max(0, dry - now_ms)


def low_at(dry_at_ms: int, threshold_ms: int) -> int:
    """When the time left reaches the threshold."""
    return dry_at_ms - threshold_ms


def buys_ms(amount: int, per_hour: int) -> int:
    """How long `amount` pays for at `per_hour`."""
    return amount * money.MS_PER_HOUR // per_hour if per_hour > 0 else 0


def check_deposit_buys(amount: int, per_hour: int) -> None:
    """Refuse a deposit that pays for less than a minute at `per_hour` (0: nothing to pay)."""
    if per_hour <= 0:
        return
    bought = buys_ms(amount, per_hour)
    if bought < MIN_DEPOSIT_MS:
        raise InvalidArgument(
            f"deposit {money.format_amount(amount)} buys {format_time(bought)} at "
            f"{money.format_amount(per_hour)}/h; at least 1 minute is needed "
            f"({money.format_amount(-(-per_hour * MIN_DEPOSIT_MS // money.MS_PER_HOUR))})"
        )


@dataclass(frozen=True, slots=True)
class TopUp:
    """What an auto top-up moves, and what a person should know about it."""

    amount: int
    note: str


def plan_top_up(step: int, cap_left: int, balance: int, shortfall: int) -> TopUp:
    """Move `step`, or as many steps as cover `shortfall` (what the escrow lacks to be above
    the threshold again), within `cap_left` and `balance`."""
    steps = max(1, -(-shortfall // step))
    wanted = steps * step
    amount = min(wanted, cap_left, balance)
    if amount <= 0:
        if cap_left <= 0:
            return TopUp(0, "auto top-up: its cap is reached")
        return TopUp(0, f"auto top-up: your account holds {money.format_amount(balance)}")
    short = ""
    if amount < wanted:
        short = " (the cap is reached)" if amount == cap_left else " (your account is empty now)"
    return TopUp(
        amount, f"auto top-up: moved {money.format_amount(amount)} from your account{short}"
    )


def format_time(ms: int) -> str:
    """A time span for people: '12 s', '4 min 30 s', '2 h 5 min', '3 d 4 h'."""
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds} s" if seconds else "under 1 s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
