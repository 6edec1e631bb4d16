"""The market's errors ↔ gRPC status codes, both ways.

The server aborts a call with the status of the core error it caught, its message as the
details, and the error's class name in the trailing metadata key `gm-error`, so the client can
raise the same class again (FAILED_PRECONDITION alone cannot tell Ineligible from
InsufficientFunds).

A status no market error stands for is the transport's: `error_from_rpc` makes the transient
ones (the market is away or slow) an `Unavailable`, worth trying again, and any other a plain
MarketError, which is final.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from marketplace.core import errors

ERROR_KEY = "gm-error"
# A status's details: one line of at most this many UTF-8 bytes. A refusal may quote what the
# client sent (an id, a market's name); echoed whole, a 200 KB id would pass gRPC's 8 KiB limit
# on the trailers a client reads (percent-encoded: up to 3 characters a byte), and the client
# would see INTERNAL instead of the refusal. A manifest's list of errors fits.
MAX_DETAILS_BYTES = 2048
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\u2028": " ", "\u2029": " "})

# Most specific first: the first class an error is an instance of decides its status.
_TO_STATUS: tuple[tuple[type[errors.MarketError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Ineligible, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InsufficientFunds, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
)

_BY_NAME: dict[str, type[errors.MarketError]] = {cls.__name__: cls for cls, _ in _TO_STATUS}
_FROM_STATUS: dict[grpc.StatusCode, type[errors.MarketError]] = {}
for _cls, _code in reversed(_TO_STATUS):
    # RESOURCE_EXHAUSTED alone is gRPC's too (a message past its size limit): only the
    # market's own, named in gm-error, is a ResourceExhausted
    if _cls is not errors.ResourceExhausted:
        _FROM_STATUS[_code] = _cls  # the least specific class of each code


def details_of(exc: BaseException) -> str:
    """What a status says about `exc`: its message on one line, cut to MAX_DETAILS_BYTES."""
    text = str(exc)[: MAX_DETAILS_BYTES + 1].translate(_LINE_BREAKS).strip()
    raw = text.encode(errors="replace")
    if len(raw) > MAX_DETAILS_BYTES:  # cut on a character's boundary, and say so
        text = raw[: MAX_DETAILS_BYTES - 3].decode(errors="ignore") + "…"
    return text or type(exc).__name__


def status_of(exc: errors.MarketError) -> grpc.StatusCode:
    for cls, code in _TO_STATUS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def error_name(exc: errors.MarketError) -> str:
    """The class name the client should rebuild (the most specific known one)."""
    for cls, _ in _TO_STATUS:
        if isinstance(exc, cls):
            return cls.__name__
    return "MarketError"


def error_from_status(
    code: grpc.StatusCode, details: str, metadata: Iterable[tuple[str, str | bytes]] = ()
) -> errors.MarketError | None:
    """The market error a status stands for, or None for a transport status (UNAVAILABLE...)."""
    name = next((str(v) for k, v in metadata if k == ERROR_KEY), "")
    cls = _BY_NAME.get(name) or _FROM_STATUS.get(code)
    if cls is None:
        return None
    if cls is errors.Ineligible:
        return errors.Ineligible(details)
    return cls(details)


# Statuses of the transport, not of the market's rules: the call may succeed if tried again.
TRANSIENT: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def error_from_rpc(
    code: grpc.StatusCode, details: str, metadata: Iterable[tuple[str, str | bytes]] = ()
) -> errors.MarketError:
    """Every failed call as a core error: the market error its status stands for; Unavailable
    for a transient transport status; else a MarketError naming the status (final)."""
    error = error_from_status(code, details, metadata)
    if error is not None:
        return error
    if code in TRANSIENT:
        return errors.Unavailable(f"{code.name}: {details}")
    return errors.MarketError(f"{code.name}: {details}")
