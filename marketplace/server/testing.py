"""A real marketplace in a background thread, for tests and benchmarks (real gRPC, real SQLite).

with ServerThread(tmp_path) as server:
    client = TenantClient(server.address, key)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar, TypeVarTuple

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.market import MarketConfig
from marketplace.identity import Key
from marketplace.server.app import MarketApp
from marketplace.server.serve import Running, ServeOptions, start

R = TypeVar("R")
Args = TypeVarTuple("Args")


class ServerThread:
    def __init__(
        self, data_dir: Path, config: MarketConfig | None = None, listen: str = "127.0.0.1:0"
    ) -> None:
        self.options = ServeOptions(
            listen=listen, data_dir=data_dir, config=config or MarketConfig()
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._running: Running | None = None

    def start(self) -> ServerThread:
        self._thread.start()
        self._running = asyncio.run_coroutine_threadsafe(start(self.options), self._loop).result(30)
        return self

    @property
    def address(self) -> str:
        assert self._running is not None
        return self._running.address

    @property
    def admin(self) -> Key:
        assert self._running is not None
        return self._running.admin

    @property
    def app(self) -> MarketApp:
        assert self._running is not None
        return self._running.app

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (for asyncio.run_coroutine_threadsafe)."""
        return self._loop

    def call(self, fn: Callable[[*Args], R], *args: *Args) -> R:
        """Run fn(*args) on the server's loop (where the market lives) and return its result."""

        async def on_loop() -> R:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(30)

    def stop(self) -> None:
        if self._running is not None:
            asyncio.run_coroutine_threadsafe(self._running.stop(0.2), self._loop).result(30)
            self._running = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- a small kit for tests and benchmarks ------------------------------------------------------

H100_NVML_NAME = "NVIDIA H100 80GB HBM3"


def h100_inventory(prefix: str, gpus: int = 2) -> pb.Inventory:
    """An inventory as an agent on an H100 box would send it."""
    return pb.Inventory(
        gpus=[
            pb.GpuDevice(
                index=i,
                uuid=f"GPU-{prefix}-{i}",
                name=H100_NVML_NAME,
                model="h100",
                memory_mib=81559,
                interface="sxm",
                healthy=True,
            )
            for i in range(gpus)
        ],
        cpu_millis=32_000,
        memory_bytes=128 * 1024**3,
        storage_bytes=1024**4,
        driver_version="550.54.15",
        cuda_version="12.4",
    )


def provider_registration(name: str, region: str = "eu") -> pb.RegisterProvider:
    """What an agent on an H100 box in `region` registers with (inventory `h100_inventory`)."""
    return pb.RegisterProvider(
        host_uri=f"https://{name}.example",
        attributes=[pb.Attribute(key="region", value=region)],
        inventory=h100_inventory(name),
        region=region,
        version="test",
    )


def gpu_sdl(bid_window: str = "300ms", price: int = 5000, extra: str = "") -> bytes:
    """A one-group SDL asking for one H100 in region eu, with a short bid window."""
    return f"""
version: "2.0"
services:
  train:
    image: gpumarket/busybox:latest
    expose:
      - port: 8080
        to:
          - global: true
profiles:
  compute:
    train:
      resources:
        cpu: {{units: 1}}
        memory: {{size: 1Gi}}
        storage: {{size: 1Gi}}
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
  placement:
    dc:
      attributes: {{region: eu}}
      pricing:
        train: {{denom: uact, amount: {price}}}
deployment:
  train:
    dc: {{profile: train, count: 1}}
gpumarket:
  kind: training
  restart: never
  auction: {{bid_window: {bid_window}{extra}}}
""".encode()
