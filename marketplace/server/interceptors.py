"""Every RPC measured and the refused ones said: a grpc.aio server interceptor.

For each call of a method the server has (unknown methods are not counted: their names would
be anyone's to choose), it counts the call by RPC and final status code, times unary calls into
a latency histogram, logs a line at debug, and logs a warning for a refusal (unauthenticated,
permission denied, invalid argument) through a Throttle, so a flood of bad requests cannot
flood the log. A refusal's details are logged only for the codes whose messages the server
writes itself: an invalid argument's message may quote what the client sent (a manifest line).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

import grpc
import grpc.aio

from marketplace.api.status import ERROR_KEY
from marketplace.server.logs import Throttle, fields
from marketplace.server.metrics import Registry

log = logging.getLogger("gpumarket.rpc")

# Refusals of a client's request, worth an operator's eye (a forger, a misconfigured agent).
REFUSED = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
)
_DETAILS_LOGGED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
# Seconds: from a cached read (~0.1 ms) to a manifest parse or a slow disk's fsync.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# A servicer's context; requests and replies are messages of many types, hence Any.
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only
# What the aio server calls; grpc-stubs types a handler's behaviors for the sync server's context.
UnaryBehavior: TypeAlias = Callable[[Any, Context], Awaitable[Any]]
StreamingBehavior: TypeAlias = Callable[[Any, Context], AsyncIterator[Any]]


class RequestFigures:
    """The request metrics, in the server's registry."""

    def __init__(self, registry: Registry) -> None:
        self.requests = registry.counter(
            "gpumarket_requests_total",
            "RPCs finished since the server started, by RPC and gRPC status code.",
            ("rpc", "code"),
        )
        self.latency = registry.histogram(
            "gpumarket_request_duration_seconds",
            "How long unary RPCs took to answer, by RPC and gRPC status code.",
            LATENCY_BUCKETS,
            ("rpc", "code"),
        )
        self.refused = registry.counter(
            "gpumarket_requests_refused_total",
            "Requests refused (unauthenticated, permission denied, invalid argument), by code.",
            ("code",),
        )
        for code in REFUSED:
            self.refused.touch((code.name,))


def rpc_name(method: str) -> str:
    """'/marketplace.api.v1.Tenant/Fund' → 'Tenant/Fund'."""
    service, _, name = method.lstrip("/").partition("/")
    return f"{service.rpartition('.')[2]}/{name}"


def _status(context: Context, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status the handler set (by abort or set_code), else `default`."""
    code: grpc.StatusCode | None = context.code()
    return code or default


@dataclass(slots=True)
class _Call:
    rpc: str
    # read at the start: once a client has gone, its call (and what the context reads) may be
    # freed in the C core, and touching the context then crashes the process
    peer: str
    started: float = field(default_factory=time.perf_counter)


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, figures: RequestFigures, throttle: Throttle | None = None) -> None:
        self.figures = figures
        self.throttle = throttle or Throttle(log, key="code")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: gRPC answers UNIMPLEMENTED
        return self._wrap(handler, rpc_name(handler_call_details.method))

    def _wrap(self, handler: Handler, rpc: str) -> Handler:
        if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(
                self._unary(cast(UnaryBehavior, handler.unary_unary), rpc),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(cast(StreamingBehavior, handler.unary_stream), rpc),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None and inspect.isasyncgenfunction(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(cast(StreamingBehavior, handler.stream_stream), rpc),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # a kind our server does not have (sync, or written through context)

    def _unary(self, behavior: UnaryBehavior, rpc: str) -> UnaryBehavior:
        async def measured(request: Any, context: Context) -> Any:
            call = _Call(rpc, context.peer())
            try:
                reply = await behavior(request, context)
            except asyncio.CancelledError:  # the client went away: the context is not touched
                self.finished(call, grpc.StatusCode.CANCELLED)
                raise
            except BaseException:  # aborted with a status, or an exception gRPC makes UNKNOWN
                self.finished(call, _status(context, grpc.StatusCode.UNKNOWN), context)
                raise
            self.finished(call, _status(context, grpc.StatusCode.OK), context)
            return reply

        return measured

    def _streaming(self, behavior: StreamingBehavior, rpc: str) -> StreamingBehavior:
        async def measured(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(rpc, context.peer())
            try:
                async for item in behavior(request, context):
                    yield item
            except (asyncio.CancelledError, GeneratorExit):  # the client went away (see _Call)
                self.finished(call, grpc.StatusCode.CANCELLED, streaming=True)
                raise
            except BaseException:
                code = _status(context, grpc.StatusCode.UNKNOWN)
                self.finished(call, code, context, streaming=True)
                raise
            self.finished(call, _status(context, grpc.StatusCode.OK), context, streaming=True)

        return measured

    def finished(
        self,
        call: _Call,
        code: grpc.StatusCode,
        context: Context | None = None,
        *,
        streaming: bool = False,
    ) -> None:
        """Count and time a finished call; `context` only while its call is alive."""
        elapsed = time.perf_counter() - call.started
        labels = (call.rpc, code.name)
        self.figures.requests.inc(1, labels)
        if not streaming:  # a stream's life is not a latency
            self.figures.latency.observe(elapsed, labels)
        if code in REFUSED:
            self.figures.refused.inc(1, (code.name,))
            self._refused(call, code, context)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "rpc",
                extra=fields(
                    rpc=call.rpc, code=code.name, ms=round(elapsed * 1000, 3), peer=call.peer
                ),
            )

    def _refused(self, call: _Call, code: grpc.StatusCode, context: Context | None) -> None:
        metadata = context.trailing_metadata() if context is not None else None
        error = next((str(v) for k, v in metadata or () if k == ERROR_KEY), "")
        details = context.details() if context is not None and code in _DETAILS_LOGGED else ""
        self.throttle.warning(
            code.name,
            "request refused",
            rpc=call.rpc,
            error=error or None,
            details=details or None,
            peer=call.peer,
        )
