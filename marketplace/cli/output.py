"""Shared CLI output: aligned tables for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, TypeVar

import click

from marketplace.core.errors import MarketError

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(click.style(line.format(*headers).rstrip(), bold=True))
    for row in rows:
        click.echo(line.format(*row).rstrip())
    if not rows:
        click.echo("(none)")


def friendly_errors(func: F) -> F:
    """Turn the market's own errors into `Error: ...` and exit status 1, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MarketError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]
