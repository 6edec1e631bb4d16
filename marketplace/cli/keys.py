"""`gpumarket keys`: Ed25519 identities in the user's config dir."""

from __future__ import annotations

import click

from marketplace import identity
from marketplace.terminal import friendly_errors, json_option, print_json, print_table


@click.group()
def keys() -> None:
    """Create and list signing keys (Ed25519). Files live in $GPUMARKET_HOME/keys (default
    ~/.config/gpumarket/keys), mode 0600."""


@keys.command("create")
@click.argument("name")
@json_option
@friendly_errors
def create(name: str, as_json: bool) -> None:
    """Create a new key NAME and print its address."""
    key = identity.create_key(name)
    info = {"name": name, "address": key.address, "path": str(identity.keys_dir() / f"{name}.pem")}
    if as_json:
        print_json(info)
    else:
        click.echo(f"created key {name}: {key.address}\n  saved to {info['path']} (mode 0600)")


@keys.command("list")
@json_option
@friendly_errors
def list_(as_json: bool) -> None:
    """List the keys in the config dir."""
    entries = [{"name": n, "address": k.address} for n, k in identity.list_keys()]
    if as_json:
        print_json(entries)
    else:
        print_table(["NAME", "ADDRESS"], [(e["name"], e["address"]) for e in entries])


@keys.command("show")
@click.argument("name")
@json_option
@friendly_errors
def show(name: str, as_json: bool) -> None:
    """Show key NAME's address and public key."""
    key = identity.load_key(name)
    info = {"name": name, "address": key.address, "public_key": key.public_key.hex()}
    if as_json:
        print_json(info)
    else:
        click.echo(
            f"name:        {name}\naddress:     {key.address}\npublic key:  {info['public_key']}"
        )
