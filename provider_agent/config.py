"""The agent's TOML configuration, read with tomllib and validated into frozen dataclasses.

Every problem is a ConfigError naming the file and the key ("provider.toml: pricing.scale.
cpu_hour: must not be negative"); the CLI prints it on one line and exits 78 (EX_CONFIG), which
the systemd unit's RestartPreventExitStatus=78 keeps from restart-looping. Unknown keys are
errors too: a typo must not silently fall back to a default. examples/provider.toml documents
every key.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketplace.api.addresses import off_loopback, parse_addresses
from marketplace.core import limits, money, units
from marketplace.core.bidding import BidPolicy
from marketplace.core.errors import InvalidArgument
from marketplace.core.pricing import PricingError, ScalePricing
from marketplace.userfiles import CONFIG_FILE_BYTES, read_bounded_text
from provider_agent.container import DEFAULT_CAPABILITIES, DOCKER_DEFAULT_CAPABILITIES

EX_CONFIG = 78
PACKAGED_FIXTURES = Path(__file__).resolve().parent / "fixtures"


class ConfigError(ValueError):
    def __init__(self, key: str, message: str, source: str = "config") -> None:
        self.key = key
        self.message = message
        self.source = source
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


@dataclass(frozen=True)
class ProviderSection:
    key: str = "provider"  # key name under $GPUMARKET_HOME/keys, or a path to a PEM file
    region: str = ""
    host_uri: str = ""
    attributes: tuple[tuple[str, str], ...] = ()  # the operator's own (region, tier...)
    state_dir: Path | None = None  # where the agent keeps its resume token; default: home


# The longest wait between reconnect attempts. After an outage the market gives providers its
# heartbeat timeout (30 s by default) from when it serves again before declaring one lost: the
# longest wait, +20 % jitter, must fit well inside it (at 30 s an agent could miss it, and its
# leases be re-auctioned, though the market was the one away).
DEFAULT_RECONNECT_MAX_S = 10.0


@dataclass(frozen=True)
class MarketplaceSection:
    # HOST:PORT, or several of one marketplace (leader, standbys) joined by commas: the agent
    # moves on to the next when one is down or not the leader (marketplace/api/addresses.py)
    address: str = "127.0.0.1:7420"
    call_timeout_s: float = 5.0
    reconnect_max_s: float = DEFAULT_RECONNECT_MAX_S
    tls: bool = False  # TLS with the system's roots (implied by tls_ca or tls_cert)
    tls_ca: Path | None = None  # the CA that signed the marketplace's certificate (PEM)
    # the agent's client certificate and key (PEM), for a market that asks for mutual TLS
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # plaintext to a market off this machine, on purpose (else a config error: the agent's
    # manifests, their env secrets and its tenants' logs would cross the network readable)
    insecure: bool = False

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None

    @property
    def addresses(self) -> tuple[str, ...]:
        return parse_addresses(self.address)


@dataclass(frozen=True)
class GpuSection:
    backend: str = "nvml"  # nvml | replay | none
    replay_file: Path | None = None
    replay_load: bool = False  # replay the under-load time series (utilisation, power)
    poll_interval_s: float = 5.0
    allow_uuids: tuple[str, ...] = ()  # offer only these GPUs; empty: every healthy GPU
    xid_quarantine_s: float = 600.0


STORAGE_CLASSES = ("beta1", "beta2", "beta3", "ram")  # Akash's, less `default` (see inventory)
DEFAULT_STORAGE_CLASSES = ("beta2", "ram")


@dataclass(frozen=True)
class ResourcesSection:
    cpu_millis: int | None = None  # None: every CPU of the host, less the reserve
    memory_bytes: int | None = None  # None: the host's memory, less the reserve
    storage_bytes: int | None = None  # None: free disk under the state dir
    reserve_cpu_millis: int = 1000
    reserve_memory_bytes: int = 2 * units.GI
    # Akash's storage classes this host offers (beta1 HDD, beta2 SSD, beta3 NVMe; ram = tmpfs).
    # Persistent classes are Docker named volumes on the engine's disk: claim only what it is.
    storage_classes: tuple[str, ...] = DEFAULT_STORAGE_CLASSES


@dataclass(frozen=True)
class HoldLimits:
    """What one order or tenant may hold of this provider ([policy] keys; see bidder.py)."""

    max_hold_ms: int = 600_000  # a bid's reservation is withdrawn and released after this long
    max_bids_per_tenant: int = 8  # pending bids (reservations) for one tenant at once; 0: no limit
    failed_start_cooldown_ms: int = 60_000  # no bids on a shape that failed to start; doubles


@dataclass(frozen=True)
class PricingSection:
    strategy: str = "scale"  # scale | script
    scale: ScalePricing | None = None
    script_command: tuple[str, ...] = ()
    script_timeout_s: float = 5.0
    # spot orders (`gpumarket: tier: spot`): this percent of the on-demand price, never below
    # spot_floor per GPU-hour (core/spot.py's spot_price)
    spot_percent: int = 100
    spot_floor: int = 0


@dataclass(frozen=True)
class RuntimeSection:
    pids_limit: int = 1024
    shm_bytes: int = 64 * units.MI
    training_shm_bytes: int = units.GI  # training jobs (NCCL, data loaders) need a large /dev/shm
    max_restarts: int = 3  # local restarts for on-failure / always before the lease fails
    stop_grace_s: int = 10
    preempt_grace_s: int = 30  # SIGTERM → SIGKILL for a spot lease pre-empted by an on-demand one
    # the capabilities a container keeps (every other is dropped); see container.py
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    volume_check_s: float = 60.0  # how often persistent volumes are measured against their size


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = 9400  # 0: any free port (printed at start)


@dataclass(frozen=True)
class NetworkSection:
    # The host address tenant ports are published on. "auto": the IP of [provider] host_uri when
    # it names one (else what its name resolves to), 127.0.0.1 without host_uri; "0.0.0.0" (or
    # "::") publishes on every interface, only when the operator writes it.
    publish_address: str = "auto"
    # This host's link in megabits per second (0: not declared), published as the provider
    # attributes network/up-mbps and network/down-mbps: gangs rank bids by it (core/gang.py).
    up_mbps: float = 0.0
    down_mbps: float = 0.0


@dataclass(frozen=True)
class IngressSection:
    listen: str = ""  # "0.0.0.0:8080": the HTTP ingress for every lease; "": no ingress
    domain: str = ""  # leases get <hash>.<domain>; required with listen (wildcard DNS to here)
    public_port: int = 0  # the port tenants use, when forwarded (80 -> 8080); 0: the listen port
    idle_timeout_s: float = 300.0  # a proxied connection with no byte either way is closed
    max_connections: int = 1024  # open at once; more are answered 503

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ShellSection:
    # tenants may open shells in (and copy files to and from) their leases' containers, relayed
    # by the marketplace (provider_agent/shell.py); false refuses every one, with the reason
    enabled: bool = True
    max_copy_bytes: int = limits.MAX_COPY_BYTES  # the largest file copied in or out


@dataclass(frozen=True)
class AgentConfig:
    provider: ProviderSection = field(default_factory=ProviderSection)
    marketplace: MarketplaceSection = field(default_factory=MarketplaceSection)
    gpu: GpuSection = field(default_factory=GpuSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    pricing: PricingSection = field(default_factory=PricingSection)
    policy: BidPolicy = field(default_factory=BidPolicy)
    holds: HoldLimits = field(default_factory=HoldLimits)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    ingress: IngressSection = field(default_factory=IngressSection)
    shell: ShellSection = field(default_factory=ShellSection)
    source: str = "<defaults>"


# --- reading ----------------------------------------------------------------------------------


class _Section:
    """Typed getters over one TOML table that remember which keys were read."""

    def __init__(self, data: dict[str, Any], prefix: str, source: str) -> None:
        self.data = data
        self.prefix = prefix
        self.source = source
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        # the key cut as a quoted value is: an unknown or attribute key may be 100 KB long
        return ConfigError(f"{self.prefix}{limits.path_key(key)}", message, self.source)

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def string(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {units.type_name(value)}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {units.type_name(value)}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {units.type_name(value)}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum:g}, got {value}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, got {units.type_name(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(key, f"must be {bound}, got {value}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def parsed(self, key: str, parse: Any, default: Any = None) -> Any:
        value = self.raw(key)
        if value is None or value == "auto":
            return default
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def amount(self, key: str, default: int | None = 0) -> int | None:
        return self.parsed(key, lambda v: parse_money(v), default)

    def table(self, key: str) -> _Section:
        value = self.raw(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {units.type_name(value)}")
        return _Section(value, f"{self.prefix}{key}.", self.source)

    def check_unknown(self, subtables: tuple[_Section, ...] = ()) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(key, "unknown key (see examples/provider.toml for every key)")
        for sub in subtables:
            sub.check_unknown()


def parse_money(value: object) -> int:
    """A price: "2.50" (units) or "2500000u" (micro-units) or a whole number of units, at most
    the market's largest price an hour (a bigger one could never be bid). Floats are refused:
    money never goes through a float."""
    if isinstance(value, bool | float):
        raise ValueError(f'write prices as strings, e.g. "{value}", not as a float')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        micro = value * money.MICRO
    elif isinstance(value, str):
        micro = money.parse_amount(value)
    else:
        raise ValueError(f'must be a price such as "2.50", got {units.type_name(value)}')
    if micro > limits.MAX_PRICE_PER_HOUR:
        raise ValueError(
            f"{money.format_amount(micro)} is over the largest price the market takes, "
            f"{money.format_amount(limits.MAX_PRICE_PER_HOUR)} an hour"
        )
    return micro


def _path(value: object, base: Path) -> Path:
    if not isinstance(value, str):
        raise ValueError(f"must be a path string, got {units.type_name(value)}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def check_runnable(cfg: AgentConfig) -> None:
    """What `provider run` needs beyond a valid file. Raises ConfigError."""
    if cfg.pricing.strategy == "scale" and cfg.pricing.scale is None:
        raise ConfigError("pricing.scale", "is required to bid: set at least one price", cfg.source)


def load_config(path: Path) -> AgentConfig:
    """Read and validate a config file. Raises ConfigError."""
    source = str(path)
    try:
        text = read_bounded_text(path, CONFIG_FILE_BYTES, "an agent config")
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror or exc}", source) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source) from None
    return parse_config(data, source, path.resolve().parent)


def parse_config(
    data: dict[str, Any], source: str = "config", base: Path | None = None
) -> AgentConfig:
    base = base or Path.cwd()
    root = _Section(data, "", source)
    sections = {
        name: root.table(name)
        for name in (
            "provider",
            "marketplace",
            "gpu",
            "resources",
            "pricing",
            "policy",
            "runtime",
            "metrics",
            "network",
            "ingress",
            "shell",
        )
    }
    cfg = AgentConfig(
        provider=_provider(sections["provider"], base),
        marketplace=_marketplace(sections["marketplace"], base),
        gpu=_gpu(sections["gpu"], base),
        resources=_resources(sections["resources"]),
        pricing=_pricing(sections["pricing"], base),
        policy=_policy(sections["policy"]),
        holds=_holds(sections["policy"]),
        runtime=_runtime(sections["runtime"]),
        metrics=_metrics(sections["metrics"]),
        network=_network(sections["network"]),
        ingress=_ingress(sections["ingress"]),
        shell=_shell(sections["shell"]),
        source=source,
    )
    root.check_unknown(tuple(sections.values()))
    return cfg


def _provider(s: _Section, base: Path) -> ProviderSection:
    attrs = s.table("attributes")
    pairs = []
    for key, value in attrs.data.items():
        attrs.used.add(key)
        if not isinstance(value, str):
            raise attrs.error(key, f"attribute values are strings, got {units.type_name(value)}")
        try:  # what the market would refuse at registration, said here with the config's line
            limits.check_attribute_key(key)
        except InvalidArgument as exc:
            raise attrs.error(key, str(exc)) from None
        if key.startswith("capabilities/gpu"):
            raise attrs.error(
                key, "GPU capabilities are derived from the inventory; do not type them"
            )
        if key.startswith("capabilities/storage"):
            raise attrs.error(key, "storage capabilities come from resources.storage_classes")
        pairs.append((key, value))
    state = s.raw("state_dir")
    return ProviderSection(
        key=s.string("key", "provider"),
        region=s.string("region", ""),
        host_uri=s.string("host_uri", ""),
        attributes=tuple(sorted(pairs)),
        state_dir=None if state is None else s.parsed("state_dir", lambda v: _path(v, base)),
    )


def _marketplace(s: _Section, base: Path) -> MarketplaceSection:
    pem = {key: _pem_file(s, key, base) for key in ("tls_ca", "tls_cert", "tls_key")}
    if (pem["tls_cert"] is None) != (pem["tls_key"] is None):
        raise s.error("tls_cert", "and tls_key go together: set both or neither")
    section = MarketplaceSection(
        address=_market_addresses(s),
        call_timeout_s=s.number("call_timeout_s", 5.0, minimum=0.1),
        reconnect_max_s=s.number("reconnect_max_s", DEFAULT_RECONNECT_MAX_S, minimum=0.1),
        tls=s.boolean("tls", False),
        insecure=s.boolean("insecure", False),
        **pem,
    )
    remote = None if section.uses_tls or section.insecure else off_loopback(section.address)
    if remote is not None:
        raise s.error(
            "address",
            f'{remote} is not this machine and no TLS is set: set tls_ca = "CA.pem" (or '
            "tls = true for the system's roots), or insecure = true to talk plaintext on purpose",
        )
    return section


def _market_addresses(s: _Section) -> str:
    """address = "a:7420" or "a:7420,b:7420" or ["a:7420", "b:7420"], as "a:7420,b:7420"."""
    value = s.raw("address")
    if value is None:
        return MarketplaceSection.address
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        listed: list[str] = value
        value = ",".join(listed)
    if not isinstance(value, str):
        raise s.error(
            "address", f"must be a string or a list of strings, got {units.type_name(value)}"
        )
    try:
        return ",".join(parse_addresses(value))
    except InvalidArgument as exc:
        raise s.error("address", str(exc)) from None


def _pem_file(s: _Section, key: str, base: Path) -> Path | None:
    """An optional PEM file, relative to the config file; it must exist and look like PEM."""
    if s.raw(key) is None:
        return None
    path: Path = s.parsed(key, lambda v: _path(v, base))
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise s.error(key, f"cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise s.error(key, f"{path} is not a PEM file")
    return path


def _gpu(s: _Section, base: Path) -> GpuSection:
    backend = s.string("backend", "nvml", ("nvml", "replay", "none"))
    replay = s.raw("replay_file")
    replay_file = None
    if replay is not None:
        replay_file = s.parsed("replay_file", lambda v: _replay_path(v, base))
        if not replay_file.exists():
            raise s.error("replay_file", f"no such file: {replay_file}")
    if backend == "replay" and replay_file is None:
        raise s.error("replay_file", 'is required when backend = "replay"')
    return GpuSection(
        backend=backend,
        replay_file=replay_file,
        replay_load=s.boolean("replay_load", False),
        poll_interval_s=s.number("poll_interval_s", 5.0, minimum=0.1),
        allow_uuids=s.strings("allow_uuids"),
        xid_quarantine_s=s.number("xid_quarantine_s", 600.0),
    )


def _replay_path(value: object, base: Path) -> Path:
    """A path, or "builtin:h100_nvml.json" for a recording shipped inside the package."""
    if isinstance(value, str) and value.startswith("builtin:"):
        return PACKAGED_FIXTURES / value.removeprefix("builtin:")
    return _path(value, base)


def _resources(s: _Section) -> ResourcesSection:
    return ResourcesSection(
        cpu_millis=s.parsed("cpu", units.parse_cpu),
        memory_bytes=s.parsed("memory", units.parse_size),
        storage_bytes=s.parsed("storage", units.parse_size),
        reserve_cpu_millis=s.parsed("reserve_cpu", units.parse_cpu, 1000),
        reserve_memory_bytes=s.parsed("reserve_memory", units.parse_size, 2 * units.GI),
        storage_classes=_storage_classes(s),
    )


def _storage_classes(s: _Section) -> tuple[str, ...]:
    if s.raw("storage_classes") is None:
        return DEFAULT_STORAGE_CLASSES
    classes = s.strings("storage_classes")
    for name in classes:
        if name not in STORAGE_CLASSES:
            raise s.error("storage_classes", f"{name!r} is not one of {', '.join(STORAGE_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise s.error("storage_classes", "lists a class twice")
    return classes


def _pricing(s: _Section, base: Path) -> PricingSection:
    strategy = s.string("strategy", "scale", ("scale", "script"))
    scale_t = s.table("scale")
    script_t = s.table("script")
    scale = None
    if scale_t.data:
        gpu_t = scale_t.table("gpu_hour")
        gpu = []
        for model in list(gpu_t.data):
            gpu.append((model, int(gpu_t.amount(model) or 0)))
        try:
            scale = ScalePricing(
                gpu_hour=tuple(gpu),
                cpu_hour=scale_t.amount("cpu_hour") or 0,
                memory_gib_hour=scale_t.amount("memory_gib_hour") or 0,
                storage_gib_hour=scale_t.amount("storage_gib_hour") or 0,
                start_fee=scale_t.amount("start_fee") or 0,
                floor=scale_t.amount("floor") or 0,
                ceiling=scale_t.amount("ceiling", None),
            )
        except PricingError as exc:
            raise ConfigError("pricing.scale", str(exc), s.source) from None
        scale_t.check_unknown((gpu_t,))
    command = script_t.raw("command")
    if isinstance(command, str):
        command = [command]
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command)
    ):
        raise script_t.error("command", "must be a command line as a list of strings")
    if strategy == "script" and not command:
        raise script_t.error("command", 'is required when strategy = "script"')
    if command:
        first = Path(command[0]).expanduser()
        if "/" in command[0] and not first.is_absolute():
            command = [str(base / first), *command[1:]]
    timeout = script_t.number("timeout_s", 5.0, minimum=0.1)
    script_t.check_unknown()
    return PricingSection(
        strategy=strategy,
        scale=scale,
        script_command=tuple(command or ()),
        script_timeout_s=timeout,
        spot_percent=s.integer("spot_percent", 100, minimum=1, maximum=100),
        spot_floor=s.amount("spot_floor") or 0,
    )


def _policy(s: _Section) -> BidPolicy:
    allow, deny = s.strings("allow_tenants"), s.strings("deny_tenants")
    if set(allow) & set(deny):
        raise s.error("deny_tenants", f"{sorted(set(allow) & set(deny))[0]} is also allowed")
    return BidPolicy(
        max_leases=s.integer("max_leases", 0),
        allow_tenants=frozenset(allow),
        deny_tenants=frozenset(deny),
    )


def _holds(s: _Section) -> HoldLimits:
    defaults = HoldLimits()
    return HoldLimits(
        max_hold_ms=s.parsed("max_hold", units.parse_duration_ms, defaults.max_hold_ms),
        max_bids_per_tenant=s.integer("max_bids_per_tenant", defaults.max_bids_per_tenant),
        failed_start_cooldown_ms=s.parsed(
            "failed_start_cooldown", units.parse_duration_ms, defaults.failed_start_cooldown_ms
        ),
    )


def _runtime(s: _Section) -> RuntimeSection:
    return RuntimeSection(
        pids_limit=s.integer("pids_limit", 1024, minimum=16),
        shm_bytes=s.parsed("shm_size", units.parse_size, 64 * units.MI),
        training_shm_bytes=s.parsed("training_shm_size", units.parse_size, units.GI),
        max_restarts=s.integer("max_restarts", 3),
        stop_grace_s=s.integer("stop_grace_s", 10, minimum=1),
        preempt_grace_s=s.integer("preempt_grace_s", 30, minimum=1, maximum=3600),
        capabilities=_capabilities(s),
        volume_check_s=s.number("volume_check_s", 60.0, minimum=1.0),
    )


def _capabilities(s: _Section) -> tuple[str, ...]:
    """`capabilities = [...]` (a subset of Docker's default set) or `cap_drop_all = true`."""
    drop_all = s.boolean("cap_drop_all", False)
    if s.raw("capabilities") is None:
        return () if drop_all else DEFAULT_CAPABILITIES
    if drop_all:
        raise s.error("cap_drop_all", "= true and capabilities exclude each other: set one")
    chosen = tuple(c.upper().removeprefix("CAP_") for c in s.strings("capabilities"))
    for cap in chosen:
        if cap not in DOCKER_DEFAULT_CAPABILITIES:
            raise s.error(
                "capabilities",
                f"{cap} is not in Docker's default set ({', '.join(DOCKER_DEFAULT_CAPABILITIES)})",
            )
    return tuple(sorted(set(chosen)))


def _metrics(s: _Section) -> MetricsSection:
    return MetricsSection(
        enabled=s.boolean("enabled", True),
        bind=s.string("bind", "127.0.0.1"),
        port=s.integer("port", 9400, minimum=0, maximum=65535),
    )


def _shell(s: _Section) -> ShellSection:
    most = s.parsed("max_copy_bytes", units.parse_size, limits.MAX_COPY_BYTES)
    if not 0 < most <= limits.MAX_COPY_BYTES:
        raise s.error("max_copy_bytes", f"must be between 1 and {limits.MAX_COPY_BYTES} bytes")
    return ShellSection(enabled=s.boolean("enabled", True), max_copy_bytes=most)


def _network(s: _Section) -> NetworkSection:
    address = s.string("publish_address", "auto")
    if address != "auto":
        s.parsed("publish_address", _ip_address)
    return NetworkSection(
        publish_address=address,
        up_mbps=float(s.integer("up_mbps", 0, 0, limits.MAX_BANDWIDTH_MBPS)),
        down_mbps=float(s.integer("down_mbps", 0, 0, limits.MAX_BANDWIDTH_MBPS)),
    )


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f'must be an IP address of this host or "auto", got {value!r}') from None


_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def _ingress(s: _Section) -> IngressSection:
    listen = s.string("listen", "")
    domain = s.string("domain", "").lower().rstrip(".")
    if listen:
        host, colon, port = listen.rpartition(":")
        number = limits.whole_number(port, 5)
        if not colon or number is None or number > 65535:
            raise s.error("listen", f'must be "address:port", e.g. "0.0.0.0:8080", got {listen!r}')
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise s.error("listen", f"{host!r} is not an IP address") from None
        if not domain:
            raise s.error("domain", "is required with listen: leases are named <hash>.<domain>")
    if domain and (len(domain) > 200 or not _DOMAIN.match(domain)):
        raise s.error("domain", f"must be a DNS name such as ingress.example.com, got {domain!r}")
    return IngressSection(
        listen=listen,
        domain=domain,
        public_port=s.integer("public_port", 0, minimum=0, maximum=65535),
        idle_timeout_s=s.number("idle_timeout_s", 300.0, minimum=1.0),
        max_connections=s.integer("max_connections", 1024, minimum=1),
    )
