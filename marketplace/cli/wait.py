"""What `deploy --wait --timeout` needs: a bounded wait that ends with its own exit status, and
a plain line when no provider is online (instead of waiting silently)."""

from __future__ import annotations

import click

from marketplace.api.client import MarketClient

WAIT_TIMED_OUT = 124  # the exit status of `deploy --wait --timeout` that ran out (as timeout(1))


class WaitTimedOut(click.ClickException):
    """`deploy --wait --timeout` ran out: one line, exit status WAIT_TIMED_OUT."""

    exit_code = WAIT_TIMED_OUT


def no_provider_line(market: MarketClient) -> str:
    """A plain line when no provider is online at the market ("" when one is)."""
    if market.list_providers(online_only=True, limit=1):
        return ""
    return (
        f"no provider is online at {market.address}: your orders wait until one registers "
        "(`gpumarket providers` lists them)"
    )
