"""`gpumarket`: one command for the marketplace, the provider agent and the simulator.

Subcommands are imported lazily, so `gpumarket simulate` loads no gRPC, Docker or NVML code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

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
    "account": "marketplace.cli.tenant:account",
    "providers": "marketplace.cli.tenant:providers",
    "auditor": "marketplace.cli.auditor:auditor",
    "provider": "provider_agent.cli:provider",
    "demo": "marketplace.cli.demo:demo",
    "console": "marketplace.cli.console:console",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module_name, attribute = COMMANDS[cmd_name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # that part of gpumarket is not built yet
            raise
        return getattr(module, attribute)

    @staticmethod
    def _available() -> list[str]:
        names = []
        for name, target in COMMANDS.items():
            module_name = target.split(":")[0]
            if importlib.util.find_spec(module_name) is not None:
                names.append(name)
        return names


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
