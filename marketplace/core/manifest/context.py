"""What every section reader shares: the problems found so far and the warnings, the line a
data path comes from, and small typed readers of YAML values ("expected a mapping, got a list")."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import ParamSpec, TypeVar

import yaml

from marketplace.core import units
from marketplace.core.errors import InvalidArgument
from marketplace.core.limits import path_key, shown
from marketplace.core.manifest.errors import MAX_ERRORS, MAX_WARNINGS, ManifestError, one_line
from marketplace.core.manifest.yaml_lines import (
    LineIndex,
    Path,
    child,
    exact,
    key_node,
    node_at,
)

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=Enum)


class Problem(Exception):
    """An error at a data path, turned into a ManifestError with a line once lines are known."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class ParseContext:
    """One parse: the YAML node tree (for lines), the problems found so far, the warnings."""

    def __init__(self, root: yaml.Node | None, source: str, lines: LineIndex) -> None:
        self.root = root
        self.source = source
        self.lines = lines
        self.errors: list[Problem] = []
        self.warnings: list[str] = []
        self.unmatchable: list[str] = []  # GPU requests no registry model can meet (warned too)

    def line(self, path: Path) -> int:
        """The line of the field's key (a missing field: of the key that should hold it)."""
        node, key = self.root, None
        for step in path:
            found = child(node, step)
            if found is None:
                break
            key = key_node(node, step)  # None for a list item: its own line is right
            node = found
        where = key if key is not None else node
        return self.lines.of(where.start_mark) if where is not None else 1

    def warn(self, path: Path, message: str) -> None:
        if len(self.warnings) >= MAX_WARNINGS:
            if len(self.warnings) == MAX_WARNINGS:
                self.warnings.append(f"{self.source}: more warnings not shown")
            return
        self.warnings.append(self.located(path, message))

    def cannot_match(self, path: Path, message: str) -> None:
        """A GPU request no provider can meet: a warning, and deploy refuses it (unless forced)."""
        self.warn(path, message)
        if len(self.unmatchable) < MAX_WARNINGS:
            self.unmatchable.append(self.located(path, message))

    def located(self, path: Path, message: str) -> str:
        where = f"{self.source}:{self.line(path)}: "
        return where + (f"{dotted(path)}: " if path else "") + one_line(message)

    def to_error(self, problem: Problem) -> ManifestError:
        return ManifestError(
            problem.message,
            path=dotted(problem.path),
            line=self.line(problem.path),
            source=self.source,
        )

    def combined(self) -> ManifestError:
        errors = tuple(self.to_error(p) for p in self.errors[:MAX_ERRORS])
        first = errors[0]
        return ManifestError(
            first.message, path=first.path, line=first.line, source=self.source, errors=errors
        )

    def collect(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        """Run one independent part; record its problem and go on (returns None on failure)."""
        try:
            return func(*args, **kwargs)
        except Problem as problem:
            self.errors.append(problem)
            return None

    def raw(self, path: Path, value: object) -> str:
        """A scalar as written in the file: `model: 4000` is "4000", `host: yes` is "yes"."""
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, dict | list):
            raise Problem(path, f"expected a string, got {units.type_name(value)}")
        node = node_at(self.root, path) if exact(self.root, path) else None
        if isinstance(node, yaml.ScalarNode):
            text: str = node.value
            return text
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def strings(self, value: object, path: Path) -> tuple[str, ...]:
        """A list of strings (Akash's schema: no numbers or booleans in it); null is empty."""
        items = sequence(value, path, allow_none=True)
        return tuple(text(item, (*path, index)) for index, item in enumerate(items))

    def unexpected(self, spec: dict[object, object], allowed: tuple[str, ...], path: Path) -> None:
        """Record every key of `spec` outside `allowed` (the schema's additionalProperties:
        false): a field the parser would drop is refused, never ignored."""
        for key in spec:
            if key not in allowed:
                self.errors.append(Problem((*path, str(key)), unexpected_field(key, allowed)))


# docker-compose keys that turn up in real SDLs (awesome-akash), each refused with a pointer
_COMPOSE_KEYS = frozenset(
    ("depends_on", "depends-on", "restart", "volumes", "links", "cmd", "environment", "ports")
)


