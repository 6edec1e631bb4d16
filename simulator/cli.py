"""`gpumarket simulate`: run the market simulator on a scenario, or sweep a grid of them.

    gpumarket simulate                              the built-in scenario
    gpumarket simulate scenario.yaml --seed 3 --out DIR --json
    gpumarket simulate sweep sweep.yaml             a grid × seeds, in parallel processes
    gpumarket simulate sweep sweep.yaml --ray auto  ... as tasks on a Ray cluster
    gpumarket simulate --compiled build/compiled    on the mypyc-compiled market core

`simulate` is a group whose default command is `run`: anything that is not a subcommand name
is handed to `run`, so a scenario file and `sweep` never collide.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from marketplace.terminal import LazyGroup, friendly_errors, json_option, print_json, print_table
from simulator.scenario import ScenarioError

if TYPE_CHECKING:
    from simulator.sweep import Sweep

YAML_FILE = click.Path(dir_okay=False, path_type=Path)


COMPILED_HELP = (
    "Run on the market core compiled with mypyc into DIR (also: GPUMARKET_COMPILED=DIR). Build "
    "it once in a source checkout: `python -m simulator.compiled build --out DIR` (needs mypy "
    "and a C compiler; a minute or two); `python -m simulator.compiled check --out DIR` says "
    "whether it still matches the sources. Same results byte for byte as the pure-Python core, "
    "in about 0.6 of its CPU time on long runs. A missing or stale build (sources edited since, "
    "another Python) is refused with one line and the pure-Python core runs."
)


def compiled_option(command: Any) -> Any:
    """--compiled DIR (or GPUMARKET_COMPILED): the compiled market core for this command."""
    return click.option(
        "--compiled",
        "compiled_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="GPUMARKET_COMPILED",
        metavar="DIR",
        help=COMPILED_HELP,
    )(command)


def use_compiled(build: Path | None) -> bool:
    """Put the compiled core in `build` in place of the pure-Python one for this process (and
    the sweep's worker processes): before anything loads the market core. Says in one line on
    stderr why not when it cannot; returns whether it will run."""
    if build is None:
        return False
    from simulator import compiled

    refused = compiled.activate(build)
    if refused is not None:
        click.echo(f"compiled core not used: {refused}; running the pure-Python core", err=True)
        return False
    return True


class DefaultRunGroup(LazyGroup):
    """A group that runs `run` unless the first argument names another subcommand; `--NAME`
    names subcommand NAME too (`simulate --from-market ADDR`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = set(self.list_commands(ctx))
        if args and args[0].startswith("--") and args[0][2:] in names:
            args = [args[0][2:], *args[1:]]
        help_flags = set(ctx.help_option_names)
        if not args or (args[0] not in names and args[0] not in help_flags):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultRunGroup)
def simulate() -> None:
    """Simulate the GPU market at scale, with the marketplace's own rules.

    \b
    gpumarket simulate [SCENARIO.yaml] [--seed N] [--out DIR] [--json]
        Run one scenario (default: a built-in one with a few hundred providers
        over three days). Writes metrics.json, timeseries.csv, providers.csv
        and PNG plots to ./sim-out/<name>-seed<N>/ (or --out).
    gpumarket simulate sweep SWEEP.yaml [--out DIR] [--ray [ADDRESS]] [--json]
        Run a grid of settings × seeds in parallel (local processes, or Ray tasks
        with --ray); writes sweep.csv/json and plots.
    gpumarket simulate --from-market ADDR [-o FILE] [--run]
        Snapshot a live market (providers, GPUs, prices) into a scenario file.
    gpumarket simulate gang-ranking [SCENARIO.yaml] [--jobs N] [--json]
        Price-only against utilization-aware ranking of multi-node (gang)
        training bids: the GPU-hours each leaves idle on slow links.

    Long runs and sweeps go faster on the market core compiled with mypyc:
    build it once in a source checkout with
    `python -m simulator.compiled build --out build/compiled`, then add
    `--compiled build/compiled` (or set GPUMARKET_COMPILED=build/compiled).
    Same results byte for byte; a stale build is refused in one line and the
    pure-Python core runs.

    Examples of both files are in examples/ (scenario.yaml, sweep.yaml).
    """


def _progress_bar(enabled: bool, label: str) -> Any:
    if not enabled:
        return None
    return click.progressbar(length=1000, label=label, file=sys.stderr, show_eta=True)


@simulate.command("run")
@click.argument("scenario", required=False, type=YAML_FILE)
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: the scenario's).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: ./sim-out/<scenario>-seed<N>/).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key, e.g. --set providers.count=1000 (repeatable).",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (faster).")
@click.option(
    "--open",
    "open_report",
    is_flag=True,
    help="Then show the report in the web console (`gpumarket console`) until Ctrl-C.",
)
@compiled_option
@json_option
@friendly_errors
def run(
    scenario: Path | None,
    seed: int | None,
    out: Path | None,
    overrides: tuple[str, ...],
    no_plots: bool,
    open_report: bool,
    compiled_dir: Path | None,
    as_json: bool,
) -> None:
    """Run one scenario (the built-in one when SCENARIO is left out).

    \b
    gpumarket simulate scenario.yaml --seed 3
    gpumarket simulate --set providers.count=2000 --no-plots --json
    gpumarket simulate scenario.yaml --compiled build/compiled
    """
    core_compiled = use_compiled(compiled_dir)  # first: before the market core loads
    from simulator.engine import run_scenario
    from simulator.report import summary_rows, write_report
    from simulator.scenario import load_scenario

    try:
        sc = load_scenario(scenario, _parse_overrides(overrides))
        seed = sc.seed if seed is None else seed
        out = out or Path("sim-out") / f"{_slug(sc.name)}-seed{seed}"
        _writable(out)  # before the run, not after it
        show = not as_json and sys.stderr.isatty()
        bar = _progress_bar(show, f"simulating {sc.duration_days:g} days")
        started = time.perf_counter()
        if bar is not None:
            with bar:
                sim = run_scenario(sc, seed, lambda f: bar.update(round(f * 1000) - bar.pos))
        else:
            sim = run_scenario(sc, seed)
        wall = time.perf_counter() - started
        try:
            summary = write_report(sim, out, plots=sc.report.plots and not no_plots)
        except OSError as exc:  # the disk filled, the folder went away
            raise ScenarioError(
                f"cannot write the report to {out}: {exc.strerror or exc}"
            ) from None
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        print_json(
            {
                "out": str(out),
                "wall_seconds": round(wall, 3),
                "core_compiled": core_compiled,
                "metrics": summary,
            }
        )
        return
    print_table(["metric", "value"], summary_rows(summary))
    rate = sim.events / wall if wall > 0 else 0.0
    core = "compiled" if core_compiled else "pure-Python"
    click.echo(f"\nran in {wall:.1f} s ({sim.events} events, {rate:,.0f} events/s, {core} core)")
    click.echo(f"report: {out}/ (metrics.json, timeseries.csv, providers.csv, *.png)")
    if open_report:
        show_in_console(out)


@simulate.command("gang-ranking")
@click.argument("scenario", required=False, type=YAML_FILE)
@click.option(
    "--jobs",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Multi-node training jobs to auction.",
)
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: the scenario's).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key, e.g. --set providers.count=1000 (repeatable).",
)
@json_option
@friendly_errors
def gang_ranking(
    scenario: Path | None, jobs: int, seed: int | None, overrides: tuple[str, ...], as_json: bool
) -> None:
    """Compare price-only with utilization-aware ranking of gang bids: the same multi-node
    training jobs and bids, awarded by each rule; reports the GPU-hours each leaves idle on
    slow links (simulator/gang_ranking.py says how).

    \b
    gpumarket simulate gang-ranking                     the built-in scenario
    gpumarket simulate gang-ranking scenario.yaml --jobs 2000 --json
    """
    from simulator.gang_ranking import compare_ranking
    from simulator.scenario import load_scenario

    try:
        sc = load_scenario(scenario, _parse_overrides(overrides))
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    results = compare_ranking(sc, jobs, sc.seed if seed is None else seed)
    rows = [r.row() for r in results.values()]
    if as_json:
        print_json({"scenario": sc.name, "jobs": jobs, "rules": rows})
        return
    columns = list(rows[0])
    print_table(columns, [[row[c] for c in columns] for row in rows])
    saved = results["price"].gpu_hours_wasted - results["utilization"].gpu_hours_wasted
    click.echo(f"\nutilization-aware ranking wastes {saved:,.1f} fewer GPU-hours")


