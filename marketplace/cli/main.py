"""`gpumarket`: one command for the marketplace, the provider agent and the simulator.

Subcommands are imported lazily, so `gpumarket simulate` loads no gRPC, Docker or NVML code.
"""

from __future__ import annotations

import sys

import click

from marketplace.terminal import LazyGroup

# name → "module:attribute"; each module owns its own commands.
COMMANDS: dict[str, str] = {
    "simulate": "simulator.cli:simulate",
    "manifest": "marketplace.cli.manifest:manifest",
    "keys": "marketplace.cli.keys:keys",
    "market": "marketplace.cli.market:market",
    "deploy": "marketplace.cli.tenant:deploy",
    "status": "marketplace.cli.tenant:status",
    "bids": "marketplace.cli.tenant:bids",
    "why": "marketplace.cli.tenant:why",
    "accept": "marketplace.cli.tenant:accept",
    "leases": "marketplace.cli.tenant:leases",
    "logs": "marketplace.cli.tenant:logs",
    "close": "marketplace.cli.tenant:close",
    "update": "marketplace.cli.update:update",
    "shell": "marketplace.cli.shell:shell",
    "cp": "marketplace.cli.shell:cp",
    "account": "marketplace.cli.tenant:account",
    "providers": "marketplace.cli.tenant:providers",
    "deposit": "marketplace.cli.funds:deposit",
    "events": "marketplace.cli.events:events",
    "auditor": "marketplace.cli.auditor:auditor",
    "provider": "provider_agent.cli:provider",
    "demo": "marketplace.cli.demo:demo",
    "example": "marketplace.cli.example:example",
    "estimate": "marketplace.cli.twin:estimate_command",
    "console": "marketplace.cli.console:console",
}


# Subcommands a group gains from a higher layer: the simulator imports no gRPC, its twin does.
GRAFTS: dict[str, dict[str, str]] = {
    "simulate": {"from-market": "marketplace.cli.twin:from_market"},
    "provider": {"price-advice": "marketplace.cli.price_advice:price_advice"},
}


class Gpumarket(LazyGroup):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if isinstance(command, LazyGroup):
            command.lazy.update(GRAFTS.get(cmd_name, {}))
        return command


@click.group(cls=Gpumarket, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gpumarket")
def cli() -> None:
    """gpumarket: an open marketplace for GPU compute.

    \b
    Researchers:  gpumarket simulate            run the market on a built-in scenario
    Tenants:      gpumarket deploy job.yaml     rent GPUs for a job manifest (Akash SDL)
    Providers:    gpumarket provider run        offer this box's GPUs
    Everyone:     gpumarket manifest validate   check a manifest before deploying it
    """


def main() -> None:
    try:
        cli(prog_name="gpumarket")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # `python -m marketplace.cli.main ...` runs the CLI, as `gpumarket` does
    main()
