"""`gpumarket provider price-advice`: the price per GPU-hour that would have earned this provider
the most over the last days, by a replay of its auctions in the market (core/price_advice.py).

It sits under `provider` (grafted there by cli/main.py, as the agent's group imports no client
commands) beside `provider quote`: both answer a provider's question about its prices, and both
sign with the provider's key.
"""

from __future__ import annotations

import click

from marketplace import identity
from marketplace.api.client import MarketClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.tenant import Connection, endpoint_options
from marketplace.core import money
from marketplace.core.price_advice import DAY_MS, MAX_DAYS
from marketplace.terminal import friendly_errors, json_option, print_json, print_table


def _per_gpu(micro: int) -> str:
    return "-" if micro <= 0 else f"{money.format_amount(micro)}/GPU-h"


def _row(m: pb.ModelPriceAdvice) -> tuple[str, ...]:
    return (
        m.model,
        str(m.auctions),
        _per_gpu(m.current_price_per_gpu_hour),
        f"{money.format_amount(m.earned)} ({m.leases_won} leases)",
        _per_gpu(m.best_price_per_gpu_hour),
        f"{money.format_amount(m.best_revenue)} ({m.best_leases_won} leases)",
    )


def _as_dict(report: pb.PriceAdviceReport) -> dict[str, object]:
    return {
        "provider": report.provider,
        "since_ms": report.since_ms,
        "until_ms": report.until_ms,
        "models": [
            {
                "model": m.model,
                "auctions": m.auctions,
                "unleased": m.unleased,
                "current_price_per_gpu_hour": m.current_price_per_gpu_hour,
                "earned": m.earned,
                "leases_won": m.leases_won,
                "best_price_per_gpu_hour": m.best_price_per_gpu_hour,
                "best_revenue": m.best_revenue,
                "best_leases_won": m.best_leases_won,
            }
            for m in report.models
        ],
    }


@click.command("price-advice")
@endpoint_options
@click.option(
    "--key",
    "key_name",
    default="provider",
    envvar="GPUMARKET_PROVIDER_KEY",
    show_default=True,
    help="The provider's key (as in provider.toml): a name in the keys dir or a .pem path "
    "[env GPUMARKET_PROVIDER_KEY].",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0.001, max=MAX_DAYS),
    default=7.0,
    show_default=True,
    help=f"How far back to look (at most {MAX_DAYS} days).",
)
@json_option
@friendly_errors
def price_advice(conn: Connection, days: float, as_json: bool) -> None:
    """The price per GPU-hour that would have earned you the most, GPU model by GPU model.

    The market replays the auctions of the last --days that you could have served (you bid,
    or the order fit what you registered) with you bidding one price, by its own auction
    rules against the other bids that took part, each auction worth its lease's length; it
    answers totals only. Next to it: your median bid and what your leases there earned.

    \b
    gpumarket provider price-advice                   the last 7 days
    gpumarket provider price-advice --days 1 --json   for scripts
    """
    key = identity.load_agent_key(conn.key_name)  # --key: endpoint_options keeps it in conn
    with conn.client(MarketClient, key) as market:
        now_ms = market.info().server_time_ms  # the market's clock bounds the window, not ours
        report = market.price_advice(max(0, now_ms - int(days * DAY_MS)))
    if as_json:
        print_json(_as_dict(report))
        return
    print_table(
        ["GPU", "AUCTIONS", "YOUR PRICE", "EARNED", "BEST PRICE", "WOULD HAVE EARNED"],
        [_row(m) for m in report.models],
    )
    for m in report.models:
        if m.unleased:
            click.echo(f"{m.model}: {m.unleased} orders ended without a lease (not replayed)")
        if not m.auctions:
            click.echo(f"{m.model}: no closed auction you could have served in that time")
