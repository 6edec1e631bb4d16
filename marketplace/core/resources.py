"""What a deployment asks for, as frozen typed values. The SDL parser (core.manifest) produces them;
matching, bidding, the auction, the server and the simulator consume them.

Units: CPU in millicores, memory and storage in bytes, money in integer micro-units per hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property


class JobKind(StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"
    SERVICE = "service"


class Tier(StrEnum):
    """What capacity a deployment buys: on-demand, or spot (cheaper, and pre-emptible by an
    on-demand order its provider could otherwise not serve; see core/spot.py)."""

    ON_DEMAND = "on-demand"
    SPOT = "spot"


class RestartPolicy(StrEnum):
    NEVER = "never"  # a lost or failed lease closes the group
    ON_FAILURE = "on-failure"  # re-order after a failure or a lost provider
    ALWAYS = "always"  # re-order after any close but the tenant's


class Payment(StrEnum):
    FIRST_PRICE = "first-price"  # the winner is paid its own bid (Akash)
    SECOND_PRICE = "second-price"  # the winner is paid the next eligible bid, capped at the max


@dataclass(frozen=True)
class GpuOption:
    """One acceptable GPU: a canonical model name ('*' for any), optionally pinned VRAM/interface."""

    model: str  # canonical Akash model name, e.g. "h100", "a100", or "*"
    ram_gib: int | None = None  # e.g. 80 for "80Gi"
    interface: str | None = None  # "sxm" | "pcie"

    @property
    def attribute_key(self) -> str:
        """Akash's flattened key: vendor/nvidia/model/h100/ram/80Gi/interface/sxm."""
        key = f"vendor/nvidia/model/{self.model}"
        if self.ram_gib is not None:
            key += f"/ram/{self.ram_gib}Gi"
        if self.interface is not None:
            key += f"/interface/{self.interface}"
        return key


@dataclass(frozen=True)
class GpuRequest:
    units: int = 0
    options: tuple[GpuOption, ...] = ()  # any one of them will do (Akash's AnyOf)


@dataclass(frozen=True)
class Volume:
    name: str
    size_bytes: int
    persistent: bool = False
    storage_class: str | None = None  # default | beta1 | beta2 | beta3 | ram


@dataclass(frozen=True)
class ResourceUnit:
    """One (service, compute profile) in a group: `count` replicas of these resources."""

    services: tuple[str, ...]
    count: int
    cpu_millis: int
    memory_bytes: int
    storage: tuple[Volume, ...] = ()
    gpu: GpuRequest = field(default_factory=GpuRequest)
    max_price_per_hour: int = 0  # per replica, micro-units
    ports: tuple[int, ...] = ()  # container ports exposed globally

    @property
    def total_gpus(self) -> int:
        return self.gpu.units * self.count


@dataclass(frozen=True)
class PlacementRequirements:
    attributes: tuple[tuple[str, str], ...] = ()  # (key glob, exact value)
    signed_by_all_of: tuple[str, ...] = ()
    signed_by_any_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuctionSettings:
    bid_window_ms: int = 5_000
    payment: Payment = Payment.FIRST_PRICE
    manual: bool = False  # the tenant picks a bid, as in Akash
    min_reliability: float = 0.0


class Need(StrEnum):
    """Features of a provider a group may need, derived from its SDL (GroupSpec.needs)."""

    LEASED_IP = "leased-ip"  # expose ... to: ip (Akash's IP leases)
    HTTP_INGRESS = "http-ingress"  # expose ... accept: hostnames routed by Host header
    LOG_ACCESS = "lease-log-access"  # params.permissions.read: the lease's logs in the container
    RECLAMATION = "reclamation-window"  # reclamation.min_window: notice before reclaiming
    CPU_ARCH = "cpu-arch/"  # a prefix: cpu-arch/amd64, cpu-arch/arm64


ARCH_NAMES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


def cpu_arch(name: str) -> str:
    """Akash's arch names (amd64, arm64); the kernel's (x86_64, aarch64) read as them."""
    lowered = name.strip().lower()
    return ARCH_NAMES.get(lowered, lowered)


@dataclass(frozen=True)
class GroupSpec:
    """One placement group: one order, one winning provider, one lease."""

    name: str
    requirements: PlacementRequirements
    resources: tuple[ResourceUnit, ...]
    denom: str = "uact"
    # What a provider must offer beyond resources and attributes (the `Need` values, e.g.
    # "http-ingress", "cpu-arch/arm64"), so one lacking it declines at bid time with the reason.
    needs: tuple[str, ...] = ()

    # Cached on first use (a frozen group never changes): every bid and its check read them.
    @cached_property
    def max_price_per_hour(self) -> int:
        return sum(r.max_price_per_hour * r.count for r in self.resources)

    @cached_property
    def total_gpus(self) -> int:
        return sum(r.total_gpus for r in self.resources)


@dataclass(frozen=True)
class GangSettings:
    """`gpumarket: gang:` nodes that are won, run and lost together (core/gang.py)."""

    nodes: int  # the deployment's one placement group, ordered this many times
    min_bandwidth_mbps: float = 0.0  # every node's min(up, down) link at least this
    port: int = 29500  # MASTER_PORT: rank 0 publishes it on its provider's public host
    # what the all-reduce model needs to predict utilization (core/allreduce.py)
    gradient_bytes: int = 1_000_000_000
    sync_interval_ms: int = 300_000


@dataclass(frozen=True)
class JobSettings:
    """gpumarket's own optional SDL keys (see README: "Manifest extensions")."""

    kind: JobKind = JobKind.SERVICE
    max_runtime_ms: int | None = None
    restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE
    auction: AuctionSettings = field(default_factory=AuctionSettings)
    # A tenant-owned location (s3://, gs://, https://, ...) the job saves its work to; the
    # provider passes it to the containers (core/job_env.py). The market never reads it.
    checkpoint_uri: str | None = None
    gang: GangSettings | None = None  # multi-node training: all nodes or none
    tier: Tier = Tier.ON_DEMAND  # `gpumarket: tier: spot`: interruptible capacity (core/spot.py)
