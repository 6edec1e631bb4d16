"""Seal protobuf requests into SignedRequest envelopes, and open them again after verifying.

A request is sealed for one marketplace (`market`: its id, from Market.Info) and opened only by
that one (identity.py says what the signature covers).
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.clock import Clock, SystemClock
from marketplace.core.errors import InvalidArgument
from marketplace.identity import Key, ReplayGuard, Signature, verify, verify_signature

M = TypeVar("M", bound=Message)


def message_type(message_class: type[Message]) -> str:
    return message_class.DESCRIPTOR.full_name


def seal(
    key: Key, message: Message, clock: Clock | None = None, *, market: str
) -> pb.SignedRequest:
    payload = message.SerializeToString()
    now = (clock or SystemClock()).now_ms()
    sig = key.sign(market, message_type(type(message)), payload, now)
    return pb.SignedRequest(
        payload=payload,
        public_key=sig.public_key,
        signature=sig.signature,
        nonce=sig.nonce,
        timestamp_ms=sig.timestamp_ms,
        market_id=sig.market,
    )


def signature_of(request: pb.SignedRequest) -> Signature:
    return Signature(
        request.public_key,
        request.signature,
        request.nonce,
        request.timestamp_ms,
        request.market_id,
    )


def open_envelope(
    request: pb.SignedRequest,
    message_class: type[M],
    guard: ReplayGuard | None = None,
    *,
    market: str,
    durable: bool = True,
) -> tuple[str, M]:
    """Verify the signature over the received bytes, then parse. Returns (signer address, msg).

    Raises Unauthenticated for a bad signature, a request signed for another marketplace, wrong
    message type, replay or stale timestamp, and InvalidArgument for a payload that is signed
    but not a valid message. `durable=False` for reads: their nonces are not stored.
    """
    address = verify(
        message_type(message_class), request.payload, signature_of(request), market, guard, durable
    )
    message = message_class()
    try:
        message.ParseFromString(request.payload)
    except DecodeError as exc:
        raise InvalidArgument(f"payload is not a {message_type(message_class)}") from exc
    return address, message


def signer_of(request: pb.SignedRequest, message_class: type[Message], *, market: str) -> str:
    """The signature alone (no replay or freshness check): who signed this exact envelope for
    `market`. For a resend of an envelope accepted before. Raises Unauthenticated."""
    return verify_signature(
        message_type(message_class), request.payload, signature_of(request), market
    )
