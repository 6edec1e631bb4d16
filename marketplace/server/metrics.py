"""The market's figures in the Prometheus text exposition format (0.0.4), served over HTTP.

A few lines of format written here rather than a new dependency: counters, gauges and
histograms with fixed buckets, each family with its HELP and TYPE lines. Figures are changed on
the event loop and read by the HTTP server's thread, so every family guards its values with its
own lock. MetricsServer serves GET /metrics from a thread of its own: a scrape costs the event
loop nothing, and still answers when the loop is stuck.
"""

from __future__ import annotations

import errno
import http.server
import math
import socket
import threading
from collections.abc import Sequence
from typing import ClassVar, Literal, TypeVar

from marketplace.core.errors import FailedPrecondition, InvalidArgument
from marketplace.core.limits import whole_number

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[str, ...]
Number = int | float


F = TypeVar("F", bound="_Family")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _sample(name: str, names: Sequence[str], values: Labels, value: Number) -> str:
    if not names:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in zip(names, values, strict=True))
    return f"{name}{{{pairs}}} {_number(value)}"


class _Family:
    kind: ClassVar[Literal["counter", "gauge", "histogram"]]

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _check(self, labels: Labels) -> None:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _Values(_Family):
    """A number per label set: the body of counters and gauges."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        # a family without labels is one number, 0 from the start
        self._values: dict[Labels, Number] = {} if self.label_names else {(): 0}

    def _add(self, amount: Number, labels: Labels) -> None:
        self._check(labels)
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, labels: Labels = ()) -> Number:
        with self._lock:
            return self._values.get(labels, 0)

    def samples(self) -> list[str]:
        with self._lock:
            values = sorted(self._values.items())
        return [_sample(self.name, self.label_names, labels, v) for labels, v in values]


class Counter(_Values):
    """Only goes up (from 0 when the server started); its name ends in _total."""

    kind = "counter"

    def inc(self, amount: Number = 1, labels: Labels = ()) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up ({amount})")
        self._add(amount, labels)

    def touch(self, labels: Labels) -> None:
        """Show this label set at 0 before it first counts, so rates start from the start."""
        self._add(0, labels)


class Gauge(_Values):
    """A level that goes up and down."""

    kind = "gauge"

    def set(self, value: Number, labels: Labels = ()) -> None:
        self._check(labels)
        with self._lock:
            self._values[labels] = value

    def inc(self, amount: Number = 1, labels: Labels = ()) -> None:
        self._add(amount, labels)

    def replace(self, values: dict[Labels, Number]) -> None:
        """Every label set at once (those not given are gone)."""
        for labels in values:
            self._check(labels)
        with self._lock:
            self._values = dict(values)


class Histogram(_Family):
    """Observations counted into fixed buckets (upper bounds, inclusive), with sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], label_names: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}  # counts, [sum]

    def observe(self, value: float, labels: Labels = ()) -> None:
        self._check(labels)
        with self._lock:
            counts, total = self._series.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
            index = next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))
            counts[index] += 1
            total[0] += value

    def samples(self) -> list[str]:
        with self._lock:
            series = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        names = (*self.label_names, "le")
        lines: list[str] = []
        for labels, (counts, total) in series:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = _number(float(bound))
                lines.append(_sample(f"{self.name}_bucket", names, (*labels, le), running))
            lines.append(_sample(f"{self.name}_sum", self.label_names, labels, total))
            lines.append(_sample(f"{self.name}_count", self.label_names, labels, running))
        return lines


class Registry:
    """The families to expose, in the order they were made."""

    def __init__(self) -> None:
        self._families: list[_Family] = []

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))

    def histogram(
        self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return self._add(Histogram(name, help_text, buckets, labels))

    def _add(self, family: F) -> F:
        if any(f.name == family.name for f in self._families):
            raise ValueError(f"metric {family.name} is defined twice")
        self._families.append(family)
        return family

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families:
            lines += family.header()
            lines += family.samples()
        return "\n".join(lines) + "\n"


def split_metrics_listen(listen: str) -> tuple[str, int]:
    """`PORT` (loopback) or `HOST:PORT`, as --metrics-listen takes it."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", listen
    number = whole_number(port, 5)
    if number is None or not host or number > 65535:
        raise InvalidArgument(
            f"--metrics-listen {listen!r}: use PORT or HOST:PORT with a port in 0-65535, "
            "e.g. 127.0.0.1:9420"
        )
    return host.strip("[]"), number


class _Handler(http.server.BaseHTTPRequestHandler):
    registry: ClassVar[Registry]

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = self.registry.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not worth a log line each."""


class MetricsServer:
    """GET /metrics on its own thread; `address` is HOST:PORT as bound (port 0: any free)."""

    def __init__(self, registry: Registry, host: str, port: int) -> None:
        handler = type("MetricsHandler", (_Handler,), {"registry": registry})
        server_class = _IPv6Server if ":" in host else http.server.ThreadingHTTPServer
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise FailedPrecondition(f"--metrics-listen {where} is already in use") from None
            raise InvalidArgument(f"cannot serve metrics on {where}: {exc.strerror}") from None
        self._server.daemon_threads = True
        bound_port = self._server.server_address[1]
        self.address = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


class _IPv6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
