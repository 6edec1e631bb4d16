"""The NVML adapter against real H100 recordings (replayed) and the real pynvml on this host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_agent import nvml
from provider_agent.nvml import GpuMonitor, open_monitor
from provider_agent.nvml_replay import ReplayNvml, load_recording
from tests.helpers import FIXTURES_NVML, REPO, wait_until

PACKAGED = REPO / "provider_agent" / "fixtures"
H100 = FIXTURES_NVML / "h100_nvml.json"
NOT_SUPPORTED = {"nvml_error": "NVMLError_NotSupported", "code": 3, "str": "Not Supported"}


def replay(path: Path = H100, **kwargs: object) -> GpuMonitor:
    monitor = open_monitor("replay", path, **kwargs)  # type: ignore[arg-type]
    monitor.start(watch_xids=False)
    return monitor


def lib_of(monitor: GpuMonitor) -> ReplayNvml:
    assert isinstance(monitor.lib, ReplayNvml)
    return monitor.lib


def test_h100_fixture_inventory() -> None:
    status = replay().status
    assert status.status == "ok"
    assert status.driver_version == "580.159.04"
    assert status.cuda_version == "13.0"
    [gpu] = status.gpus
    info = gpu.info
    assert info.name == "NVIDIA H100 80GB HBM3"
    assert info.uuid == "GPU-ec74fc0e-388d-22e5-9031-c553a0c26378"
    assert info.serial == "1752724029435"
    assert info.interface == "sxm"
    assert info.memory_mib == 81559
    assert info.compute_capability == "9.0"
    assert info.mig_enabled is False
    assert "MIG 7g.80gb" in [p.name for p in info.mig_profiles]
    assert (info.pcie_gen, info.pcie_width) == (5, 16)
    assert info.pci_device_id == 0x2330
    assert info.power_limit_w == 700.0
    assert gpu.healthy
    # memory v2: the driver's 480 MiB reservation is not "used" (as nvidia-smi shows it)
    assert gpu.health.memory_used_mib == 0
    assert gpu.health.temperature_c == 32


@pytest.mark.parametrize(
    "name", ["h100_nvml.json", "h100_nvml_health_extra.json", "h100_nvml_under_load.json"]
)
def test_packaged_recordings_are_the_shared_ones(name: str) -> None:
    assert json.loads((PACKAGED / name).read_text()) == json.loads(
        (FIXTURES_NVML / name).read_text()
    )


def test_packaged_eight_gpu_recording_has_distinct_gpus() -> None:
    status = replay(PACKAGED / "h100x8_nvml.json").status
    assert len(status.gpus) == 8
    assert len({g.info.uuid for g in status.gpus}) == 8
    assert all(g.healthy and g.info.memory_mib == 81559 for g in status.gpus)


def test_real_nvml_on_a_host_without_driver_reports_no_gpus() -> None:
    monitor = open_monitor("nvml")
    status = monitor.start()
    if status.status == "ok":
        monitor.close()
        pytest.skip("this host has a working NVIDIA driver")
    assert status.status == "no_driver"
    assert status.gpus == ()
    assert "libnvidia-ml" in status.message
    assert monitor.poll().gpus == ()  # polling a GPU-less host keeps working
    monitor.close()


def test_driver_not_loaded_is_a_gpu_less_host() -> None:
    monitor = GpuMonitor(ReplayNvml({"init_error": 9, "devices": []}, nvml.pynvml))
    status = monitor.start()
    assert status.status == "no_driver"
    assert "kernel driver" in status.message


def test_unsupported_field_is_absent_not_an_error() -> None:
    monitor = replay()
    lib = lib_of(monitor)
    lib.set_field(0, "serial", NOT_SUPPORTED)
    lib.set_field(0, "curr_pcie_link_width", {"nvml_error": "NVMLError_NoPermission", "code": 4})
    lib.set_field(0, "remapped_rows", {"nvml_error": "NVMLError_FunctionNotFound", "code": 13})
    monitor._infos.clear()  # re-read the inventory
    gpu = monitor.poll().gpus[0]
    assert gpu.info.serial is None
    assert gpu.info.pcie_width is None
    assert gpu.health.remapped_rows is None
    assert gpu.info.uuid.startswith("GPU-") and gpu.healthy


def test_lost_gpu_is_not_offered_and_comes_back() -> None:
    monitor = replay(PACKAGED / "h100x8_nvml.json")
    lib = lib_of(monitor)
    lib.lose(3)
    status = monitor.poll()
    assert len(status.healthy) == 7
    lost = status.gpus[3]
    assert not lost.healthy and "lost" in lost.health.reasons[0]
    assert lost.info.uuid.startswith("GPU-")  # still known by its UUID
    assert "1 unhealthy" in status.message
    lib.restore(3)
    assert len(monitor.poll().healthy) == 8


def test_hot_gpu_is_unhealthy_until_it_cools() -> None:
    monitor = replay()
    lib = lib_of(monitor)
    lib.set_field(0, "temperature_gpu_c", 90)
    gpu = monitor.poll().gpus[0]
    assert not gpu.healthy
    assert "slowdown 89 C" in gpu.health.reasons[0]
    lib.set_field(0, "temperature_gpu_c", 60)
    assert monitor.poll().gpus[0].healthy


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("remapped_rows", [0, 0, 1, 0], "reset needed"),
        ("remapped_rows", [0, 3, 0, 1], "replace the GPU"),
        ("clock_throttle_reasons", 0x40, "thermal"),
        (
            "ecc_errors",
            {
                "corrected_volatile": 0,
                "corrected_aggregate": 0,
                "uncorrected_volatile": 2,
                "uncorrected_aggregate": 2,
            },
            "ECC",
        ),
    ],
)
def test_hardware_faults_mark_the_gpu_unhealthy(key: str, value: object, reason: str) -> None:
    monitor = replay()
    lib_of(monitor).set_field(0, key, value)
    gpu = monitor.poll().gpus[0]
    assert not gpu.healthy
    assert reason in " ".join(gpu.health.reasons)


def test_xid_events_from_the_event_thread() -> None:
    now = [1000.0]
    monitor = GpuMonitor(
        ReplayNvml.from_file(H100, nvml.pynvml), xid_quarantine_s=60, clock=lambda: now[0]
    )
    monitor.start()
    lib = lib_of(monitor)
    try:
        lib.push_xid(0, 13)  # application error: ignored
        lib.push_xid(0, 79)  # fallen off the bus: the GPU is bad
        wait_until(lambda: not monitor.poll().gpus[0].healthy, 5, "XID 79 to mark the GPU bad")
        assert monitor.status.gpus[0].health.reasons == ("XID 79",)
        assert monitor.status.gpus[0].health.last_xid == 79
        now[0] += 61  # quarantine over, no new XID: offered again
        assert monitor.poll().gpus[0].healthy
    finally:
        monitor.close()


def test_application_xid_alone_keeps_the_gpu_healthy() -> None:
    monitor = replay()
    for xid in (13, 31, 43, 45, 68, 109):
        monitor.record_xid(0, xid)
    assert monitor.poll().gpus[0].healthy


def test_under_load_series_is_replayed_poll_by_poll() -> None:
    monitor = replay(replay_load=True)
    utils = [monitor.poll().gpus[0].health.utilization_gpu for _ in range(40)]
    assert max(utils) >= 98 and min(utils) == 0  # idle → 100 % under bf16 matmul
    # the software power cap (throttle bit 4) under load is normal, not a fault
    assert all(g.healthy for g in monitor.status.gpus)


FIELDS = [
    "serial",
    "cuda_compute_capability",
    "mig_mode",
    "power_limit_mw",
    "curr_pcie_link_gen",
    "temperature_gpu_c",
    "utilization",
    "power_usage_mw",
    "clock_throttle_reasons",
    "remapped_rows",
    "ecc_errors",
    "total_energy_mj",
    "pcie_replay_counter",
    "field_values",
    "gpu_instance_profiles",
    "pci_info",
    "memory_info_v2",
    "memory_info",
]


@settings(max_examples=30, deadline=None)
@given(st.sets(st.sampled_from(FIELDS)))
def test_any_subset_of_unsupported_fields_still_reports(broken: set[str]) -> None:
    recording = load_recording(H100)
    for key in broken:
        recording["devices"][0][key] = NOT_SUPPORTED
    monitor = GpuMonitor(ReplayNvml(recording, nvml.pynvml))
    status = monitor.start(watch_xids=False)
    [gpu] = status.gpus
    assert gpu.healthy
    assert gpu.info.name == "NVIDIA H100 80GB HBM3"
