"""Requests whose bytes are not their message: INVALID_ARGUMENT, for every method at once.

gRPC parses a request before any servicer runs. When the bytes are not a protobuf of the
method's request type, grpc.aio ends the call UNKNOWN ("Unexpected DecodeError") and logs a
traceback for each one, so anyone could fill the server's log with tracebacks, and a client
could not tell its own garbage from a crash. This interceptor gives every handler a request
parser that never raises out of gRPC's hands:

- a unary request that does not parse becomes an `Undecodable`, and the call ends
  INVALID_ARGUMENT before the method runs;
- a streamed request (Channel, Shell, SessionIO, reflection) that does not parse raises an
  UndecodableFrame (an InvalidArgument) from the stream's read, inside the servicer, which
  ends the call with that status like any other refusal (servicers._abort; for a handler not
  ours, this module's wrapper).

It is the innermost interceptor, so ObservingInterceptor counts such calls as refused.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
import grpc.aio

from marketplace.core.errors import InvalidArgument
from marketplace.server.interceptors import Context, Handler, StreamingBehavior, UnaryBehavior

Parse: TypeAlias = Callable[[bytes], Any]


class UndecodableFrame(InvalidArgument):
    """A streamed request's frame that did not parse (raised where the stream is read)."""


class Undecodable:
    """A unary request whose bytes did not parse; `reason` says as what."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _type_name(parse: Parse) -> str:
    owner = getattr(parse, "__self__", None)  # Message.FromString, bound to its class
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "the method's request message"))


def _reason(parse: Parse, size: int) -> str:
    return f"the request ({size:,} bytes) is not a valid {_type_name(parse)}"


def lenient(parse: Parse) -> Parse:
    """For a unary request: the message, or an Undecodable (never an exception)."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # DecodeError and whatever else bytes can make a parser raise
            return Undecodable(_reason(parse, len(data)))

    return deserialize


def strict(parse: Parse) -> Parse:
    """For a streamed request: the message, or InvalidArgument raised where it is read."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            raise UndecodableFrame(_reason(parse, len(data))) from None

    return deserialize


def _refusing_unary(behavior: UnaryBehavior) -> UnaryBehavior:
    async def checked(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return await behavior(request, context)

    return checked


def _refusing_streaming(behavior: StreamingBehavior) -> StreamingBehavior:
    async def checked(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        async for item in behavior(request, context):
            yield item

    return checked


def _refusing_unary_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A server-streaming behavior written either way (async generator or coroutine)."""
    if inspect.isasyncgenfunction(behavior):
        return _refusing_streaming(cast(StreamingBehavior, behavior))
    return _refusing_unary(cast(UnaryBehavior, behavior))


def _refusing_frames(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A stream-request behavior whose UndecodableFrame ends the call INVALID_ARGUMENT, for
    handlers that do not map it themselves (grpc's reflection; ours do, servicers._abort)."""
    if inspect.isasyncgenfunction(behavior):

        async def frames(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in behavior(requests, context):
                    yield item
            except UndecodableFrame as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

        return frames

    async def frames_then_reply(requests: Any, context: Context) -> Any:
        try:
            return await behavior(requests, context)
        except UndecodableFrame as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    return frames_then_reply


class RequestDecoding(grpc.aio.ServerInterceptor):
    """Give every method's handler a parser that refuses undecodable requests (module doc).
    A method's handler is the same object on every call: it is wrapped once, not per call."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        if (known := self._wrapped.get(method)) is not None:
            return known
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # unknown method (UNIMPLEMENTED), or raw bytes wanted
        self._wrapped[method] = wrapped = decoding(handler)
        return wrapped


def decoding(handler: Handler) -> Handler:
    """`handler` with its request parser made lenient (unary) or strict (streamed)."""
    parse = cast(Parse, handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _refusing_unary(cast(UnaryBehavior, handler.unary_unary)),
            request_deserializer=lenient(parse),
            response_serializer=serialize,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _refusing_unary_stream(handler.unary_stream),
            request_deserializer=lenient(parse),
            response_serializer=serialize,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _refusing_frames(handler.stream_unary),
            request_deserializer=strict(parse),
            response_serializer=serialize,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _refusing_frames(handler.stream_stream),
            request_deserializer=strict(parse),
            response_serializer=serialize,
        )
    return handler
