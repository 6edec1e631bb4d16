"""The sealed-bid reverse auction: eligible bids → winner and payment. Pure and deterministic.

Winner: the lowest price; ties go to the higher reliability (the score shown in the bid, taken
when it was placed), then the earlier bid (arrival order), then the lexically smaller provider
address. The same bids always give the same winner.

Payment (price per hour the tenant pays and the provider receives):
- first-price (Akash's rule, the default): the winner's own bid.
- second-price (Vickrey with the tenant's maximum as reserve): the price of the next bid in the
  ranking, capped at the group's maximum. With ONE eligible bid the winner is paid the reserve
  (the group's maximum price): the standard Vickrey-with-reserve rule, under which bidding one's
  true cost stays a dominant strategy. A group with no maximum (0) has no reserve: a lone
  bidder is then paid its own bid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marketplace.core.resources import Payment
from marketplace.core.state import Bid


@dataclass(frozen=True, slots=True)
class Award:
    winner: Bid
    price_per_hour: int  # what the lease pays
    runner_up: Bid | None


def rank_key(bid: Bid) -> tuple[int, float, int, str]:
    return (bid.price_per_hour, -bid.reliability, bid.seq, bid.provider)


def rank(bids: Sequence[Bid]) -> list[Bid]:
    """Best first, by the winner rule in the module docstring."""
    return sorted(bids, key=rank_key)


def award(eligible: Sequence[Bid], payment: Payment, reserve: int) -> Award | None:
    """The winner among `eligible` bids and its payment; None when there is no bid.
    `reserve` is the group's maximum price per hour (0: none)."""
    if not eligible:
        return None
    ranked = rank(eligible)
    winner = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    if payment == Payment.SECOND_PRICE:
        if runner_up is not None:
            price = runner_up.price_per_hour
            if reserve > 0:
                price = min(price, reserve)
        else:
            price = reserve if reserve > 0 else winner.price_per_hour
        price = max(price, winner.price_per_hour)
    else:
        price = winner.price_per_hour
    return Award(winner=winner, price_per_hour=price, runner_up=runner_up)
