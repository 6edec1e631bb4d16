"""Console output shared by every command: aligned tables for people, JSON for scripts,
one-line errors.

It sits just above the core (it imports only the core's error type), so the tenant, provider
and simulator commands can all use it without importing one another.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click

P = ParamSpec("P")
R = TypeVar("R")


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, from a table of name →
    "module:attribute", so a command loads only what it runs (`gpumarket simulate` no gRPC).
    A module that is not there (a part not installed) leaves its command out."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [
            name
            for name, target in self.lazy.items()
            if importlib.util.find_spec(target.split(":")[0]) is not None
        ]
        return sorted(set(super().list_commands(ctx)) | set(available))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy:
            return command
        module_name, attribute = self.lazy[cmd_name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # that part of gpumarket is not built yet
            raise
        found: click.Command = getattr(module, attribute)
        return found


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
        except Exception as exc:
            # imported only now: a command may load the market core itself, and must be first
            # to (`gpumarket simulate --compiled` puts the compiled core in place before it)
            from marketplace.core.errors import MarketError

            if isinstance(exc, MarketError):
                raise click.ClickException(str(exc)) from exc
            raise

    return wrapper
