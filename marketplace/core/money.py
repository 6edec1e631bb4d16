"""Money: integer micro-units only; no float ever touches an amount.

Rule for SDL prices. Akash prices are per block, per replica, in micro-denominations (`uact`).
We bill per millisecond of wall time at a rate per hour, so an SDL amount is converted with
Akash's own block time (the reference price script's 6.117 s, i.e. 429,909 blocks a month):

    micro-units per hour = floor(amount_per_block × 3600 / 6.117)

computed with exact decimals. Accrual is exact too: a lease that has run `ms` milliseconds at
`rate` per hour owes floor(rate × ms / 3,600,000) in total, and each settlement pays the
difference from the last, so no fraction is lost between settlements (Akash drops it at each).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, DecimalException, InvalidOperation

MICRO = 1_000_000
MS_PER_HOUR = 3_600_000
BLOCK_SECONDS = Decimal("6.117")
DENOMS = ("uact", "uakt")


def per_block_to_per_hour(amount_per_block: Decimal | str | int) -> int:
    """An SDL price per block (micro-units) as micro-units per hour, rounded down."""
    try:
        amount = Decimal(str(amount_per_block))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {amount_per_block!r}") from exc
    per_hour = amount * 3600 / BLOCK_SECONDS
    return int(per_hour.to_integral_value(rounding=ROUND_FLOOR))


def accrued(rate_per_hour: int, elapsed_ms: int) -> int:
    """Total owed for `elapsed_ms` at `rate_per_hour`, rounded down once over the whole span."""
    if elapsed_ms <= 0:
        return 0
    return rate_per_hour * elapsed_ms // MS_PER_HOUR


# Far above any amount the market takes (limits.MAX_AMOUNT is 10^18), so callers still say their
# own bound; it keeps "1e999999999" from becoming a billion-digit integer, and inf from crashing.
MAX_PARSED_MICRO = 10**60
MAX_AMOUNT_TEXT = 64


def parse_amount(text: str) -> int:
    """'12.5' (whole units) or '12500000u' (micro-units) → micro-units. Rejects negatives,
    non-numbers and infinities, anything over MAX_PARSED_MICRO (checked before an integer is
    made), and fractions of a micro-unit: '0.0000001' rounded would silently be 0."""
    text = text.strip().lower().replace("_", "")
    shown = text if len(text) <= MAX_AMOUNT_TEXT else text[:MAX_AMOUNT_TEXT] + "…"
    invalid = ValueError(f"not an amount: {shown!r} (use 12.5 for units or 12500000u)")
    if len(text) > MAX_AMOUNT_TEXT:
        raise invalid
    try:
        micro = Decimal(text[:-1]) if text.endswith("u") else Decimal(text) * MICRO
    except DecimalException:  # InvalidOperation, or Overflow: 1e999999999 units
        raise invalid from None
    if not micro.is_finite():
        raise invalid
    if micro < 0:
        raise ValueError(f"amount must not be negative: {shown!r}")
    if micro > MAX_PARSED_MICRO:
        raise ValueError(f"too large to be an amount: {shown!r}")
    if micro != micro.to_integral_value():
        raise ValueError(
            f"{shown!r} is not a whole number of micro-units (the smallest amount is "
            "0.000001, or 1u)"
        )
    return int(micro)


def format_amount(micro: int, denom: str = "uact") -> str:
    """12500000 → '12.500000 act'."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    unit = denom[1:] if denom.startswith("u") else denom
    return f"{sign}{whole}.{frac:06d} {unit}"
