"""A stand-in for the pynvml module that serves real NVML recordings (fixtures/nvml/*.json).

It exposes the `nvml*` functions provider_agent/nvml.py calls, with the values recorded on a real
H100. A call whose recording is `{"nvml_error": ..., "code": N}` raises the *real* pynvml error
class for that code (`NVMLError(N)` maps the code to its subclass), so the adapter's error
handling is exercised exactly as on a GPU host. It does not import pynvml itself: nvml.py hands
it the module (constants and exception classes), keeping one importer of pynvml.

Sibling files extend a recording `<stem>.json` when present:
  `<stem>_health_extra.json`  memory v2 of device 0 (reserved vs used, as nvidia-smi shows it);
  `<stem>_under_load.json`    a time series that `load=True` cycles through, one sample per poll.

Tests and demos can change the replayed hardware: `lose(i)`, `restore(i)`, `set_field(i, k, v)`
and `push_xid(i, xid)` (delivered through nvmlEventSetWait like a real XID event).
"""

from __future__ import annotations

import copy
import json
import queue
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

GPU_IS_LOST = 15
TIMEOUT = 10
UNINITIALIZED = 1
NOT_SUPPORTED = 3
INVALID_ARGUMENT = 2


class _Handle:
    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<replay GPU {self.index}>"


def load_recording(path: Path) -> dict[str, Any]:
    """The recording at `path` merged with its `_health_extra` / `_under_load` siblings."""
    data = json.loads(path.read_text())
    extra_path = path.with_name(f"{path.stem}_health_extra.json")
    load_path = path.with_name(f"{path.stem}_under_load.json")
    if extra_path.exists():
        extra = json.loads(extra_path.read_text()).get("device0", {})
        if data.get("devices") and "memory_info_v2" in extra:
            data["devices"][0].setdefault("memory_info_v2", extra["memory_info_v2"])
    if load_path.exists():
        data.setdefault("samples", json.loads(load_path.read_text()).get("samples", []))
    return data


