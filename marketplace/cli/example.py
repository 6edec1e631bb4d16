"""`gpumarket example`: README's example files for an installed gpumarket (no checkout)."""

from __future__ import annotations

from pathlib import Path

import click

from marketplace.cli.examples import example_file, names


@click.command()
@click.argument("name", required=False)
@click.option(
    "--all",
    "into",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write every example into this directory (made if missing); files already there are kept.",
)
def example(name: str | None, into: Path | None) -> None:
    """Print the example NAME (e.g. training.yaml), list them all, or write them all (--all DIR).

    \b
    gpumarket example                      the names
    gpumarket example training.yaml > t.yaml
    gpumarket example --all examples       README's commands then run as written
    """
    if into is not None:
        _write_all(into)
    elif name is None:
        click.echo("\n".join(names()))
    else:
        found = example_file(name)
        if found is None:
            raise click.ClickException(
                f"no example {name!r}: `gpumarket example` lists them ({', '.join(names())})"
            )
        click.echo(found.read_text(), nl=False)


def _write_all(into: Path) -> None:
    try:
        into.mkdir(parents=True, exist_ok=True)
        for name in names():
            target = into / name
            found = example_file(name)
            if target.exists() or found is None:
                click.echo(f"kept {target} (already there)")
                continue
            target.write_bytes(found.read_bytes())
            click.echo(f"wrote {target}")
    except OSError as exc:
        raise click.ClickException(f"--all {into}: {exc.strerror or exc}") from None
