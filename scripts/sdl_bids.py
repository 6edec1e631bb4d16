"""Would a well-equipped provider bid on each SDL of the sample (../shared/corpus/sdl)?

    python scripts/sdl_bids.py [CORPUS_DIR]

Every schema-valid file is deployed on a real core MarketService whose operator trusts a local
auditor and maps Akash's own auditor to it; one provider is registered with 8 GPUs of each model
the sample names, large CPU, memory and disk, the common storage classes (beta1, beta2, beta3,
ram), the placement attributes the sample asks for, signed by that auditor, an HTTP ingress (for
`accept` hostnames), and the example config's prices. Each order then goes through the agent's own decision (Quoter.evaluate: storage
classes, policy, placement and signedBy, allocation, price) and, where the agent would bid, the
market's eligibility (place_bid). Prints the outcome per reason: `bid`, or `declined: <kind>`
with kind capacity, GPU model, price, or what else it was. Runs with whichever code is on
PYTHONPATH, so the same script gives the before and after of a change (the parts an older tree
lacks, such as storage classes or auditors, are skipped there).
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import Ineligible, MarketError
from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.market import MarketConfig, MarketService
from provider_agent.bidder import Quoter, offer_for
from provider_agent.config import AgentConfig, ConfigError, parse_config
from provider_agent.inventory import Inventory, OfferedGpu, Reservations, provider_attributes
from provider_agent.nvml import GpuHealth, GpuInfo, GpuReading, HostGpus

ADMIN = "gm1" + "0" * 32
TENANT = "gm1" + "1" * 32
PROVIDER = "gm1" + "2" * 32
LOCAL_AUDITOR = "gm1" + "3" * 32
AKASH_AUDITOR = "akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63"
YEAR_MS = 365 * 86_400_000
GIB = 1024**3

# 8 of each GPU model the sample names (a100 in both memory sizes)
FLEET = (
    GpuVariant("h100", 80, "sxm"),
    GpuVariant("h200", 141, "sxm"),
    GpuVariant("a100", 80, "sxm"),
    GpuVariant("a100", 40, "pcie"),
    GpuVariant("rtx4090", 24, "pcie"),
    GpuVariant("rtx3090", 24, "pcie"),
    GpuVariant("rtxa6000", 48, "pcie"),
)
# the placement attributes the sample asks for, except ip-lease (no leased IPs here)
ATTRIBUTES = {"host": "akash", "tier": "community", "chia-plotting": "true"}
STORAGE_CLASSES = ["beta1", "beta2", "beta3", "ram"]
CONFIG: dict[str, Any] = {  # examples/provider.toml's prices
    "provider": {"region": "eu-west", "attributes": ATTRIBUTES},
    "resources": {
        "cpu": 512,
        "memory": "4Ti",
        "storage": "100Ti",
        "storage_classes": STORAGE_CLASSES,
    },
    "ingress": {"listen": "127.0.0.1:0", "domain": "ingress.example"},  # serves accept hosts
    "pricing": {
        "scale": {
            "cpu_hour": "0.01",
            "memory_gib_hour": "0.005",
            "storage_gib_hour": "0.0001",
            "floor": "0.05",
            "ceiling": "500",
            "gpu_hour": {"h100": "2.00", "a100.80Gi": "1.40", "*": "0.80"},
        }
    },
}

# The only reasons a provider with everything the sample needs may give (closing note of
# issue 11): it has not enough of something, not that GPU, or the tenant's price is too low.
KINDS = (
    ("capacity", re.compile(r"not enough|insufficient|only \d|needs? \d.* has|more than")),
    ("GPU model", re.compile(r"no (free |matching )?GPU|GPU model|no price set for GPU")),
    ("price", re.compile(r"above the (tenant's|order's) maximum|price")),
)


@dataclass(frozen=True)
class Verdict:
    file: str
    group: str
    bid: bool
    reason: str

    @property
    def kind(self) -> str:
        if self.bid:
            return "bid"
        return f"declined: {kind_of(self.reason)}"


def kind_of(reason: str) -> str:
    for kind, pattern in KINDS:
        if pattern.search(reason):
            return kind
    return f"other ({mask(reason)})"


def mask(reason: str) -> str:
    return re.sub(r"\b\d[\d.,]*\b", "N", reason)[:100]


def agent_config() -> AgentConfig:
    try:
        return parse_config(CONFIG)
    except ConfigError:  # a tree from before storage classes and the ingress
        resources = {k: v for k, v in CONFIG["resources"].items() if k != "storage_classes"}
        old = {k: v for k, v in CONFIG.items() if k != "ingress"}
        return parse_config({**old, "resources": resources})


def inventory() -> Inventory:
    cfg = agent_config()
    offered = []
    for n, variant in enumerate(v for v in FLEET for _ in range(8)):
        info = GpuInfo(n, f"GPU-{n:04d}", f"NVIDIA {variant.label}", memory_mib=variant.ram_gib)
        offered.append(OfferedGpu(GpuReading(info, GpuHealth(True)), variant, offered=True))
    resources = cfg.resources
    assert resources.cpu_millis and resources.memory_bytes and resources.storage_bytes
    return Inventory(
        host=HostGpus("ok", "", driver_version="550.54", cuda_version="12.4"),
        gpus=tuple(offered),
        cpu_millis=resources.cpu_millis,
        memory_bytes=resources.memory_bytes,
        storage_bytes=resources.storage_bytes,
        attributes=provider_attributes(cfg, list(FLEET)),
    )


def market(inv: Inventory, clock: ManualClock) -> MarketService:
    config = MarketConfig(admin_address=ADMIN)
    if "auditors" in inspect.signature(MarketConfig).parameters:  # absent before issue 11
        config = MarketConfig(
            admin_address=ADMIN,
            auditors=frozenset({LOCAL_AUDITOR}),
            auditor_aliases=((AKASH_AUDITOR, LOCAL_AUDITOR),),
        )
    m = MarketService(clock, config)
    m.fund(ADMIN, TENANT, 10**15)
    m.register_provider(PROVIDER, "203.0.113.7", dict(inv.attributes), inv.total, "eu-west")
    if hasattr(m, "sign_attributes"):
        m.sign_attributes(LOCAL_AUDITOR, PROVIDER, ATTRIBUTES, clock.now_ms() + YEAR_MS)
    return m


def audited(m: MarketService, clock: ManualClock) -> Mapping[str, Mapping[str, str]] | None:
    book = getattr(m, "attestations", None)
    return book.signed_for(PROVIDER, clock.now_ms()) if book is not None else None


async def decide_file(
    m: MarketService, quoter: Quoter, inv: Inventory, clock: ManualClock, path: Path
) -> list[Verdict]:
    manifest = parse_manifest(path.read_bytes(), path.name)
    unmatchable = getattr(manifest, "unmatchable", ())
    if unmatchable:  # deploy refuses it without --force: no GPU of that model exists
        return [Verdict(path.name, "*", False, f"unknown GPU model: {unmatchable[0]}")]
    try:
        dep = m.create_deployment(
            TENANT, manifest.groups, manifest.job, b"", manifest.sdl_sha256, b"", 10**13
        )
    except MarketError as exc:
        return [Verdict(path.name, "*", False, f"deploy refused: {exc}")]
    verdicts = []
    signed = "auditors" in inspect.signature(quoter.evaluate).parameters  # since issue 11
    for order_id in dep.group_orders:
        order = m.get_order(order_id)
        held = Reservations()
        if signed:
            auditors = audited(m, clock)
            decision = await quoter.evaluate(order.group, TENANT, inv, held, "k", auditors=auditors)
        else:
            decision = await quoter.evaluate(order.group, TENANT, inv, held, "k")
        if decision.bid:
            try:
                m.place_bid(PROVIDER, order_id, decision.price_per_hour, offer_for(decision, inv))
            except Ineligible as exc:
                decision = type(decision)(False, reason=str(exc))
        verdicts.append(Verdict(path.name, order.group.name, decision.bid, decision.reason))
    return verdicts


def schema_valid(corpus: Path) -> list[Path]:
    rows = csv.DictReader((corpus / "_index.csv").read_text().splitlines())
    return sorted(
        corpus / r["file"] for r in rows if r["yaml_ok"] == "1" and r["schema_valid"] == "1"
    )


def verdicts(corpus: Path) -> list[Verdict]:
    clock = ManualClock(1_000_000)
    inv = inventory()
    m = market(inv, clock)
    quoter = Quoter.from_config(agent_config(), clock)

    async def all_files() -> list[Verdict]:
        found: list[Verdict] = []
        for path in schema_valid(corpus):
            try:
                found += await decide_file(m, quoter, inv, clock, path)
            except ManifestError as exc:
                found.append(Verdict(path.name, "*", False, f"parser refused: {exc}"))
        return found

    return asyncio.run(all_files())


def main(corpus: Path) -> None:
    found = verdicts(corpus)
    files = {v.file for v in found}
    by_kind = Counter(v.kind for v in found)
    print(f"{len(files)} schema-valid SDLs, {len(found)} orders (one per placement group)")
    for kind, count in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {kind}")
    declined = [v for v in found if not v.bid]
    if declined:
        print("declines:")
        for v in declined:
            print(f"  {v.file} [{v.group}]: {v.reason}")
    print(f"(prices: examples/provider.toml; 1 ACT = {money.MICRO} micro-units)")


if __name__ == "__main__":
    shared = Path(
        os.environ.get("GPUMARKET_SHARED", Path(__file__).resolve().parents[2] / "shared")
    )
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else shared / "corpus" / "sdl")
