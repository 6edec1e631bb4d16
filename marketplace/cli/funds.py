"""`gpumarket deposit`: top up a deployment's escrow. The rules (escrow_low, the auto top-up,
the smallest deposit) are core/escrow.py's."""

from __future__ import annotations

import click

from marketplace.cli.amounts import parse_money
from marketplace.cli.ids import Ids
from marketplace.cli.render import amount, funding_lines, proto_dict
from marketplace.cli.tenant import Connection, market_options
from marketplace.terminal import friendly_errors, json_option, print_json


@click.command()
@click.argument("deployment")
@click.argument("amount_text", metavar="AMOUNT")
@market_options
@json_option
@friendly_errors
def deposit(deployment: str, amount_text: str, conn: Connection, as_json: bool) -> None:
    """Top up DEPLOYMENT's escrow with AMOUNT from your account.

    AMOUNT is in units (12.5) or micro-units (12500000u), as for `deploy --deposit`. A deposit
    that would not pay for one minute at the deployment's current rate is refused with the time
    it would buy. A deposit lifts the escrow above the market's low mark again, so a later
    escrow_low is said again (see `gpumarket events`).

    \b
    gpumarket deposit D2 5
    gpumarket deposit 2 2500000u --json
    """
    micro = parse_money("deposit", amount_text)
    client = conn.tenant()
    dep = client.deposit(Ids(client).deployment(deployment), micro)
    if as_json:
        print_json(proto_dict(dep))
        return
    click.echo(
        f"deployment {dep.id}: deposited {amount(micro)}; escrow {amount(dep.escrow_balance)} "
        f"of {amount(dep.deposited)} deposited"
    )
    for line in funding_lines(dep):
        click.echo(line)