class ReplayNvml:
    """Module-like object: `lib.nvmlDeviceGetName(h)` etc. Unknown names fall through to pynvml
    for constants (NVML_TEMPERATURE_GPU...) and exception classes."""

    def __init__(self, recording: dict[str, Any], pynvml: ModuleType, load: bool = False) -> None:
        self._n = pynvml
        self._rec = copy.deepcopy(recording)
        self._devices: list[dict[str, Any]] = self._rec.get("devices", [])
        self._lost: set[int] = set()
        self._initialized = 0
        self._samples: list[dict[str, Any]] = self._rec.get("samples", []) if load else []
        self._sample_i = -1
        self._events: queue.Queue[tuple[int, int]] = queue.Queue()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, pynvml: ModuleType, load: bool = False) -> ReplayNvml:
        return cls(load_recording(path), pynvml, load)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._n, name)

    # --- test/demo controls -------------------------------------------------------------------
    def lose(self, index: int) -> None:
        with self._lock:
            self._lost.add(index)

    def restore(self, index: int) -> None:
        with self._lock:
            self._lost.discard(index)

    def set_field(self, index: int, key: str, value: Any) -> None:
        with self._lock:
            self._devices[index][key] = value

    def push_xid(self, index: int, xid: int) -> None:
        self._events.put((index, xid))

    # --- helpers ------------------------------------------------------------------------------
    def _raise_for(self, value: Any) -> Any:
        if isinstance(value, dict) and "nvml_error" in value:
            raise self._n.NVMLError(int(value["code"]))
        return value

    def _dev(self, handle: _Handle) -> dict[str, Any]:
        if not self._initialized:
            raise self._n.NVMLError(UNINITIALIZED)
        with self._lock:
            if handle.index in self._lost:
                raise self._n.NVMLError(GPU_IS_LOST)
            return self._devices[handle.index]

    def _field(self, handle: _Handle, *path: str) -> Any:
        value: Any = self._dev(handle)
        for key in path:
            value = self._raise_for(value)
            if not isinstance(value, dict) or key not in value:
                raise self._n.NVMLError(NOT_SUPPORTED)  # not recorded: as NVML would say
            value = value[key]
        return self._raise_for(value)

    def _sample(self) -> dict[str, Any] | None:
        return self._samples[self._sample_i % len(self._samples)] if self._samples else None

    # --- library ------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if "init_error" in self._rec:
            raise self._n.NVMLError(int(self._rec["init_error"]))
        self._initialized += 1

    def nvmlShutdown(self) -> None:
        if not self._initialized:
            raise self._n.NVMLError(UNINITIALIZED)
        self._initialized -= 1

    def _system(self, key: str) -> Any:
        if not self._initialized:
            raise self._n.NVMLError(UNINITIALIZED)
        return self._raise_for(self._rec.get("system", {}).get(key, {"nvml_error": "", "code": 3}))

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._system("driver_version"))

    def nvmlSystemGetNVMLVersion(self) -> str:
        return str(self._system("nvml_version"))

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return int(self._system("cuda_driver_version"))

    def nvmlDeviceGetCount(self) -> int:
        if not self._initialized:
            raise self._n.NVMLError(UNINITIALIZED)
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        if not 0 <= index < self.nvmlDeviceGetCount():
            raise self._n.NVMLError(INVALID_ARGUMENT)
        handle = _Handle(index)
        self._dev(handle)  # a lost GPU fails here, as on real hardware
        return handle

    # --- inventory ----------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: _Handle) -> str:
        return str(self._field(h, "name"))

    def nvmlDeviceGetUUID(self, h: _Handle) -> str:
        return str(self._field(h, "uuid"))

    def nvmlDeviceGetSerial(self, h: _Handle) -> str:
        return str(self._field(h, "serial"))

    def nvmlDeviceGetCudaComputeCapability(self, h: _Handle) -> tuple[int, int]:
        major, minor = self._field(h, "cuda_compute_capability")
        return int(major), int(minor)

    def nvmlDeviceGetPciInfo(self, h: _Handle) -> SimpleNamespace:
        return SimpleNamespace(**self._field(h, "pci_info"))

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: _Handle) -> int:
        return int(self._field(h, "curr_pcie_link_gen"))

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: _Handle) -> int:
        return int(self._field(h, "curr_pcie_link_width"))

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: _Handle) -> int:
        return int(self._field(h, "max_pcie_link_gen"))

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: _Handle) -> int:
        return int(self._field(h, "max_pcie_link_width"))

    def nvmlDeviceGetMigMode(self, h: _Handle) -> list[int]:
        return list(self._field(h, "mig_mode"))

    def nvmlDeviceGetGpuInstanceProfileInfo(
        self, h: _Handle, profile: int, version: int = 2
    ) -> SimpleNamespace:
        profiles = self._field(h, "gpu_instance_profiles")
        if str(profile) not in profiles:
            raise self._n.NVMLError(INVALID_ARGUMENT)
        return SimpleNamespace(**self._raise_for(profiles[str(profile)]))

    def nvmlDeviceGetPowerManagementLimit(self, h: _Handle) -> int:
        return int(self._field(h, "power_limit_mw"))

    def nvmlDeviceGetTemperatureThreshold(self, h: _Handle, threshold: int) -> int:
        names = {
            self._n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: "shutdown",
            self._n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: "slowdown",
            self._n.NVML_TEMPERATURE_THRESHOLD_MEM_MAX: "mem_max",
            self._n.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: "gpu_max",
        }
        if threshold not in names:
            raise self._n.NVMLError(NOT_SUPPORTED)
        return int(self._field(h, "temperature_thresholds_c", names[threshold]))

    # --- health -------------------------------------------------------------------------------
    def nvmlDeviceGetMemoryInfo(self, h: _Handle, version: int | None = None) -> SimpleNamespace:
        dev = self._dev(h)
        if version == self._n.nvmlMemory_v2 and "memory_info_v2" in dev:
            mem = dict(self._field(h, "memory_info_v2"))
        else:
            mem = dict(self._field(h, "memory_info"))
            mem.setdefault("reserved", 0)
        sample = self._sample()
        if sample is not None:
            # The series records v1 `used` (driver reservation included); keep v2's split.
            used = int(sample["mem_used"]) - int(mem.get("reserved", 0))
            mem["used"] = max(used, 0) if version == self._n.nvmlMemory_v2 else sample["mem_used"]
            mem["free"] = int(mem["total"]) - int(mem["used"]) - int(mem.get("reserved", 0))
        return SimpleNamespace(**mem)

    def nvmlDeviceGetUtilizationRates(self, h: _Handle) -> SimpleNamespace:
        self._dev(h)
        if self._samples:
            self._sample_i += 1  # one poll reads utilization first: advance the series here
            s = self._sample()
            assert s is not None
            return SimpleNamespace(gpu=s["gpu_util"], memory=s["mem_util"])
        return SimpleNamespace(**self._field(h, "utilization"))

    def nvmlDeviceGetPowerUsage(self, h: _Handle) -> int:
        s = self._sample()
        return int(s["power_mw"]) if s else int(self._field(h, "power_usage_mw"))

    def nvmlDeviceGetTemperature(self, h: _Handle, sensor: int) -> int:
        s = self._sample()
        self._dev(h)
        return int(s["temp_c"]) if s else int(self._field(h, "temperature_gpu_c"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: _Handle) -> int:
        s = self._sample()
        self._dev(h)
        return int(s["throttle"]) if s else int(self._field(h, "clock_throttle_reasons"))

    def nvmlDeviceGetClockInfo(self, h: _Handle, clock_type: int) -> int:
        s = self._sample()
        if s and clock_type == self._n.NVML_CLOCK_SM:
            return int(s["sm_mhz"])
        names = {self._n.NVML_CLOCK_SM: "sm", self._n.NVML_CLOCK_MEM: "mem"}
        if clock_type not in names:
            raise self._n.NVMLError(NOT_SUPPORTED)
        return int(self._field(h, "clocks_mhz", names[clock_type], "current"))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: _Handle) -> int:
        return int(self._field(h, "total_energy_mj"))

    def nvmlDeviceGetPcieReplayCounter(self, h: _Handle) -> int:
        return int(self._field(h, "pcie_replay_counter"))

    def nvmlDeviceGetTotalEccErrors(self, h: _Handle, error_type: int, counter: int) -> int:
        kind = (
            "uncorrected"
            if error_type == self._n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
            else "corrected"
        )
        scope = "volatile" if counter == self._n.NVML_VOLATILE_ECC else "aggregate"
        return int(self._field(h, "ecc_errors", f"{kind}_{scope}"))

    def nvmlDeviceGetRemappedRows(self, h: _Handle) -> tuple[int, int, int, int]:
        corr, unc, pending, failure = self._field(h, "remapped_rows")
        return int(corr), int(unc), int(pending), int(failure)

    def nvmlDeviceGetComputeRunningProcesses(self, h: _Handle) -> list[SimpleNamespace]:
        s = self._sample()
        procs = s["procs"] if s else self._field(h, "compute_processes")
        return [SimpleNamespace(pid=p[0], usedGpuMemory=p[1]) for p in procs]

    def nvmlDeviceGetFieldValues(self, h: _Handle, field_ids: list[int]) -> list[SimpleNamespace]:
        recorded = {f["fieldId"]: f for f in self._field(h, "field_values")}
        out = []
        for fid in field_ids:
            f = recorded.get(fid)
            if f is None:
                out.append(SimpleNamespace(fieldId=fid, nvmlReturn=NOT_SUPPORTED, valueType=1))
                continue
            value = SimpleNamespace(ullVal=f.get("value_ull", 0), uiVal=f.get("value_ull", 0))
            out.append(
                SimpleNamespace(
                    fieldId=fid, nvmlReturn=f["nvmlReturn"], value=value, valueType=f["valueType"]
                )
            )
        return out

    # --- events -------------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceGetSupportedEventTypes(self, h: _Handle) -> int:
        return int(self._field(h, "supported_event_types"))

    def nvmlDeviceRegisterEvents(self, h: _Handle, mask: int, event_set: object) -> None:
        self._dev(h)

    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int) -> SimpleNamespace:
        try:
            index, xid = self._events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise self._n.NVMLError(TIMEOUT) from None
        return SimpleNamespace(
            device=_Handle(index),
            eventType=self._n.nvmlEventTypeXidCriticalError,
            eventData=xid,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )

    def nvmlEventSetFree(self, event_set: object) -> None:
        return None
