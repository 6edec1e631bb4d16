"""Market records ↔ JSON-able values, driven by the records' own type hints.

The store keeps each record as one JSON document, so this module must turn every record of
marketplace/core/state.py back into an equal record: dataclasses (frozen or not), StrEnums,
bytes (base64), tuples and lists, dicts, optionals. ProviderRecord.capacity is typed Any in the
core (to keep state.py free of matching.py), so its real type is named here.

dumps() writes a record's document: with orjson where it is installed (a record in ~3 µs,
against ~15 µs for encode() and the json module: every bid and its event pass here before the
server answers), else, and for what orjson refuses (an int past 64 bits, a string that is not
valid UTF-8, a dict with keys other than strings), with encode() and the json module, which
stay the reference. Both write the same JSON values (orjson writes non-ASCII characters as
UTF-8 where json escapes them), so either reads what the other wrote.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from marketplace.core import matching, state

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# orjson's dumps where it is installed; None: the json module writes the same, only slower
_fast_dumps: Callable[..., bytes] | None
try:
    from orjson import OPT_PASSTHROUGH_DATACLASS as _DATACLASSES_TO_DEFAULT
    from orjson import dumps as _fast_dumps
except ImportError:
    _fast_dumps, _DATACLASSES_TO_DEFAULT = None, 0

T = TypeVar("T")

# Fields typed loosely in the core, with the type they really hold.
_FIELD_TYPES: dict[tuple[type, str], type] = {
    (state.ProviderRecord, "capacity"): matching.Capacity,
}


_SCALARS = frozenset({int, str, bool, float, type(None)})
_memo: dict[int, tuple[object, object]] = {}  # id(frozen value) → (value, its encoding)
_MEMO_LIMIT = 50_000


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@cache
def _is_frozen(cls: type) -> bool:
    return bool(cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]


def encode(value: object) -> object:
    """A record (or any part of one) as plain JSON values.

    Hot path of every commit: scalars and StrEnums (which JSON writes as their value) pass
    through, and frozen values (group specs, capacities, offers) are encoded once and reused.
    """
    cls: type = type(value)
    if cls in _SCALARS:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if _is_frozen(cls):
            hit = _memo.get(id(value))
            if hit is not None and hit[0] is value:
                return hit[1]
        out: dict[str, object] = {}
        for name in _field_names(cls):
            v = getattr(value, name)
            out[name] = v if type(v) in _SCALARS else encode(v)
        if _is_frozen(cls):
            if len(_memo) >= _MEMO_LIMIT:
                _memo.clear()
            _memo[id(value)] = (value, out)  # holding the value keeps its id from being reused
        return out
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | tuple):
        return [v if type(v) in _SCALARS else encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(cls: type[T], data: Any) -> T:
    """The inverse of encode() for a value of type `cls`."""
    return cast(T, _decode(cls, data))


@cache
def _hints(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    for (owner, name), real in _FIELD_TYPES.items():
        if owner is cls:
            hints[name] = real
    return hints


def _decode(hint: object, data: Any) -> object:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(args[0], data)
    if origin is tuple:
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(_decode(items[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(items, data, strict=True))
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


def _as_encode_writes(value: object) -> object:
    """For orjson, what it must not write its own way: a dataclass as its fields alone (orjson
    would write a plain dataclass's __dict__, cached properties too), bytes as base64."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _field_names(type(value))}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot store a {type(value).__name__}")


def json_dumps(value: object) -> str:
    """The reference: encode(), then the json module (compact)."""
    return json.dumps(encode(value), separators=(",", ":"))


def dumps(value: object) -> str:
    """`value` (a record, or a dict of its fields) as one JSON document; see the module's doc."""
    if _fast_dumps is not None:
        try:
            return _fast_dumps(
                value, default=_as_encode_writes, option=_DATACLASSES_TO_DEFAULT
            ).decode()
        except TypeError:  # orjson.JSONEncodeError: what only json writes
            pass
    return json_dumps(value)


def dumps_without(record: DataclassInstance, skip: tuple[str, ...]) -> str:
    """dumps(), leaving out some (large) fields stored elsewhere."""
    return dumps(
        {name: getattr(record, name) for name in _field_names(type(record)) if name not in skip}
    )
