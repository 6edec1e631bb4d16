"""Price-only against utilization-aware ranking of gang bids (simulator/gang_ranking.py, the
live market's core/gang.py rule): the utilization-aware rule wastes fewer GPU-hours."""

from __future__ import annotations

import json

from click.testing import CliRunner

from marketplace.cli.main import cli
from simulator.gang_ranking import compare_ranking
from simulator.scenario import load_scenario


def test_utilization_aware_ranking_wastes_fewer_gpu_hours_on_the_default_scenario() -> None:
    scenario = load_scenario(None, {})
    results = compare_ranking(scenario, 150, seed=7)
    price, aware = results["price"], results["utilization"]
    assert price.jobs_awarded == aware.jobs_awarded == 150  # the same jobs, both rules award
    assert price.gpu_hours_useful == aware.gpu_hours_useful > 0
    assert aware.gpu_hours_wasted < price.gpu_hours_wasted
    assert aware.mean_utilization > price.mean_utilization
    # the same scenario and seed give the same numbers
    again = compare_ranking(scenario, 150, seed=7)
    assert [r.row() for r in again.values()] == [r.row() for r in results.values()]


def test_with_every_link_equally_fast_the_rules_agree() -> None:
    same = {"providers.up_mbps": {10000.0: 1.0}, "providers.down_mbps": {10000.0: 1.0}}
    scenario = load_scenario(None, {**same, "providers.regions": {"eu": 1.0}})
    results = compare_ranking(scenario, 40, seed=3)
    assert results["price"].row() | {"rule": ""} == results["utilization"].row() | {"rule": ""}


def test_the_cli_reports_both_rules() -> None:
    out = CliRunner().invoke(cli, ["simulate", "gang-ranking", "--jobs", "30", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    rules = {r["rule"]: r for r in report["rules"]}
    assert rules["utilization"]["gpu_hours_wasted"] < rules["price"]["gpu_hours_wasted"]
    bad = CliRunner().invoke(cli, ["simulate", "gang-ranking", "--set", "nope=1"])
    assert bad.exit_code == 1 and "nope: unknown key" in bad.output
