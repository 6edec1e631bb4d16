"""The Provider.Channel stream's wire rules, for both ends: answers as statuses, and back.

A ChannelAnswer carries what a unary rpc's end would: OK with the reply message (serialized),
or a gRPC status code with the details and the core error's name (the unary rpcs' `gm-error`
trailer). So a refusal over the stream becomes the same core error as over a unary call.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError, Message

from marketplace.api.status import ERROR_KEY, details_of, error_from_rpc, error_name, status_of
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import MarketError

# the rpc whose command starts (or restarts) the order feed on the stream
WATCH_ORDERS = "WatchOrders"

_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def answered(seq: int, reply: Message, already_applied: bool = False) -> pb.MarketMessage:
    message = pb.MarketMessage()
    answer = message.answer  # filled in place: a ChannelAnswer passed in would be copied
    answer.seq = seq
    answer.reply = reply.SerializeToString()
    answer.already_applied = already_applied
    return message


def refused(seq: int, exc: MarketError, already_applied: bool = False) -> pb.MarketMessage:
    """The answer a unary call would have ended with, as a status."""
    answer = pb.ChannelAnswer(
        seq=seq,
        code=status_number(status_of(exc)),
        message=details_of(exc),
        error=error_name(exc),
        already_applied=already_applied,
    )
    return pb.MarketMessage(answer=answer)


def error_of(answer: pb.ChannelAnswer) -> MarketError | None:
    """The core error a refused answer stands for; None when it answers OK."""
    if answer.code == 0:
        return None
    code = _CODES.get(answer.code, grpc.StatusCode.UNKNOWN)
    metadata = ((ERROR_KEY, answer.error),) if answer.error else ()
    return error_from_rpc(code, answer.message, metadata)


def reply_of(answer: pb.ChannelAnswer, reply_class: type[Message]) -> Message:
    """The reply an OK answer carries, parsed; raises the core error of a refused one."""
    error = error_of(answer)
    if error is not None:
        raise error
    reply = reply_class()
    try:
        reply.ParseFromString(answer.reply)
    except DecodeError as exc:
        raise MarketError(f"the market's answer is not a {reply_class.__name__}") from exc
    return reply


__all__ = ["WATCH_ORDERS", "answered", "error_of", "refused", "reply_of", "status_number"]
