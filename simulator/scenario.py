"""Scenario files: typed, validated settings for one simulation run.

A scenario is YAML. Every key is optional (the defaults are the built-in scenario) and every
value is checked on load: a bad one raises ScenarioError with one line naming the key, e.g.
``providers.failures.per_gpu_year: must be >= 0, got -1``. Unknown keys are refused with the
closest known name, so a typo never silently falls back to a default.

Distributions are written the way people think of them:
- a lognormal as ``{median: 6, sigma: 1.0}``;
- a discrete choice as a mapping of value → weight, e.g. ``nodes: {1: 0.6, 2: 0.3, 8: 0.1}``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

import yaml

from marketplace.core.quoting import path_key, shown
from marketplace.userfiles import CONFIG_FILE_BYTES, read_bounded_text

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Spec = TypeVar("Spec", bound=DataclassInstance)

# A value → weight mapping (strategies, regions, node counts, bandwidths…).
WeightTable: TypeAlias = dict[str, float] | dict[int, float] | dict[float, float]


class ScenarioError(ValueError):
    """A scenario value that cannot be used; the message is one line naming the key."""


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, float | None]:
    return {"min": lo, "max": hi}


@dataclass(frozen=True)
class LogNormal:
    """A lognormal distribution given by its median and the sigma of its log."""

    median: float = field(default=1.0, metadata=_range(0.0))
    sigma: float = field(default=1.0, metadata=_range(0.0, 5.0))


@dataclass(frozen=True)
class MarketSpec:
    payment: Literal["first-price", "second-price"] = "first-price"
    bid_window_s: float = field(default=30.0, metadata=_range(0.001))
    heartbeat_timeout_s: float = field(default=60.0, metadata=_range(0.001))
    # Providers do not all watch every order: each order is seen by this many eligible ones.
    bidders_per_order: int = field(default=8, metadata=_range(1, 1000))
    min_reliability: float = field(default=0.0, metadata=_range(0.0, 1.0))
    # The tenant's reserve is this multiple of the reference cost of the GPUs it asks for.
    max_price_multiplier: float = field(default=2.5, metadata=_range(0.01))
    # Allocative efficiency is solved offline on every Nth auction round (0 = never).
    efficiency_sample_every: int = field(default=10, metadata=_range(0))


@dataclass(frozen=True)
class GpuMixEntry:
    model: str
    ram_gib: int = field(default=80, metadata=_range(1))
    interface: Literal["sxm", "pcie"] = "pcie"
    gpus_per_node: int = field(default=1, metadata=_range(1, 64))
    weight: float = field(default=1.0, metadata=_range(0.0))


FailureDistribution: TypeAlias = Literal["exponential", "weibull", "none"]


@dataclass(frozen=True)
class FailureSpec:
    distribution: FailureDistribution = "exponential"
    # Unplanned interruptions per GPU-year (Llama 3: 419 in 54 days on 16,384 GPUs ≈ 0.17).
    per_gpu_year: float = field(default=0.17, metadata=_range(0.0))
    # Weibull shape k < 1: a box that just failed is likely to fail again soon (LANL).
    weibull_shape: float = field(default=0.7, metadata=_range(0.05, 20.0))
    repair_hours: LogNormal = field(default_factory=lambda: LogNormal(median=3.0, sigma=1.0))
    # Community (home) boxes fail this many times more often than datacentre ones: ×100 gives
    # ~17 failures per GPU-year, ~99% availability with the repairs below (RunPod delists < 98%).
    community_share: float = field(default=0.3, metadata=_range(0.0, 1.0))
    community_factor: float = field(default=100.0, metadata=_range(1.0))


@dataclass(frozen=True)
class ProviderSpec:
    count: int = field(default=300, metadata=_range(1, 10_000_000))
    # "default": the machine mix of the public Alibaba traces (simulator/data/machine_mix.json).
    mix: str | tuple[GpuMixEntry, ...] = "default"
    # Reference cost per GPU-hour, in whole units, by model; missing models use the packaged table.
    cost_per_gpu_hour: dict[str, float] = field(default_factory=dict)
    # Each provider's cost is its model's reference × U[1 − spread, 1 + spread].
    cost_spread: float = field(default=0.4, metadata=_range(0.0, 0.99))
    strategies: dict[str, float] = field(
        default_factory=lambda: {"cost-plus": 0.4, "equilibrium": 0.3, "adaptive": 0.3}
    )
    markup: float = field(default=0.2, metadata=_range(0.0, 100.0))
    adaptive_step: float = field(default=0.05, metadata=_range(0.0, 1.0))
    # Spot orders are bid at this percent of a provider's price (the agent's [pricing]).
    spot_percent: int = field(default=60, metadata=_range(1, 100))
    failures: FailureSpec = field(default_factory=FailureSpec)
    regions: dict[str, float] = field(default_factory=lambda: {"us": 0.5, "eu": 0.3, "asia": 0.2})
    up_mbps: dict[float, float] = field(
        default_factory=lambda: {100.0: 0.25, 1000.0: 0.5, 10000.0: 0.25}
    )
    down_mbps: dict[float, float] = field(default_factory=lambda: {1000.0: 0.6, 10000.0: 0.4})
    # A link between regions gets this fraction of the slower endpoint's bandwidth.
    cross_region_factor: float = field(default=0.5, metadata=_range(0.001, 1.0))


@dataclass(frozen=True)
class ArrivalSpec:
    kind: Literal["poisson", "trace"] = "poisson"
    rate_per_hour: float = field(default=30.0, metadata=_range(0.0))
    # kind: trace: an Alibaba GPU v2023 pod list (openb_pod_list_*.csv), relative to the scenario.
    trace: str = ""
    # Trace seconds per simulated second, for arrivals and lifetimes (v2023 spans ~149 days).
    trace_speedup: float = field(default=1.0, metadata=_range(0.000001))
    # Start the replay this far into the trace (the v2023 pod list is dense in its last weeks).
    trace_offset_days: float = field(default=0.0, metadata=_range(0.0))


@dataclass(frozen=True)
class TrainingSpec:
    nodes: dict[int, float] = field(
        default_factory=lambda: {1: 0.55, 2: 0.2, 4: 0.15, 8: 0.08, 14: 0.02}
    )
    gpus_per_node: dict[int, float] = field(
        default_factory=lambda: {1: 0.35, 2: 0.25, 4: 0.15, 8: 0.25}
    )
    # "*" means any GPU; a job picks one entry and is clipped to that model's largest node.
    gpu_models: dict[str, float] = field(
        default_factory=lambda: {"h100": 0.2, "a100": 0.3, "*": 0.5}
    )
    # Pure compute time (wall time at 100% utilization).
    compute_hours: LogNormal = field(default_factory=lambda: LogNormal(median=3.0, sigma=1.0))
    gradient_gb: dict[float, float] = field(
        default_factory=lambda: {0.2: 0.4, 2.0: 0.3, 10.0: 0.2, 20.0: 0.1}
    )
    sync_interval_min: dict[float, float] = field(
        default_factory=lambda: {5.0: 0.4, 15.0: 0.3, 38.0: 0.3}
    )
    min_bandwidth_mbps: dict[float, float] = field(
        default_factory=lambda: {0.0: 0.6, 100.0: 0.2, 1000.0: 0.2}
    )
    # Minutes of compute between checkpoints, written at a gradient sync: a failed or pre-empted
    # job resumes from its last one (simulator/checkpoints.py). 0: at every sync (the default);
    # longer than a job: none, it restarts from scratch.
    checkpoint_interval_min: float = field(default=0.0, metadata=_range(0.0))
    # A job that cannot get (back) all its nodes within this long is given up.
    patience_hours: float = field(default=6.0, metadata=_range(0.0))
    # Training jobs that ask for spot capacity (`gpumarket: tier: spot`): cheaper, pre-emptible
    # by an on-demand order their provider could not serve otherwise (core/spot.py).
    spot_share: float = field(default=0.0, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class InferenceSpec:
    duration_hours: LogNormal = field(default_factory=lambda: LogNormal(median=4.0, sigma=1.0))
    uptime_target: float = field(default=0.99, metadata=_range(0.0, 1.0))
    request_rate: LogNormal = field(default_factory=lambda: LogNormal(median=3.0, sigma=1.0))
    requests_per_replica: float = field(default=4.0, metadata=_range(0.000001))
    max_replicas: int = field(default=3, metadata=_range(1, 64))
    gpus_per_replica: dict[int, float] = field(default_factory=lambda: {1: 0.7, 2: 0.2, 4: 0.1})
    gpu_models: dict[str, float] = field(
        default_factory=lambda: {"a10": 0.3, "t4": 0.2, "a100": 0.1, "*": 0.4}
    )
    patience_hours: float = field(default=1.0, metadata=_range(0.0))


@dataclass(frozen=True)
class TenantSpec:
    count: int = field(default=200, metadata=_range(1, 10_000_000))
    arrivals: ArrivalSpec = field(default_factory=ArrivalSpec)
    mix: dict[str, float] = field(default_factory=lambda: {"training": 0.4, "inference": 0.6})
    training: TrainingSpec = field(default_factory=TrainingSpec)
    inference: InferenceSpec = field(default_factory=InferenceSpec)


@dataclass(frozen=True)
class ReportSpec:
    sample_minutes: float = field(default=60.0, metadata=_range(0.001))
    plots: bool = True


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    seed: int = field(default=1, metadata=_range(0))
    duration_days: float = field(default=3.0, metadata=_range(0.0001, 3650.0))
    market: MarketSpec = field(default_factory=MarketSpec)
    providers: ProviderSpec = field(default_factory=ProviderSpec)
    tenants: TenantSpec = field(default_factory=TenantSpec)
    report: ReportSpec = field(default_factory=ReportSpec)
    # Where the file came from, so relative trace paths resolve; not a YAML key.
    base_dir: str = field(default="", metadata={"internal": True})


_CHOICES = {
    "providers.strategies": ("cost-plus", "equilibrium", "adaptive"),
    "tenants.mix": ("training", "inference"),
}


# --- loading ---------------------------------------------------------------------------------


def load_scenario(
    path: str | Path | None = None, overrides: dict[str, object] | None = None
) -> Scenario:
    """Read a scenario file (None: the built-in default), apply dotted overrides, validate."""
    if path is None:
        text = resources.files("simulator.scenarios").joinpath("default.yaml").read_text("utf-8")
        base_dir = ""
        source = "default scenario"
    else:
        path = Path(path)
        try:
            text = read_bounded_text(path, CONFIG_FILE_BYTES, "a scenario")
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        base_dir = str(path.resolve().parent)
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ScenarioError(f"{source}: not valid YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of keys, got {_kind(data)}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    scenario = parse_scenario(data)
    return dataclasses.replace(scenario, base_dir=base_dir)


def parse_scenario(data: dict[str, object]) -> Scenario:
    """Validate a mapping (as read from YAML) into a Scenario."""
    scenario = _build(Scenario, data, "")
    _check_weights(scenario)
    return scenario


def scenario_to_dict(scenario: Scenario) -> dict[str, object]:
    """The scenario as plain data (for the report), without internal fields."""
    out = dataclasses.asdict(scenario)
    out.pop("base_dir", None)
    # the spot keys only where spot is used: a scenario without spot jobs reports as before
    if scenario.tenants.training.spot_share == 0:
        tenants = out["tenants"]
        providers = out["providers"]
        assert isinstance(tenants, dict) and isinstance(providers, dict)
        tenants["training"].pop("spot_share", None)
        providers.pop("spot_percent", None)
    return out


def _set_dotted(data: dict[str, object], dotted: str, value: object) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {shown(value)}"


def _build(cls: type[Spec], data: object, path: str) -> Spec:
    if not isinstance(data, dict):
        raise ScenarioError(f"{path or 'scenario'}: expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, object] = {}
    for key, value in data.items():
        key_text = str(key)
        where = f"{path}.{path_key(key_text)}" if path else path_key(key_text)
        if key_text not in fields:
            close = difflib.get_close_matches(key_text, list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ScenarioError(f"{where}: unknown key{hint}")
        f = fields[key_text]
        converted = _convert(hints[key_text], value, where)
        _check_range(f, converted, where)
        kwargs[key_text] = converted
    return cls(**kwargs)


def _check_range(f: dataclasses.Field[object], value: object, where: str) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if not isinstance(value, int | float):
        return
    if lo is not None and value < lo:
        raise ScenarioError(f"{where}: must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ScenarioError(f"{where}: must be <= {hi}, got {value}")


def _convert(hint: object, value: object, where: str) -> object:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(str(a) for a in args)
            raise ScenarioError(f"{where}: must be one of {choices}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in args:
            try:
                return _convert(option, value, where)
            except ScenarioError as exc:
                errors.append(str(exc))
        raise ScenarioError(errors[-1])
    if origin is tuple:
        if not isinstance(value, list):
            raise ScenarioError(f"{where}: expected a list, got {_kind(value)}")
        return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ScenarioError(f"{where}: expected a mapping, got {_kind(value)}")
        out: dict[object, object] = {}
        for k, v in value.items():
            key = _convert(args[0], k, f"{where}.{path_key(k)}")
            out[key] = _convert(args[1], v, f"{where}.{path_key(k)}")
        return out
    return _scalar(hint, value, where)


def _scalar(hint: object, value: Any, where: str) -> object:
    # value: Any because float() takes whatever YAML gave and says itself what it refuses
    if hint is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected {getattr(hint, '__name__', hint)}, got a boolean")
    if hint is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ScenarioError(f"{where}: expected a whole number, got {_kind(value)}")
    if hint is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: expected a number, got {_kind(value)}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ScenarioError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str | int | float):
            raise ScenarioError(f"{where}: expected text, got {_kind(value)}")
        return str(value)
    raise ScenarioError(f"{where}: unsupported value {_kind(value)}")  # pragma: no cover


def _check_weights(s: Scenario) -> None:
    """Every value → weight mapping needs a positive total, non-negative weights, sane keys."""
    weights: dict[str, WeightTable] = {
        "providers.strategies": s.providers.strategies,
        "providers.regions": s.providers.regions,
        "providers.up_mbps": s.providers.up_mbps,
        "providers.down_mbps": s.providers.down_mbps,
        "tenants.mix": s.tenants.mix,
        "tenants.training.nodes": s.tenants.training.nodes,
        "tenants.training.gpus_per_node": s.tenants.training.gpus_per_node,
        "tenants.training.gpu_models": s.tenants.training.gpu_models,
        "tenants.training.gradient_gb": s.tenants.training.gradient_gb,
        "tenants.training.sync_interval_min": s.tenants.training.sync_interval_min,
        "tenants.training.min_bandwidth_mbps": s.tenants.training.min_bandwidth_mbps,
        "tenants.inference.gpus_per_replica": s.tenants.inference.gpus_per_replica,
        "tenants.inference.gpu_models": s.tenants.inference.gpu_models,
    }
    for key, table in weights.items():
        for value, weight in table.items():
            if weight < 0:
                raise ScenarioError(f"{key}.{path_key(value)}: weight must be >= 0, got {weight}")
            if isinstance(value, int | float) and value < 0:
                raise ScenarioError(f"{key}: values must be >= 0, got {value}")
        if sum(table.values()) <= 0:
            raise ScenarioError(f"{key}: needs at least one positive weight")
        allowed = _CHOICES.get(key)
        if allowed is not None:
            for name in table:
                if name not in allowed:
                    where = f"{key}.{path_key(name)}"
                    raise ScenarioError(f"{where}: must be one of {', '.join(allowed)}")
    counts = {
        "tenants.training.nodes": s.tenants.training.nodes,
        "tenants.training.gpus_per_node": s.tenants.training.gpus_per_node,
        "tenants.inference.gpus_per_replica": s.tenants.inference.gpus_per_replica,
    }
    for key, count_table in counts.items():
        if any(v < 1 for v in count_table):
            raise ScenarioError(f"{key}: values must be >= 1")
    for key, bandwidths in (
        ("providers.up_mbps", s.providers.up_mbps),
        ("providers.down_mbps", s.providers.down_mbps),
    ):
        if any(v <= 0 for v in bandwidths):
            raise ScenarioError(f"{key}: bandwidths must be > 0")
    for key, amounts in (
        ("tenants.training.gradient_gb", s.tenants.training.gradient_gb),
        ("tenants.training.sync_interval_min", s.tenants.training.sync_interval_min),
    ):
        if any(v <= 0 for v in amounts):
            raise ScenarioError(f"{key}: values must be > 0")
    if s.tenants.arrivals.kind == "trace" and not s.tenants.arrivals.trace:
        raise ScenarioError("tenants.arrivals.trace: required when tenants.arrivals.kind is trace")
    if isinstance(s.providers.mix, tuple) and not s.providers.mix:
        raise ScenarioError("providers.mix: needs at least one entry (or 'default')")
    if isinstance(s.providers.mix, str) and s.providers.mix != "default":
        raise ScenarioError(
            f"providers.mix: must be 'default' or a list of entries, got {s.providers.mix!r}"
        )
