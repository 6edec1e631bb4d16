"""A provider's price advice: "what price per GPU-hour would have maximised my revenue over the
last week?", answered by replaying the week's closed auctions that the provider could have
served, with the provider bidding one price p, through the market's own auction code
(auction.award: the same winner rule and payment rule as the live market).

What counts, per auction (one order, its bid window closed with a lease):
- the order could have gone to this provider: it bid on it, or the order's group fits the GPUs,
  CPU, memory and storage the provider registered and its placement attributes;
- the rivals are the other providers' bids that took part in the award (won or lost, and not
  refused at close by the market);
- its length is how long the awarded lease billed (from running to close, or to now): had the
  provider won it, the tenant's job would have run as long. An order that ended without a lease
  says nothing about how long it would have run: it is counted as `unleased` and left out.
- room: the replay holds the GPUs of each lease it wins for the lease's length, and a provider
  without enough free GPUs of the model sits that auction out.

Privacy (DESIGN decision 10): the advice is computed here, in the market, for the provider that
signed the request; only totals per GPU model leave it (revenue and leases won at the best price,
what the provider earned), never another tenant's order or another provider's bid.

Pure: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from marketplace.core import auction, matching, money
from marketplace.core.errors import InvalidArgument
from marketplace.core.reads import MarketReads
from marketplace.core.resources import Payment
from marketplace.core.state import Bid, BidState, Lease, Order, OrderState, ProviderRecord

DAY_MS = 24 * 3600 * 1000
AT_CLOSE = "at auction close:"  # how the market's declines of bids it passed over at close begin
MAX_DAYS = 31  # how far back a provider may ask
MAX_AUCTIONS = 2_000  # the newest auctions replayed per request (the replay runs in the market)
MAX_CANDIDATES = 128  # prices tried per GPU model (the auctions' break points, thinned evenly)


@dataclass(frozen=True, slots=True)
class Auction:
    """One closed auction the provider could have served, as the replay needs it."""

    order_id: str
    model: str  # the GPU model the provider would have run it on
    gpus: int
    reserve: int  # the tenant's maximum per hour, for the whole group
    payment: Payment
    rivals: tuple[Bid, ...]  # the other providers' bids that took part in the award
    own: Bid | None  # the provider's own bid, as placed
    awarded_at_ms: int
    length_ms: int  # how long the awarded lease billed
    won_price: int = 0  # what the provider's own lease paid per hour (0: it did not win)


class Outcome(NamedTuple):
    revenue: int  # micro-units over the auctions' lengths
    leases: int


@dataclass(frozen=True, slots=True)
class ModelAdvice:
    model: str
    auctions: int  # auctions replayed
    unleased: int  # orders that ended without a lease (no length to replay them with)
    current_price: int  # median of the provider's own bids, per GPU-hour (0: it never bid)
    earned: int  # what the provider's own leases among the auctions billed
    leases_won: int  # how many of the auctions it won
    best_price: int  # per GPU-hour: the price that earns the most in the replay
    best_revenue: int
    best_leases: int


# --- what the record holds ----------------------------------------------------------------------


def billed_ms(lease: Lease, now_ms: int) -> int:
    """How long the lease billed: from running to its billing's end (or to now while open)."""
    if not lease.started:
        return 0
    end = lease.billed_until_ms if lease.closed_at_ms else now_ms
    return max(0, end - lease.running_at_ms)


def _model_for(reads: MarketReads, prov: ProviderRecord, order: Order, own: Bid | None) -> str:
    """The GPU model the provider would give the order ("" when it could not serve it)."""
    if own is None:
        req = order.group.requirements
        if matching.placement_mismatches(req, prov.attributes, None):
            return ""
        if order.auction.min_reliability > reads.reliability(prov.address):
            return ""
    found = matching.allocate(order.group, prov.capacity)
    if isinstance(found, str) or not found.gpu_models:
        return ""
    return found.gpu_models[0]


def _rivals(reads: MarketReads, order: Order, provider: str) -> tuple[Bid, ...]:
    held = reads.state.declines.get(order.id)
    declines = held if held is not None else reads.archive.declines(order.id)
    refused = {d.provider for d in declines if d.reason.startswith(AT_CLOSE)}  # not awarded
    return tuple(
        b
        for b in reads.list_bids(order.id)
        if b.provider != provider
        and (b.state in (BidState.WON, BidState.LOST) or b.id == order.lease_id)  # won, closed
        and b.provider not in refused
    )


def collect(
    reads: MarketReads, provider: str, since_ms: int, now_ms: int
) -> tuple[list[Auction], dict[str, int]]:
    """The closed auctions since `since_ms` the provider could have served, oldest first (the
    newest MAX_AUCTIONS), and per GPU model how many orders ended without a lease."""
    prov = reads.get_provider(provider)
    auctions: list[Auction] = []
    unleased: dict[str, int] = {}
    for order in reversed(reads.list_orders()):
        if order.created_at_ms < since_ms:
            break
        if order.state == OrderState.OPEN or order.auction.manual or not order.group.total_gpus:
            continue
        own = reads.bid_of(order.id, provider)
        model = _model_for(reads, prov, order, own)
        if not model:
            continue
        if not order.lease_id:
            unleased[model] = unleased.get(model, 0) + 1
            continue
        lease = reads.get_lease(order.lease_id)
        auctions.append(
            Auction(
                order_id=order.id,
                model=model,
                gpus=order.group.total_gpus,
                reserve=order.group.max_price_per_hour,
                payment=order.auction.payment,
                rivals=_rivals(reads, order, provider),
                own=own,
                awarded_at_ms=lease.created_at_ms,
                length_ms=billed_ms(lease, now_ms),
                won_price=lease.price_per_hour if lease.provider == provider else 0,
            )
        )
        if len(auctions) >= MAX_AUCTIONS:
            break
    auctions.sort(key=lambda a: (a.awarded_at_ms, a.order_id))
    return auctions, unleased


