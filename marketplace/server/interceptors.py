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


def _failed_code(exc: BaseException, context: Context) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code: grpc.StatusCode | None = context.code()
    return code or grpc.StatusCode.UNKNOWN  # an exception no one turned into a status


def _ended_code(context: Context) -> grpc.StatusCode:
    code: grpc.StatusCode | None = context.code()
    return code or grpc.StatusCode.OK


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
            started = time.perf_counter()
            try:
                reply = await behavior(request, context)
            except BaseException as exc:
                self.finished(rpc, _failed_code(exc, context), context, started, unary=True)
                raise
            self.finished(rpc, _ended_code(context), context, started, unary=True)
            return reply

        return measured

    def _streaming(self, behavior: StreamingBehavior, rpc: str) -> StreamingBehavior:
        async def measured(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                code = (
                    grpc.StatusCode.CANCELLED
                    if isinstance(exc, GeneratorExit)
                    else _failed_code(exc, context)
                )
                self.finished(rpc, code, context, started, unary=False)
                raise
            self.finished(rpc, _ended_code(context), context, started, unary=False)

        return measured

    def finished(
        self, rpc: str, code: grpc.StatusCode, context: Context, started: float, *, unary: bool
    ) -> None:
        elapsed = time.perf_counter() - started
        labels = (rpc, code.name)
        self.figures.requests.inc(1, labels)
        if unary:
            self.figures.latency.observe(elapsed, labels)
        if code in REFUSED:
            self.figures.refused.inc(1, (code.name,))
            self._refused(rpc, code, context)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "rpc",
                extra=fields(
                    rpc=rpc, code=code.name, ms=round(elapsed * 1000, 3), peer=context.peer()
                ),
            )

    def _refused(self, rpc: str, code: grpc.StatusCode, context: Context) -> None:
        error = next((str(v) for k, v in context.trailing_metadata() or () if k == ERROR_KEY), "")
        details = context.details() if code in _DETAILS_LOGGED else None
        self.throttle.warning(
            code.name,
            "request refused",
            rpc=rpc,
            error=error or None,
            details=details or None,
            peer=context.peer(),
        )