def show_in_console(out: Path) -> None:
    """`gpumarket console` on the report's folder, opened at this run: its own process (the
    simulator loads no marketplace code), in the foreground until Ctrl-C."""
    gpumarket = [sys.executable, "-c", "from marketplace.cli.main import main; main()"]
    view = f"reports/{out.resolve().name}"
    reports = ["--reports", str(out.resolve().parent), "--view", view]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run([*gpumarket, "console", "--listen", "127.0.0.1:0", *reports, "--open"])


@simulate.command("sweep")
@click.argument("sweep_file", metavar="SWEEP.yaml", type=YAML_FILE)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: ./sim-out/sweep-<name>/).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: the file's).")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    metavar="[ADDRESS]",
    help="Run the scenarios as Ray tasks: on the cluster at ADDRESS ('auto': the one this "
    "machine belongs to; HOST:PORT; ray://HOST:10001), or, with no ADDRESS, on a local cluster "
    "started for this sweep. Same results as the process pool. Needs gpumarket[ray].",
)
@compiled_option
@json_option
@friendly_errors
def sweep(
    sweep_file: Path,
    out: Path | None,
    workers: int | None,
    ray_address: str | None,
    compiled_dir: Path | None,
    as_json: bool,
) -> None:
    """Run a grid of scenario settings × seeds in parallel processes (or on a Ray cluster).
    With --compiled, the local worker processes run the compiled core; Ray's workers run the
    code shipped to them (pure Python)."""
    import dataclasses

    if compiled_dir is not None and ray_address is not None:
        click.echo("compiled core not used: Ray's workers run the pure-Python core", err=True)
        compiled_dir = None
    core_compiled = use_compiled(compiled_dir)  # first: before the market core loads

    from simulator.sweep import load_sweep

    try:
        plan = load_sweep(sweep_file)
        if workers is not None:
            plan = dataclasses.replace(plan, workers=workers)
        out = out or Path("sim-out") / f"sweep-{_slug(plan.name)}"
        started = time.perf_counter()
        rows, means, plots = _run_sweep(plan, out, ray_address, not as_json)
        wall = time.perf_counter() - started
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        print_json(
            {
                "out": str(out),
                "wall_seconds": round(wall, 3),
                "core_compiled": core_compiled,
                "runs": rows,
                "means": means,
                "plots": plots,
            }
        )
        return
    headers = list(means[0])
    print_table(headers, [[_cell(row[h]) for h in headers] for row in means])
    click.echo(
        f"\n{len(rows)} runs in {wall:.1f} s; report: {out}/ (sweep.csv, sweep_runs.csv, "
        f"sweep.json, {', '.join(plots) or 'no plots'})"
    )


