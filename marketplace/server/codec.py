"""Market records ↔ JSON-able values, driven by the records' own type hints.

The store keeps each record as one JSON document, so this module must turn every record of
marketplace/core/state.py back into an equal record: dataclasses (frozen or not), StrEnums,
bytes (base64), tuples and lists, dicts, optionals. ProviderRecord.capacity is typed Any in the
core (to keep state.py free of matching.py), so its real type is named here.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import types
import typing
from functools import cache
from typing import Any, TypeVar

from marketplace.core import matching, state

T = TypeVar("T")

# Fields typed loosely in the core, with the type they really hold.
_FIELD_TYPES: dict[tuple[type, str], Any] = {
    (state.ProviderRecord, "capacity"): matching.Capacity,
}


def encode(value: Any) -> Any:
    """A record (or any part of one) as plain JSON values."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def encode_without(record: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    """encode(), leaving out some (large) fields stored elsewhere."""
    return {
        f.name: encode(getattr(record, f.name))
        for f in dataclasses.fields(record)
        if f.name not in skip
    }


def decode(cls: type[T], data: Any) -> T:
    """The inverse of encode() for a value of type `cls`."""
    return _decode(cls, data)  # type: ignore[no-any-return]


@cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    for (owner, name), real in _FIELD_TYPES.items():
        if owner is cls:
            hints[name] = real
    return hints


def _decode(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(args[0], data)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        (arg,) = typing.get_args(hint)
        return [_decode(arg, v) for v in data]
    if origin is dict:
        _, arg = typing.get_args(hint)
        return {k: _decode(arg, v) for k, v in data.items()}
    if hint is Any:
        return data
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            hints = _hints(hint)
            return hint(**{k: _decode(hints[k], v) for k, v in data.items() if k in hints})
        if issubclass(hint, enum.Enum):
            return hint(data)
        if hint is bytes:
            return base64.b64decode(data)
        if hint is float:
            return float(data)
    return data
