"""Price-only against utilization-aware ranking of gang bids, on a scenario's providers and
training jobs: how many leased GPU-hours each rule leaves idle waiting on slow links.

Each of `jobs` training jobs (drawn from the scenario's distributions) is auctioned as a gang
(core/gang.py) to a fresh draw of `bidders_per_order` × nodes providers that can host a node and
meet its bandwidth floor, each bidding its strategy's price on every node. Two rules pick the
winners from the same bids:

- price: the cheapest distinct providers (what per-order awards did before gangs);
- utilization: core.gang.choose, least price ÷ predicted utilization.

The job then runs its compute at the utilization core/allreduce.py predicts for the winners'
links; the GPU-hours beyond its compute are wasted (the GPUs wait on the all-reduce). It is a
static replay (no failures, no queueing: every job sees the whole population), so it isolates
the ranking rule; the engine's runs are unchanged.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from marketplace.core.gang import Candidate, Choice, cheapest, choose, predicted_utilization
from marketplace.core.resources import GangSettings
from marketplace.core.state import Bid, BidState
from simulator.metrics import MS_PER_HOUR
from simulator.providers import (
    Pricing,
    SimProvider,
    make_providers,
    reference_costs,
    strategy_price,
)
from simulator.scenario import Scenario
from simulator.workload import Job, JobFactory

RULES = ("price", "utilization")


@dataclass
class RuleResult:
    rule: str
    jobs_awarded: int = 0
    gpu_hours_useful: float = 0.0  # the jobs' compute
    gpu_hours_wasted: float = 0.0  # leased, idle on the all-reduce
    paid_micro: int = 0  # micro-units: price × wall time
    mean_utilization: float = 0.0

    def row(self) -> dict[str, object]:
        out = asdict(self)
        out["gpu_hours_useful"] = round(self.gpu_hours_useful, 3)
        out["gpu_hours_wasted"] = round(self.gpu_hours_wasted, 3)
        out["mean_utilization"] = round(self.mean_utilization, 4)
        return out


def compare_ranking(scenario: Scenario, jobs: int, seed: int) -> dict[str, RuleResult]:
    """Both rules on the same `jobs` training jobs and the same bids."""
    rng = random.Random(seed)
    providers = make_providers(scenario, rng)
    costs = reference_costs(scenario.providers)
    factory = JobFactory(scenario, providers, costs, rng)
    pricing = Pricing(
        payment=scenario.market.payment,
        bidders=scenario.market.bidders_per_order,
        spread=scenario.providers.cost_spread,
        adaptive_step=scenario.providers.adaptive_step,
    )
    factor = scenario.providers.cross_region_factor
    results = {rule: RuleResult(rule) for rule in RULES}
    utilizations: dict[str, list[float]] = {rule: [] for rule in RULES}
    for job in _multi_node_jobs(factory, jobs):
        gang = GangSettings(
            nodes=job.groups,
            min_bandwidth_mbps=job.min_bandwidth_mbps,
            gradient_bytes=round(job.gradient_bytes),
            sync_interval_ms=max(job.sync_interval_ms, 1),
        )
        candidates = _bids(job, gang, providers, costs, pricing, rng)
        picks: dict[str, Choice | None] = {
            "utilization": choose(gang, candidates, factor),
            "price": _price_only(gang, candidates, factor),
        }
        for rule, picked in picks.items():
            if picked is None or picked.utilization <= 0:
                continue
            result = results[rule]
            compute_h = job.compute_ms / MS_PER_HOUR
            wall_h = compute_h / picked.utilization
            gpus = gang.nodes * job.gpus_per_group
            result.jobs_awarded += 1
            result.gpu_hours_useful += gpus * compute_h
            result.gpu_hours_wasted += gpus * (wall_h - compute_h)
            result.paid_micro += round(picked.total_price * wall_h)
            utilizations[rule].append(picked.utilization)
    for rule, seen in utilizations.items():
        results[rule].mean_utilization = sum(seen) / len(seen) if seen else 0.0
    return results


def _multi_node_jobs(factory: JobFactory, jobs: int) -> list[Job]:
    """The first `jobs` training jobs of more than one node (single-node jobs sync nothing over
    the network); fewer when the scenario draws almost none."""
    found: list[Job] = []
    for _ in range(jobs * 50):
        job = factory.make(0, kind="training")
        if job.groups >= 2:
            found.append(job)
            if len(found) == jobs:
                break
    return found


def _price_only(gang: GangSettings, candidates: list[Candidate], factor: float) -> Choice | None:
    winners = cheapest(gang.nodes, candidates)
    if winners is None:
        return None
    total = sum(c.bid.price_per_hour for c in winners)
    used = predicted_utilization(gang, [c.link for c in winners], factor)
    return Choice(winners, total, used, total / used if used > 0 else float("inf"))


def _bids(
    job: Job,
    gang: GangSettings,
    providers: list[SimProvider],
    costs: dict[str, int],
    pricing: Pricing,
    rng: random.Random,
) -> list[Candidate]:
    """A fresh draw of providers that can host a node, each bidding on every node."""
    able = [
        p
        for p in providers
        if (job.gpu_model in ("*", p.model))
        and p.gpus >= job.gpus_per_group
        and min(p.link.up_mbps, p.link.down_mbps) >= gang.min_bandwidth_mbps
    ]
    drawn = rng.sample(able, min(len(able), pricing.bidders * gang.nodes))
    candidates = []
    for seq, p in enumerate(drawn):
        reference = costs.get(p.model, p.cost_per_gpu_hour)
        reserve = job.max_price_per_hour
        price = strategy_price(p, job.gpus_per_group, reference, pricing, reserve)
        if price > reserve:
            continue
        for node in range(gang.nodes):
            bid = Bid(
                id=f"J{job.id}/{node + 1}/1/{p.address}",
                order_id=f"J{job.id}/{node + 1}/1",
                provider=p.address,
                price_per_hour=price,
                state=BidState.OPEN,
                created_at_ms=0,
                reliability=1.0,
                seq=seq,
            )
            candidates.append(Candidate(node, bid, p.link))
    return candidates
