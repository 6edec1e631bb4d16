"""Console output shared by every command: aligned tables for people, JSON for scripts,
one-line errors.

It sits just above the core (it imports only the core's error type), so the tenant, provider
and simulator commands can all use it without importing one another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click

from marketplace.core.errors import MarketError

P = ParamSpec("P")
R = TypeVar("R")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(click.style(line.format(*headers).rstrip(), bold=True))
    for row in cells:
        click.echo(line.format(*row).rstrip())
    if not cells:
        click.echo("(none)")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the market's own errors into `Error: ...` and exit status 1, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MarketError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper
