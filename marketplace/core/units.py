"""SDL quantities: CPU, byte sizes, GPU VRAM and durations, as Akash's parser reads them.

Every parser raises ValueError with a short message; core.manifest adds the field path and line.

- CPU: "100m" is 100 millicores; any other number is CPUs (0.5 → 500 millicores).
- Sizes: a number of bytes with an optional suffix. k M G T P E are powers of 1000 and
  Ki Mi Gi Ti Pi Ei powers of 1024. Suffixes are case-insensitive and may end in "b"
  ("2gb", "512MiB"), as the real SDLs in the wild write them and Akash accepts.
- GPU ram: only binary suffixes (Ki..Ei), normalised to whole GiB, as Akash's GPU keys are.
- Durations: "10s", "90m", "2h", "1d" (our own extension keys; Akash's reclamation window too).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

KI = 1024
MI: int = KI**2  # annotated: mypyc's fresh type check could not infer it in time
GI: int = KI**3
TI: int = KI**4

_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([kmgtpe]?)(i?)(b?)$", re.IGNORECASE)
_DURATION_RE = re.compile(r"^([0-9]+)\s*(ms|s|m|h|d)$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Anything bigger than this is a typo, and Python floats would lose precision on it anyway.
_MAX_BYTES = 2**63 - 1
_MAX_MILLIS = 2**53


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _number_text(value: object) -> str:
    """A YAML scalar as text; bools are refused (YAML reads `yes` as true)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number or a string, got {type_name(value)}")
    text = str(value).strip()
    if not text:
        raise ValueError("empty value")
    if not text.isascii():
        raise ValueError(f"not a plain number: {text[:40]!r}")
    return text


def type_name(value: object) -> str:
    """A YAML-ish name for a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def parse_cpu(value: object) -> int:
    """CPU units as millicores: "100m" → 100, 0.5 → 500, 2 → 2000."""
    text = _number_text(value)
    if text.startswith("-"):
        raise ValueError("invalid: negative value not allowed")
    if "_" in text:  # Go's ParseFloat, which Akash reads it with, takes no digit separators
        raise ValueError(f"invalid CPU quantity {text!r} (use 0.5, 1 or 100m)")
    if text.endswith("m"):
        digits = text[:-1]
        if not re.fullmatch(r"[0-9]+", digits):
            raise ValueError(f"invalid CPU quantity {text!r} (use 0.5, 1 or 100m)")
        millis = Decimal(digits)
    else:
        try:
            millis = _decimal(text) * 1000
        except ValueError:
            raise ValueError(f"invalid CPU quantity {text!r} (use 0.5, 1 or 100m)") from None
    if millis > _MAX_MILLIS:
        raise ValueError(f"CPU quantity {text!r} is too large")
    if millis != millis.to_integral_value():
        raise ValueError(f"CPU quantity {text!r} is finer than a millicore")
    return int(millis)


def parse_size(value: object) -> int:
    """Bytes: "512Mi" → 536870912, "1G" → 10**9, "2gb" → 2*10**9, 1024 → 1024."""
    text = _number_text(value)
    if text.startswith("-"):
        raise ValueError("invalid: negative value not allowed")
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"invalid size {text!r} (use e.g. 512Mi, 1Gi, 100G or bytes)")
    number, prefix, binary, _ = match.groups()
    if binary and not prefix:
        raise ValueError(f"invalid size {text!r} (use e.g. 512Mi, 1Gi, 100G or bytes)")
    base = 1024 if binary else 1000
    size = _decimal(number) * base ** _POWERS[prefix.lower()]
    if size > _MAX_BYTES:
        raise ValueError(f"size {text!r} is too large")
    return int(size)  # fractions of a byte are dropped, as Akash does


def parse_gpu_ram(value: object) -> int:
    """GPU VRAM as whole GiB: "80Gi" → 80, "40960Mi" → 40. Only binary suffixes are allowed."""
    text = _number_text(value)
    match = _SIZE_RE.match(text)
    if not match or not match.group(2) or not match.group(3) or match.group(4):
        raise ValueError(f"invalid GPU ram {text!r} (use a binary size such as 80Gi or 24Gi)")
    size = parse_size(text)
    if size % GI or size == 0:
        raise ValueError(f"GPU ram {text!r} is not a whole number of Gi")
    return size // GI


def parse_duration_ms(value: object) -> int:
    """A duration as milliseconds: "10s", "90m", "2h", "1d"; a bare number is seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"duration must be positive, got {value}")
        return value * 1000
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 90m or 2h, got {type_name(value)}")
    match = _DURATION_RE.match(value.strip())
    if not match:
        raise ValueError(f"invalid duration {value!r} (use e.g. 10s, 90m, 2h or 1d)")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    if amount > 10**9:
        raise ValueError(f"duration {value!r} is too long")
    return amount * _DURATION_MS[match.group(2)]


def format_cpu(millis: int) -> str:
    """500 → "0.5", 2000 → "2"."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis / 1000:g}"


def format_size(size: int) -> str:
    """Bytes in the largest binary unit that keeps it short: 536870912 → "512Mi"."""
    for suffix, factor in (("Ei", KI**6), ("Pi", KI**5), ("Ti", TI), ("Gi", GI), ("Mi", MI)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f}{suffix}" if size % factor == 0 else f"{value:.1f}{suffix}"
    if size >= KI:
        return f"{size / KI:.1f}Ki"
    return f"{size}B"


def format_duration(ms: int) -> str:
    """3600000 → "1h", 5400000 → "90m", 10000 → "10s"."""
    for suffix in ("d", "h", "m", "s"):
        factor = _DURATION_MS[suffix]
        if ms % factor == 0:
            return f"{ms // factor}{suffix}"
    return f"{ms}ms"
