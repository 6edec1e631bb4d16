"""Prometheus text exposition on a plain http.server (no dependency).

GPU series use dcgm-exporter's names, units and labels (gpu, UUID, pci_bus_id, device,
modelName, Hostname), so dashboards built for DCGM work unchanged; agent series are
gpumarket_provider_*. A value NVML did not report is left out, never exported as a sentinel.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from provider_agent.nvml import GpuReading, HostGpus

# (metric, help, type, reading -> value or None)
GPU_SERIES: tuple[tuple[str, str, str, Callable[[GpuReading], float | None]], ...] = (
    (
        "DCGM_FI_DEV_GPU_UTIL",
        "GPU utilization (in %).",
        "gauge",
        lambda g: g.health.utilization_gpu,
    ),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "Memory utilization (in %).",
        "gauge",
        lambda g: g.health.utilization_memory,
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (in MiB).",
        "gauge",
        lambda g: g.health.memory_used_mib,
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        "gauge",
        lambda g: g.health.memory_free_mib,
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge", lambda g: g.health.temperature_c),
    (
        "DCGM_FI_DEV_MEMORY_TEMP",
        "Memory temperature (in C).",
        "gauge",
        lambda g: g.health.memory_temperature_c,
    ),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge", lambda g: g.health.power_w),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since boot (in mJ).",
        "counter",
        lambda g: g.health.energy_mj,
    ),
    (
        "DCGM_FI_DEV_SM_CLOCK",
        "SM clock frequency (in MHz).",
        "gauge",
        lambda g: g.health.sm_clock_mhz,
    ),
    (
        "DCGM_FI_DEV_MEM_CLOCK",
        "Memory clock frequency (in MHz).",
        "gauge",
        lambda g: g.health.mem_clock_mhz,
    ),
    (
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "Total number of PCIe retries.",
        "counter",
        lambda g: g.health.pcie_replay_counter,
    ),
    (
        "DCGM_FI_DEV_XID_ERRORS",
        "Value of the last XID error encountered.",
        "gauge",
        lambda g: g.health.last_xid,
    ),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "Number of remapped rows for uncorrectable errors.",
        "counter",
        lambda g: None if g.health.remapped_rows is None else g.health.remapped_rows[1],
    ),
    (
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "Number of remapped rows for correctable errors.",
        "counter",
        lambda g: None if g.health.remapped_rows is None else g.health.remapped_rows[0],
    ),
    (
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "Whether remapping of rows has failed.",
        "gauge",
        lambda g: None if g.health.remapped_rows is None else g.health.remapped_rows[3],
    ),
    (
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "Current clock event (throttle) reasons, a bitmask.",
        "gauge",
        lambda g: g.health.throttle_reasons,
    ),
    (
        "gpumarket_provider_gpu_healthy",
        "1 when the GPU is healthy and may be offered.",
        "gauge",
        lambda g: 1 if g.healthy else 0,
    ),
)


@dataclass
class AgentCounters:
    bids_placed: int = 0
    bids_won: int = 0
    bids_lost: int = 0
    orders_declined: int = 0
    leases_running: int = 0
    stream_reconnects: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(host: HostGpus, counters: AgentCounters, hostname: str | None = None) -> str:
    """The whole exposition, text format 0.0.4."""
    hostname = hostname or socket.gethostname()
    out: list[str] = []
    for name, help_text, kind, get in GPU_SERIES:
        samples = []
        for g in host.gpus:
            value = get(g)
            if value is None:
                continue
            labels = {
                "gpu": str(g.info.index),
                "UUID": g.info.uuid,
                "pci_bus_id": g.info.pci_bus_id or "",
                "device": f"nvidia{g.info.index}",
                "modelName": g.info.name,
                "Hostname": hostname,
            }
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            samples.append(f"{name}{{{text}}} {_number(value)}")
        if samples:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    agent = (
        (
            "gpumarket_provider_bids_placed_total",
            "Bids sent to the marketplace.",
            "counter",
            counters.bids_placed,
        ),
        (
            "gpumarket_provider_bids_won_total",
            "Bids that won a lease.",
            "counter",
            counters.bids_won,
        ),
        ("gpumarket_provider_bids_lost_total", "Bids that lost.", "counter", counters.bids_lost),
        (
            "gpumarket_provider_orders_declined_total",
            "Orders declined (with a reason).",
            "counter",
            counters.orders_declined,
        ),
        (
            "gpumarket_provider_leases_running",
            "Leases running now.",
            "gauge",
            counters.leases_running,
        ),
        (
            "gpumarket_provider_stream_reconnects_total",
            "Order stream reconnects.",
            "counter",
            counters.stream_reconnects,
        ),
        ("gpumarket_provider_gpus", "GPUs NVML reports.", "gauge", len(host.gpus)),
        ("gpumarket_provider_gpus_healthy", "GPUs healthy now.", "gauge", len(host.healthy)),
    )
    for name, help_text, kind, value in agent:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(out) + "\n"


class MetricsServer:
    """Serves GET /metrics from a daemon thread; `port` is the bound port (config may say 0)."""

    def __init__(self, bind: str, port: int, snapshot: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = snapshot().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((bind, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