def unexpected_field(key: object, allowed: tuple[str, ...]) -> str:
    hint = "; a docker-compose key, not SDL" if key in _COMPOSE_KEYS else ""
    return f"unexpected field {shown(str(key))} (allowed: {', '.join(allowed)}){hint}"


def market_bound(path: Path, check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Apply one of the market's own input bounds (core.limits) to what the manifest asks for,
    as a Problem at `path`: a manifest that validates is one the market takes, never one it
    refuses later for a bound the parser did not know."""
    try:
        return check(*args, **kwargs)
    except InvalidArgument as exc:
        raise Problem(path, str(exc)) from None


def text(value: object, path: Path, what: str = "a string") -> str:
    """A YAML string, as Akash's schema types it: `4000` or `true` unquoted is refused with a
    hint to quote it, rather than read as text the author may not have meant."""
    if isinstance(value, str):
        if "\x00" in value:  # YAML's "\0": no image, argument, variable or path can hold it
            raise Problem(
                path, f"{shown(value)} holds a NUL character, which no container can take"
            )
        return value
    quote = " (quote it)" if isinstance(value, bool | int | float) else ""
    quoted = "" if value is None else f" {shown(value)}"
    raise Problem(path, f"expected {what}, got {units.type_name(value)}{quoted}{quote}")


def field(spec: dict[object, object], key: str, path: Path) -> dict[object, object]:
    """An optional mapping field: absent is empty; present it must be a mapping (not null)."""
    if key not in spec:
        return {}
    return mapping(spec[key], (*path, key), what=f"a mapping for {key}", null_ok=False)


# The YAML 1.1 words yaml.v3 still takes for a Go bool field (decode.go), and only there.
_TRUE_WORDS = ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")
_FALSE_WORDS = ("n", "N", "no", "No", "NO", "off", "Off", "OFF")


def strict_bool(value: object, path: Path) -> bool:
    """A boolean field: `true`/`false`, or a YAML 1.1 word yaml.v3 takes for a bool (`yes`,
    `off`, ...), as Akash reads it; never the quoted string "true" nor a number."""
    if isinstance(value, bool):
        return value
    if value in _TRUE_WORDS or value in _FALSE_WORDS:
        return value in _TRUE_WORDS
    raise Problem(path, f"expected true or false, got {units.type_name(value)} {shown(value)}")


def dotted(path: Path) -> str:
    """The field path as errors name it, each key cut (limits.path_key: a key may be a 1 MiB
    string)."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{path_key(step)}" if text else path_key(step)
    return text


def mapping(
    value: object,
    path: Path,
    allow_none: bool = False,
    what: str = "a mapping",
    null_ok: bool = True,
) -> dict[object, object]:
    if value is None and allow_none:
        return {}
    if value is None and null_ok and path and isinstance(path[-1], str):
        raise Problem(path, f"{path[-1]} is required")
    if not isinstance(value, dict):
        raise Problem(path, f"expected {what}, got {units.type_name(value)}")
    return value


def sequence(
    value: object, path: Path, allow_none: bool = False, what: str = "a list"
) -> list[object]:
    if value is None and allow_none:
        return []
    if not isinstance(value, list):
        raise Problem(path, f"expected {what}, got {units.type_name(value)}")
    return value


def integer(value: object, path: Path, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        quoted = "" if value is None else f" {shown(value)}"
        raise Problem(path, f"expected a whole number, got {units.type_name(value)}{quoted}")
    if not low <= value <= high:
        raise Problem(path, f"{shown(value)} is outside {low}..{high}")
    return value


def boolean(value: object, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "on", "y"):
            return True
        if lowered in ("false", "no", "off", "n"):
            return False
    raise Problem(path, f"expected true or false, got {shown(value)}")


def quantity(parse: Callable[[object], int], value: object, path: Path) -> int:
    try:
        return parse(value)
    except ValueError as exc:
        raise Problem(path, str(exc)) from None


def choice(value: object, path: Path, enum: type[E], default: E) -> E:
    if value is None:
        return default
    try:
        return enum(value)
    except ValueError:
        options = "|".join(member.value for member in enum)
        raise Problem(path, f"invalid value {shown(value)} ({options})") from None