def _writable(out: Path) -> None:
    """The report folder, made now: a folder that cannot be is said at once, in one line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write the report to {out}: {exc.strerror or exc} (--out DIR)"
        ) from None


class _NeedsExtra(click.ClickException):
    exit_code = 2  # a usage problem: the command cannot run as asked here


def _run_sweep(plan: Sweep, out: Path, ray_address: str | None, bar: bool) -> Any:
    """run_sweep with a progress bar (on a terminal), locally or on Ray."""
    from simulator.sweep import run_sweep

    total = len(plan.combinations()) * len(plan.seeds)
    show = bar and sys.stderr.isatty()
    progress = click.progressbar(length=total, label="runs", file=sys.stderr) if show else None
    with contextlib.ExitStack() as stack:
        if progress is not None:
            stack.enter_context(progress)
        tick = (lambda _done, _n: progress.update(1)) if progress is not None else None
        if ray_address is None:
            _writable(out)
            return run_sweep(plan, out, tick)
        from simulator.ray_pool import RayMissing, RayUnreachable, connected, ray_runner

        try:
            ray = stack.enter_context(connected(ray_address, num_cpus=plan.workers))
        except RayMissing as exc:
            raise _NeedsExtra(str(exc)) from None
        except RayUnreachable as exc:
            raise click.ClickException(str(exc)) from None
        _writable(out)  # after Ray answers: a sweep that cannot start leaves nothing behind
        return run_sweep(plan, out, tick, runner=ray_runner(ray))


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "scenario"


def _parse_overrides(items: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"--set {item!r}: expected KEY=VALUE, e.g. providers.count=1000")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            out[key.strip()] = text
    return out
