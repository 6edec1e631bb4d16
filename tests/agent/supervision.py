"""What the supervisor tests share, whichever runtime they run on: a one-service SDL and a
recorder of the supervisor's reports and shipped log lines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from provider_agent.container import LogLine
from provider_agent.supervisor import StatusReport


def sdl(
    command: str, memory: str = "64Mi", restart: str = "never", gpu: bool = False, expose: str = ""
) -> bytes:
    """A one-service SDL for the local busybox image. `expose` is YAML indented for the service."""
    gpu_block = (
        "        gpu:\n          units: 1\n          attributes:\n            vendor:\n"
        "              nvidia:\n                - model: h100\n"
        if gpu
        else ""
    )
    text = (
        'version: "2.0"\n'
        "services:\n"
        "  job:\n"
        "    image: gpumarket/busybox:latest\n"
        '    command: ["sh", "-c"]\n'
        f"    args: [{command!r}]\n"
        f"{expose}"
        "profiles:\n"
        "  compute:\n"
        "    job:\n"
        "      resources:\n"
        "        cpu: {units: 0.5}\n"
        f"        memory: {{size: {memory}}}\n"
        "        storage: {size: 100Mi}\n"
        f"{gpu_block}"
        "  placement:\n"
        "    here:\n"
        "      pricing:\n"
        "        job: {denom: uact, amount: 100}\n"
        "deployment:\n"
        "  job:\n"
        "    here: {profile: job, count: 1}\n"
        "gpumarket:\n"
        "  kind: training\n"
        f"  restart: {restart}\n"
    )
    return text.encode()


def stored(
    script: str,
    restart: str = "never",
    data_size: str = "50Mi",
    read_only: bool = False,
    data_class: str = "beta2",
    scratch_size: str = "100Mi",
) -> bytes:
    """One busybox service with a persistent volume at /data, a 16Mi ram volume at /cache and
    `scratch_size` of ephemeral disk (its own layer)."""
    text = f"""
version: "2.0"
services:
  db:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: [{script!r}]
    params:
      storage:
        data:
          mount: /data
          readOnly: {str(read_only).lower()}
        cache:
          mount: /cache
profiles:
  compute:
    db:
      resources:
        cpu: {{units: 0.5}}
        memory: {{size: 64Mi}}
        storage:
          - size: {scratch_size}
          - name: data
            size: {data_size}
            attributes: {{persistent: true, class: {data_class}}}
          - name: cache
            size: 16Mi
            attributes: {{class: ram, persistent: false}}
  placement:
    here:
      pricing:
        db: {{denom: uact, amount: 100}}
deployment:
  db:
    here: {{profile: db, count: 1}}
gpumarket:
  restart: {restart}
"""
    return text.encode()


class Recorder:
    """Collects what the supervisor reports, and lets a test await it (no fixed sleeps)."""

    def __init__(self, acknowledges: bool = True) -> None:
        self.reports: list[StatusReport] = []
        self.lines: list[LogLine] = []
        self.acknowledges = acknowledges  # False: a market that died before answering the logs
        self._cond = threading.Condition()

    def report(self, r: StatusReport) -> None:
        with self._cond:
            self.reports.append(r)
            self._cond.notify_all()

    def ship(self, lease_id: str, lines: list[LogLine], delivered: Callable[[], None]) -> None:
        with self._cond:
            self.lines.extend(lines)
            self._cond.notify_all()
        if self.acknowledges:
            delivered()  # as the market's acknowledgement does

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 30.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self), timeout), (self.reports, self.lines)

    def exited(self) -> StatusReport:
        self.wait_for(lambda r: any(x.exited for x in r.reports))
        return next(x for x in self.reports if x.exited)

    def texts(self, stream: str | None = None) -> list[str]:
        with self._cond:
            return [line.text for line in self.lines if stream is None or line.stream == stream]


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `predicate` to hold (polling: it may watch state no recorder is told of)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.001)
