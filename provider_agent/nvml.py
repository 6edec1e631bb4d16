"""The NVML adapter: the only module that imports pynvml (from the nvidia-ml-py distribution).

`GpuMonitor` reads the box's GPUs (inventory once, health on every `poll()`), listens for XID
events on a thread blocked in nvmlEventSetWait, and turns every NVML failure into data:

  * init fails with LibraryNotFound / DriverNotLoaded → a host with no GPUs (status says why);
  * a field NVML does not support (NotSupported, NoPermission, FunctionNotFound...) → None;
  * GpuIsLost / Unknown on a device → that GPU is unhealthy ("lost") and not offered, and it
    comes back once it reads healthy again.

`backend="replay"` swaps the real library for nvml_replay.ReplayNvml, which serves recordings of
a real H100 through the same calls and the real pynvml error classes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pynvml

from provider_agent.nvml_replay import ReplayNvml

log = logging.getLogger(__name__)
T = TypeVar("T")

# Application-level XIDs (a job's own fault, e.g. 13 graphics exception, 31 MMU fault, 43 reset
# channel, 45 preemptive cleanup, 68 video decoder, 109 context switch timeout) say nothing about
# the GPU itself; the k8s device plugin ignores the same set.
IGNORED_XIDS = frozenset({13, 31, 43, 45, 68, 109})
# Clock-event reasons that mean the hardware itself is in trouble (not the SW power cap, not idle).
BAD_THROTTLE = {0x8: "hardware slowdown", 0x40: "hardware thermal slowdown", 0x80: "power brake"}
LOST_CODES = (pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNKNOWN)
NO_DRIVER_CODES = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: "no NVIDIA driver library (libnvidia-ml.so.1) on this host",
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded",
}


@dataclass(frozen=True)
class MigProfile:
    name: str  # e.g. "MIG 1g.10gb"
    slices: int
    memory_mib: int
    instances: int  # how many of this profile fit on the GPU


@dataclass(frozen=True)
class GpuInfo:
    """What a GPU is: read once. Any field may be None (NVML did not support it)."""

    index: int
    uuid: str
    name: str
    serial: str | None = None
    memory_mib: int | None = None
    interface: str | None = None  # "sxm" | "pcie", from the product name / PCI device id
    pci_bus_id: str | None = None
    pci_device_id: int | None = None  # e.g. 0x2330 (H100 SXM5)
    pcie_gen: int | None = None  # current link
    pcie_width: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None
    compute_capability: str | None = None  # "9.0"
    mig_enabled: bool | None = None
    mig_profiles: tuple[MigProfile, ...] = ()
    power_limit_w: float | None = None
    slowdown_temp_c: int | None = None


@dataclass(frozen=True)
class GpuHealth:
    """How a GPU is now: re-read on every poll."""

    healthy: bool
    reasons: tuple[str, ...] = ()
    temperature_c: int | None = None
    memory_temperature_c: int | None = None
    memory_used_mib: int | None = None
    memory_free_mib: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    power_w: float | None = None
    energy_mj: int | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    throttle_reasons: int | None = None
    ecc_uncorrected_volatile: int | None = None
    remapped_rows: tuple[int, int, int, int] | None = None  # corr, unc, pending, failure
    pcie_replay_counter: int | None = None
    last_xid: int | None = None
    xid_count: int = 0  # critical XIDs since the monitor started (telemetry)
    processes: tuple[tuple[int, int], ...] = ()  # (host pid, used bytes)


@dataclass(frozen=True)
class GpuReading:
    info: GpuInfo
    health: GpuHealth

    @property
    def healthy(self) -> bool:
        return self.health.healthy


@dataclass(frozen=True)
class HostGpus:
    """Everything the agent knows about the box's GPUs at one moment."""

    status: str  # "ok" | "no_gpus" | "no_driver" | "disabled" | "error"
    message: str
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    gpus: tuple[GpuReading, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> tuple[GpuReading, ...]:
        return tuple(g for g in self.gpus if g.healthy)


def interface_of(name: str) -> str | None:
    """SXM or PCIe from NVML's product name: HBM parts without "PCIe"/"NVL" are SXM modules."""
    upper = name.upper()
    if "PCIE" in upper or " NVL" in upper:
        return "pcie"
    if "SXM" in upper or "HBM3" in upper:
        return "sxm"
    return None


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def cuda_version_text(v: int | None) -> str | None:
    return None if v is None else f"{v // 1000}.{(v % 1000) // 10}"


class _Reader:
    """Calls NVML and turns per-field errors into None, logging each (call, error) once."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self._logged: set[tuple[str, int]] = set()

    def get(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return fn(*args, **kwargs)
        except pynvml.NVMLError as exc:
            if exc.value in LOST_CODES:
                raise
            key = (getattr(fn, "__name__", str(fn)), int(exc.value))
            if key not in self._logged:
                self._logged.add(key)
                log.debug("NVML %s: %s (field left out)", key[0], exc)
            return None


class GpuMonitor:
    """Inventory + health of every GPU through NVML (real or replayed).

    Thread-safe enough for its use: `poll()` runs on one worker thread; the XID thread only
    records events under a lock.
    """

    def __init__(
        self,
        lib: Any = pynvml,
        xid_quarantine_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lib = lib
        self._r = _Reader(lib)
        self._clock = clock
        self._quarantine_s = xid_quarantine_s
        self._started = False
        self._status = HostGpus(status="no_gpus", message="NVML not started")
        self._infos: dict[int, GpuInfo] = {}
        self._xids: dict[int, tuple[int, float]] = {}  # gpu index -> (xid, when)
        self._xid_counts: dict[int, int] = {}  # gpu index -> critical XIDs seen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: Any = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, watch_xids: bool = True) -> HostGpus:
        """Initialise NVML and read the inventory. Never raises for a host without GPUs."""
        try:
            self.lib.nvmlInit()
        except pynvml.NVMLError as exc:
            code = int(exc.value)
            if code in NO_DRIVER_CODES:
                self._status = HostGpus(status="no_driver", message=NO_DRIVER_CODES[code])
            else:
                self._status = HostGpus(status="error", message=f"NVML init failed: {exc}")
            return self._status
        self._started = True
        status = self.poll()
        if watch_xids and status.gpus:
            self._start_xid_thread()
        return status

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._started:
            with contextlib.suppress(pynvml.NVMLError):
                if self._event_set is not None:
                    self.lib.nvmlEventSetFree(self._event_set)
            with contextlib.suppress(pynvml.NVMLError):
                self.lib.nvmlShutdown()
            self._started = False

    @property
    def status(self) -> HostGpus:
        return self._status

    # --- polling ------------------------------------------------------------------------------
    def poll(self) -> HostGpus:
        """Re-read every GPU's health (and the inventory of any GPU not read yet)."""
        if not self._started:
            return self._status
        r = self._r
        count = r.get(self.lib.nvmlDeviceGetCount) or 0
        readings = tuple(self._read_gpu(i) for i in range(count))
        driver = r.get(self.lib.nvmlSystemGetDriverVersion)
        cuda = cuda_version_text(r.get(self.lib.nvmlSystemGetCudaDriverVersion_v2))
        if not readings:
            status, message = "no_gpus", "the NVIDIA driver is loaded but reports no GPUs"
        else:
            bad = len(readings) - sum(g.healthy for g in readings)
            status = "ok"
            message = f"{len(readings)} GPU(s)" + (f", {bad} unhealthy" if bad else "")
        self._status = HostGpus(
            status=status,
            message=message,
            driver_version=driver,
            cuda_version=cuda,
            nvml_version=r.get(self.lib.nvmlSystemGetNVMLVersion),
            gpus=readings,
        )
        return self._status

    def _read_gpu(self, index: int) -> GpuReading:
        try:
            handle = self.lib.nvmlDeviceGetHandleByIndex(index)
            info = self._infos.get(index) or self._read_info(index, handle)
            self._infos[index] = info
            health = self._read_health(index, handle, info)
        except pynvml.NVMLError as exc:
            # Lost (or unreadable) GPU: keep what we knew about it, mark it unhealthy.
            info = self._infos.get(index) or GpuInfo(index=index, uuid=f"unknown-{index}", name="?")
            health = GpuHealth(healthy=False, reasons=(f"lost: {exc}",))
        return GpuReading(info, health)

    def _read_info(self, index: int, h: Any) -> GpuInfo:
        lib, r = self.lib, self._r
        name = _text(lib.nvmlDeviceGetName(h))
        uuid = _text(lib.nvmlDeviceGetUUID(h))
        mem = r.get(lib.nvmlDeviceGetMemoryInfo, h, version=pynvml.nvmlMemory_v2)
        pci = r.get(lib.nvmlDeviceGetPciInfo, h)
        cc = r.get(lib.nvmlDeviceGetCudaComputeCapability, h)
        mig = r.get(lib.nvmlDeviceGetMigMode, h)
        power = r.get(lib.nvmlDeviceGetPowerManagementLimit, h)
        device_id = getattr(pci, "pciDeviceId", None)
        return GpuInfo(
            index=index,
            uuid=uuid,
            name=name,
            serial=r.get(lib.nvmlDeviceGetSerial, h),
            memory_mib=None if mem is None else int(mem.total) // (1 << 20),
            interface=interface_of(name),
            pci_bus_id=None if pci is None else _text(pci.busId).lower(),
            pci_device_id=None if device_id is None else int(device_id) >> 16,
            pcie_gen=r.get(lib.nvmlDeviceGetCurrPcieLinkGeneration, h),
            pcie_width=r.get(lib.nvmlDeviceGetCurrPcieLinkWidth, h),
            pcie_gen_max=r.get(lib.nvmlDeviceGetMaxPcieLinkGeneration, h),
            pcie_width_max=r.get(lib.nvmlDeviceGetMaxPcieLinkWidth, h),
            compute_capability=None if cc is None else f"{cc[0]}.{cc[1]}",
            mig_enabled=None if mig is None else bool(mig[0]),
            mig_profiles=self._mig_profiles(h),
            power_limit_w=None if power is None else power / 1000,
            slowdown_temp_c=r.get(
                lib.nvmlDeviceGetTemperatureThreshold, h, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
            ),
        )

    def _mig_profiles(self, h: Any) -> tuple[MigProfile, ...]:
        profiles = []
        for p in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = self.lib.nvmlDeviceGetGpuInstanceProfileInfo(h, p)
            except pynvml.NVMLError as exc:
                if exc.value in LOST_CODES:
                    raise
                continue  # this profile does not exist on this GPU
            name = _text(info.name)
            profiles.append(
                MigProfile(
                    name, int(info.sliceCount), int(info.memorySizeMB), int(info.instanceCount)
                )
            )
        return tuple(profiles)

    def _read_health(self, index: int, h: Any, info: GpuInfo) -> GpuHealth:
        lib, r = self.lib, self._r
        util = r.get(lib.nvmlDeviceGetUtilizationRates, h)
        mem = r.get(lib.nvmlDeviceGetMemoryInfo, h, version=pynvml.nvmlMemory_v2)
        power = r.get(lib.nvmlDeviceGetPowerUsage, h)
        procs = r.get(lib.nvmlDeviceGetComputeRunningProcesses, h) or []
        health = GpuHealth(
            healthy=True,
            temperature_c=r.get(lib.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
            memory_temperature_c=self._memory_temp(h),
            memory_used_mib=None if mem is None else int(mem.used) // (1 << 20),
            memory_free_mib=None if mem is None else int(mem.free) // (1 << 20),
            utilization_gpu=None if util is None else int(util.gpu),
            utilization_memory=None if util is None else int(util.memory),
            power_w=None if power is None else power / 1000,
            energy_mj=r.get(lib.nvmlDeviceGetTotalEnergyConsumption, h),
            sm_clock_mhz=r.get(lib.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
            mem_clock_mhz=r.get(lib.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM),
            throttle_reasons=r.get(lib.nvmlDeviceGetCurrentClocksEventReasons, h),
            ecc_uncorrected_volatile=r.get(
                lib.nvmlDeviceGetTotalEccErrors,
                h,
                pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                pynvml.NVML_VOLATILE_ECC,
            ),
            remapped_rows=r.get(lib.nvmlDeviceGetRemappedRows, h),
            pcie_replay_counter=r.get(lib.nvmlDeviceGetPcieReplayCounter, h),
            last_xid=self._recent_xid(index),
            xid_count=self._xid_counts.get(index, 0),
            processes=tuple((int(p.pid), int(p.usedGpuMemory or 0)) for p in procs),
        )
        reasons = health_problems(health, info)
        return replace(health, healthy=not reasons, reasons=reasons)

    def _memory_temp(self, h: Any) -> int | None:
        values = self._r.get(self.lib.nvmlDeviceGetFieldValues, h, [pynvml.NVML_FI_DEV_MEMORY_TEMP])
        if not values or values[0].nvmlReturn != pynvml.NVML_SUCCESS:
            return None
        return int(values[0].value.uiVal)

    def _recent_xid(self, index: int) -> int | None:
        with self._lock:
            seen = self._xids.get(index)
        if seen is None or self._clock() - seen[1] > self._quarantine_s:
            return None
        return seen[0]

    # --- XID events ---------------------------------------------------------------------------
    def _start_xid_thread(self) -> None:
        lib = self.lib
        try:
            es = lib.nvmlEventSetCreate()
            mask = pynvml.nvmlEventTypeXidCriticalError
            for i in range(lib.nvmlDeviceGetCount()):
                h = lib.nvmlDeviceGetHandleByIndex(i)
                supported = lib.nvmlDeviceGetSupportedEventTypes(h)
                lib.nvmlDeviceRegisterEvents(h, mask & supported, es)
        except pynvml.NVMLError as exc:
            # NotSupported here means "too old to health-check", not unhealthy (k8s plugin rule).
            log.warning("XID events unavailable (%s): health comes from polling only", exc)
            return
        self._event_set = es
        self._thread = threading.Thread(target=self._xid_loop, name="nvml-xid", daemon=True)
        self._thread.start()

    def _xid_loop(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.lib.nvmlEventSetWait_v2(self._event_set, 1000)
            except pynvml.NVMLError as exc:
                if exc.value == pynvml.NVML_ERROR_TIMEOUT:
                    continue
                log.error("NVML event wait failed (%s): marking every GPU unhealthy", exc)
                self._mark_all(xid=-1)
                self._stop.wait(5)
                continue
            self.record_xid(self._event_index(event), int(event.eventData))

    def _event_index(self, event: Any) -> int:
        handle = event.device
        if hasattr(handle, "index"):  # replayed handle
            return int(handle.index)
        return int(self.lib.nvmlDeviceGetIndex(handle))

    def record_xid(self, index: int, xid: int) -> None:
        """Remember a critical XID on a GPU unless it is an application error."""
        if xid in IGNORED_XIDS:
            log.info("GPU %d: application XID %d (ignored)", index, xid)
            return
        log.warning("GPU %d: XID %d: not offering it for %.0f s", index, xid, self._quarantine_s)
        with self._lock:
            self._xids[index] = (xid, self._clock())
            self._xid_counts[index] = self._xid_counts.get(index, 0) + 1

    def _mark_all(self, xid: int) -> None:
        with self._lock:
            now = self._clock()
            for index in self._infos:
                self._xids[index] = (xid, now)


def health_problems(h: GpuHealth, info: GpuInfo) -> tuple[str, ...]:
    """Why a GPU must not be offered now (empty when it is fine). Unknown values never count."""
    problems = []
    hot = info.slowdown_temp_c
    if h.temperature_c is not None and hot is not None and h.temperature_c >= hot:
        problems.append(f"temperature {h.temperature_c} C at or above slowdown {hot} C")
    if h.ecc_uncorrected_volatile:
        problems.append(f"{h.ecc_uncorrected_volatile} uncorrectable ECC errors")
    if h.remapped_rows is not None:
        _, _, pending, failure = h.remapped_rows
        if failure:
            problems.append("row remapping failed: replace the GPU")
        elif pending:
            problems.append("row remap pending: GPU reset needed")
    if h.throttle_reasons:
        problems += [why for bit, why in BAD_THROTTLE.items() if h.throttle_reasons & bit]
    if h.last_xid is not None:
        problems.append(f"XID {h.last_xid}" if h.last_xid >= 0 else "NVML event wait failed")
    return tuple(problems)


def open_monitor(
    backend: str,
    replay_file: Path | None = None,
    replay_load: bool = False,
    xid_quarantine_s: float = 600.0,
) -> GpuMonitor:
    """A monitor over the real NVML ("nvml"), a recording ("replay"), or nothing ("none")."""
    if backend == "replay":
        if replay_file is None:
            raise ValueError("replay backend needs a replay_file")
        lib = ReplayNvml.from_file(replay_file, pynvml, load=replay_load)
        return GpuMonitor(lib, xid_quarantine_s=xid_quarantine_s)
    if backend == "none":
        return _NoGpus()
    return GpuMonitor(pynvml, xid_quarantine_s=xid_quarantine_s)


class _NoGpus(GpuMonitor):
    """GPU discovery switched off in the config: a CPU-only provider."""

    def __init__(self) -> None:
        super().__init__(lib=None)

    def start(self, watch_xids: bool = True) -> HostGpus:
        self._status = HostGpus(status="disabled", message="GPU discovery is off in the config")
        return self._status


def nvml_error(code: int) -> Exception:
    """The real pynvml exception for a return code (for callers that must not import pynvml)."""
    return pynvml.NVMLError(code)
