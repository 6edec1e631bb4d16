"""The marketplace's log lines: leveled, with structured fields, as text or one JSON object a line.

A line carries its fields in `extra=fields(...)`:

    log.info("lease created", extra=fields(lease=lease.id, provider=lease.provider))

text:  2026-11-30T16:31:02.123Z INFO gpumarket.market: lease created lease=D1/1/1/gm1x provider=gm1x
json:  {"time": "2026-11-30T16:31:02.123Z", "level": "info", "logger": "gpumarket.market",
        "message": "lease created", "lease": "D1/1/1/gm1x", "provider": "gm1x"}

Field values can hold what a client sent (a provider's region, a decline reason): both formats
escape them (text quotes any value that is not one plain word, JSON escapes as JSON does) and
cut them at MAX_FIELD_CHARS, so no client can forge a line or make one huge.

Throttle keeps a flood of alike lines (refused requests) from flooding the log: at most `limit`
lines per kind per window, then one line saying how many it held back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Literal, TypeAlias

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
LogFormat: TypeAlias = Literal["text", "json"]
LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
FORMATS: tuple[LogFormat, ...] = ("text", "json")

OUR_LOGGERS = "gpumarket"  # every logger of ours is named gpumarket.<part>
FieldValue: TypeAlias = str | int | float | bool | None
MAX_FIELD_CHARS = 200
_FIELDS_ATTR = "gm_fields"  # where fields() puts the fields on the LogRecord
_PLAIN = re.compile(r"[\w.,:/@+\-=]+")


def fields(**values: FieldValue) -> dict[str, object]:
    """The `extra=` of a log call that carries these structured fields."""
    return {_FIELDS_ATTR: values}


def fields_of(record: logging.LogRecord) -> dict[str, FieldValue]:
    """The record's fields, those given None left out (a field that does not apply)."""
    found: Mapping[str, FieldValue] = getattr(record, _FIELDS_ATTR, {})
    return {key: value for key, value in found.items() if value is not None}


def _bounded(value: FieldValue) -> FieldValue:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "…"
    return value


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            line.setdefault(key, _bounded(value))  # a field never overwrites the four above
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: message key=value ...`, values quoted unless one plain word."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}",
            *(f"{key}={_text_value(value)}" for key, value in fields_of(record).items()),
        ]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _text_value(value: FieldValue) -> str:
    value = _bounded(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return value if _PLAIN.fullmatch(value) else json.dumps(value)


def configure(
    level: LogLevel = "info", fmt: LogFormat = "text", stream: IO[str] | None = None
) -> None:
    """Send the process's log lines to `stream` (stderr) in `fmt`: ours (gpumarket.*) from
    `level` up, the libraries' (grpc, asyncio) from warning up, as their debug lines are noise
    to an operator. Replaces what was configured before."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    ours = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(max(ours, logging.WARNING))
    logging.getLogger(OUR_LOGGERS).setLevel(ours)


@dataclass(slots=True)
class _Window:
    ends: float
    logged: int = 0
    held_back: int = 0


class Throttle:
    """At most `limit` warning lines per kind in each `window_s`; the rest are counted and said
    in one line when the window ends (on a timer of the running loop, or at the next line of
    that kind, or at close()). Every line carries its kind as the field named `key`."""

    def __init__(
        self,
        logger: logging.Logger,
        key: str = "kind",
        limit: int = 5,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.key = key
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def warning(self, kind: str, message: str, **values: FieldValue) -> None:
        now = self.clock()
        window = self._windows.get(kind)
        if window is not None and now >= window.ends:
            self._end(kind)
            window = None
        if window is None:
            window = self._windows[kind] = _Window(now + self.window_s)
        if window.logged < self.limit:
            window.logged += 1
            self.logger.warning(message, extra=fields(**{self.key: kind}, **values))
            return
        window.held_back += 1
        if window.held_back == 1:
            self._end_later(kind, window.ends - now)

    def close(self) -> None:
        """Say what is held back now (at shutdown)."""
        for kind in list(self._windows):
            self._end(kind)

    def _end_later(self, kind: str, delay_s: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: said at the next line of this kind, or at close()
        self._timers[kind] = loop.call_later(max(delay_s, 0.0), self._end, kind)

    def _end(self, kind: str) -> None:
        timer = self._timers.pop(kind, None)
        if timer is not None:
            timer.cancel()
        window = self._windows.pop(kind, None)
        if window is not None and window.held_back:
            self.logger.warning(
                f"suppressed {window.held_back} more like this",
                extra=fields(**{self.key: kind}, suppressed=window.held_back),
            )