# --- the replay ---------------------------------------------------------------------------------


def _bid_at(a: Auction, provider: str, price_per_gpu_hour: int, reliability: float) -> Bid:
    """The provider's bid on `a` at the price: as placed (its reliability and arrival), or, for
    an auction it sat out, arriving after every rival."""
    seq = a.own.seq if a.own else max((b.seq for b in a.rivals), default=0) + 1
    return Bid(
        id=f"{a.order_id}/{provider}",
        order_id=a.order_id,
        provider=provider,
        price_per_hour=price_per_gpu_hour * a.gpus,
        state=BidState.OPEN,
        created_at_ms=a.own.created_at_ms if a.own else a.awarded_at_ms,
        reliability=a.own.reliability if a.own else reliability,
        seq=seq,
    )


def replay(
    auctions: Sequence[Auction],
    provider: str,
    price_per_gpu_hour: int,
    reliability: float,
    gpus: int,
) -> Outcome:
    """The provider's revenue and leases won had it bid `price_per_gpu_hour` on every auction
    (one GPU model, oldest first), holding at most `gpus` GPUs at once."""
    held: list[tuple[int, int]] = []  # (until ms, GPUs) of the leases won so far
    revenue = leases = 0
    for a in auctions:
        held = [(until, n) for until, n in held if until > a.awarded_at_ms]
        bids = list(a.rivals)
        mine = _bid_at(a, provider, price_per_gpu_hour, reliability)
        room = gpus - sum(n for _, n in held) >= a.gpus
        if room and mine.price_per_hour <= a.reserve:  # above the maximum: refused, as live
            bids.append(mine)
        won = auction.award(bids, a.payment, a.reserve)
        if won is not None and won.winner is mine:
            revenue += money.accrued(won.price_per_hour, a.length_ms)
            leases += 1
            held.append((a.awarded_at_ms + a.length_ms, a.gpus))
    return Outcome(revenue, leases)


def candidate_prices(auctions: Iterable[Auction], current: int) -> list[int]:
    """Per GPU-hour prices where the revenue can peak: just at and under each auction's best
    rival bid and its reserve (revenue only grows with the price between them), and the
    provider's current price; thinned evenly to MAX_CANDIDATES."""
    points = {current} if current > 0 else set()
    for a in auctions:
        tops = [a.reserve] + [b.price_per_hour for b in a.rivals]
        for top in tops:
            per_gpu = top // a.gpus
            points.update((per_gpu, per_gpu - 1))
    found = sorted(p for p in points if p > 0)
    if len(found) <= MAX_CANDIDATES:
        return found
    step = (len(found) - 1) / (MAX_CANDIDATES - 1)
    thinned = {found[round(i * step)] for i in range(MAX_CANDIDATES)}
    return sorted(thinned | points & {current})


def advise_model(
    model: str,
    auctions: Sequence[Auction],
    unleased: int,
    provider: str,
    reliability: float,
    gpus: int,
) -> ModelAdvice:
    own_prices = [a.own.price_per_hour // a.gpus for a in auctions if a.own is not None]
    current = int(statistics.median_low(own_prices)) if own_prices else 0
    best_price, best = 0, Outcome(0, 0)
    for price in candidate_prices(auctions, current):
        outcome = replay(auctions, provider, price, reliability, gpus)
        # the most revenue; on a tie the more leases, then the lower price
        if (outcome.revenue, outcome.leases) > (best.revenue, best.leases):
            best_price, best = price, outcome
    won = [a for a in auctions if a.won_price]
    return ModelAdvice(
        model=model,
        auctions=len(auctions),
        unleased=unleased,
        current_price=current,
        earned=sum(money.accrued(a.won_price, a.length_ms) for a in won),
        leases_won=len(won),
        best_price=best_price,
        best_revenue=best.revenue,
        best_leases=best.leases,
    )


def check_window(since_ms: int, now_ms: int) -> None:
    if since_ms < 0 or since_ms > now_ms:
        raise InvalidArgument(f"since_ms must be between 0 and now ({now_ms}), got {since_ms}")
    if now_ms - since_ms > MAX_DAYS * DAY_MS:
        raise InvalidArgument(f"price advice looks back at most {MAX_DAYS} days")


@dataclass(frozen=True, slots=True)
class Record:
    """What the replay needs of the market, taken at once (the replay may then run anywhere)."""

    provider: str
    reliability: float
    gpus: dict[str, int]  # GPU model → how many the provider registered
    auctions: tuple[Auction, ...]
    unleased: dict[str, int]


def take_record(reads: MarketReads, provider: str, since_ms: int, now_ms: int) -> Record:
    """The provider's auctions since `since_ms`; raises NotFound for an unknown provider."""
    check_window(since_ms, now_ms)
    prov = reads.get_provider(provider)
    gpus: dict[str, int] = {}
    for device in prov.capacity.gpus:
        gpus[device.variant.model] = gpus.get(device.variant.model, 0) + 1
    auctions, unleased = collect(reads, provider, since_ms, now_ms)
    return Record(provider, reads.reliability(provider), gpus, tuple(auctions), unleased)


def advise(record: Record) -> list[ModelAdvice]:
    """Advice per GPU model the provider has."""
    return [
        advise_model(
            model,
            [a for a in record.auctions if a.model == model],
            record.unleased.get(model, 0),
            record.provider,
            record.reliability,
            gpus,
        )
        for model, gpus in sorted(record.gpus.items())
    ]
