"""Typed clients of the v1 API: TenantClient, ProviderClient, MarketClient (sync, for the CLI,
scripts, tests and benchmarks). The provider agent's daemon has its own grpc.aio link
(provider_agent/link.py), built on the same wire conversions (convert.py).

Mutating calls are sealed with the caller's Key (a SignedRequest). Every unary call has a
deadline; streams have none (a deadline would cut a watch mid-flow). A failed call raises a
MarketError subclass, never grpc.RpcError: the market's own errors come back as the same class
the server raised (status.py), and transport failures as MarketUnavailable with a message that
says what to do. Answers are the wire messages (marketplace.api.v1.market_pb2), fully typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from marketplace.api.envelope import seal
from marketplace.api.status import error_from_status
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core.errors import InvalidArgument, MarketError
from marketplace.identity import Key

T = TypeVar("T")

DEFAULT_MARKET = "127.0.0.1:7420"
DEFAULT_TIMEOUT_S = 10.0
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 2 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


class MarketUnavailable(MarketError):
    """The marketplace could not be reached, or did not answer in time."""


def translate(exc: grpc.RpcError, address: str) -> MarketError:
    """One gRPC failure as the MarketError a person can act on."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    metadata: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    error = error_from_status(code, details, metadata or ())
    if error is not None:
        return error
    if code == grpc.StatusCode.UNAVAILABLE:
        if "handshake" in details.lower() or "ssl" in details.lower():
            return MarketUnavailable(
                f"TLS handshake with the marketplace at {address} failed ({details}): "
                "check --tls-ca and the server's certificate"
            )
        return MarketUnavailable(
            f"cannot reach the marketplace at {address}: is `gpumarket market serve` running? "
            "(set --market or GPUMARKET_MARKET)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return MarketUnavailable(f"the marketplace at {address} did not answer in time")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InvalidArgument(f"the marketplace refused the request: {details}")
    return MarketError(f"{code.name.lower()}: {details}")


def channel(
    address: str,
    tls_ca: Path | None = None,
    tls: bool = False,
    client_cert: tuple[Path, Path] | None = None,
) -> grpc.Channel:
    """A channel to the marketplace: TLS when a CA file is given or tls=True (system roots).
    client_cert = (certificate, private key), PEM: shown to a market that asks for mutual TLS."""
    if tls_ca is not None or tls or client_cert is not None:
        roots = tls_ca.read_bytes() if tls_ca is not None else None
        cert, key = (p.read_bytes() for p in client_cert) if client_cert else (None, None)
        creds = grpc.ssl_channel_credentials(
            root_certificates=roots, private_key=key, certificate_chain=cert
        )
        return grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


class _Client:
    def __init__(
        self,
        address: str = DEFAULT_MARKET,
        key: Key | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        tls_ca: Path | None = None,
        tls: bool = False,
        grpc_channel: grpc.Channel | None = None,
    ) -> None:
        self.address = address
        self.key = key
        self.timeout_s = timeout_s
        self._own_channel = grpc_channel is None
        self.channel = grpc_channel or channel(address, tls_ca, tls)

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _seal(self, message: Message) -> pb.SignedRequest:
        if self.key is None:
            raise InvalidArgument("this call must be signed: the client has no key")
        return seal(self.key, message)

    def _unary(self, rpc: Any, request: Message) -> Any:
        try:
            return rpc(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise translate(exc, self.address) from None

    def _stream(self, rpc: Any, request: Message) -> Iterator[Any]:
        call = rpc(request)
        try:
            yield from call
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                return
            raise translate(exc, self.address) from None
        finally:
            call.cancel()


class TenantClient(_Client):
    """What a tenant does: fund (admin), deploy, watch, accept, read logs, close."""

    @property
    def _stub(self) -> pb_grpc.TenantStub:
        return pb_grpc.TenantStub(self.channel)

    def get_account(self, address: str | None = None) -> pb.Account:
        if address is None:
            address = self.key.address if self.key else ""
        return self._unary(self._stub.GetAccount, pb.GetAccountRequest(address=address))

    def fund(self, address: str, amount: int) -> pb.Account:
        """Dev faucet: only the marketplace's admin key may sign it."""
        msg = pb.FundAccount(address=address, amount=amount)
        return self._unary(self._stub.Fund, self._seal(msg))

    def create_deployment(self, sdl: bytes, deposit: int) -> pb.Deployment:
        msg = pb.CreateDeployment(sdl=sdl, deposit=deposit)
        return self._unary(self._stub.CreateDeployment, self._seal(msg))

    def get_deployment(self, deployment_id: str) -> pb.Deployment:
        return self._unary(self._stub.GetDeployment, pb.GetRequest(id=deployment_id))

    def list_deployments(
        self, owner: str | None = None, open_only: bool = False, limit: int = 0
    ) -> list[pb.Deployment]:
        req = pb.ListRequest(owner=owner or "", open_only=open_only, limit=limit)
        return list(self._unary(self._stub.ListDeployments, req).deployments)

    def close_deployment(self, deployment_id: str) -> pb.Deployment:
        msg = pb.CloseDeployment(deployment_id=deployment_id)
        return self._unary(self._stub.CloseDeployment, self._seal(msg))

    def deposit(self, deployment_id: str, amount: int) -> pb.Deployment:
        msg = pb.DepositEscrow(deployment_id=deployment_id, amount=amount)
        return self._unary(self._stub.Deposit, self._seal(msg))

    def get_order(self, order_id: str) -> pb.Order:
        return self._unary(self._stub.GetOrder, pb.GetRequest(id=order_id))

    def list_orders(self, owner: str | None = None, open_only: bool = False) -> list[pb.Order]:
        req = pb.ListRequest(owner=owner or "", open_only=open_only)
        return list(self._unary(self._stub.ListOrders, req).orders)

    def list_bids(self, order_id: str) -> list[pb.Bid]:
        return list(self._unary(self._stub.ListBids, pb.GetRequest(id=order_id)).bids)

    def explain_order(self, order_id: str) -> pb.OrderExplanation:
        return self._unary(self._stub.ExplainOrder, pb.GetRequest(id=order_id))

    def accept_bid(self, bid_id: str) -> pb.Lease:
        return self._unary(self._stub.AcceptBid, self._seal(pb.AcceptBid(bid_id=bid_id)))

    def get_lease(self, lease_id: str) -> pb.Lease:
        return self._unary(self._stub.GetLease, pb.GetRequest(id=lease_id))

    def list_leases(self, owner: str | None = None, open_only: bool = False) -> list[pb.Lease]:
        req = pb.ListRequest(owner=owner or "", open_only=open_only)
        return list(self._unary(self._stub.ListLeases, req).leases)

    def close_lease(self, lease_id: str, message: str = "") -> pb.Lease:
        msg = pb.CloseLease(lease_id=lease_id, message=message)
        return self._unary(self._stub.CloseLease, self._seal(msg))

    def watch_deployment(
        self, deployment_id: str, after_seq: int = 0
    ) -> Iterator[pb.DeploymentEvent]:
        """Events after `after_seq`, then live ones; ends after the deployment closes."""
        req = pb.WatchDeploymentRequest(deployment_id=deployment_id, after_seq=after_seq)
        return self._stream(self._stub.WatchDeployment, req)

    def stream_logs(
        self, lease_id: str, follow: bool = False, tail: int = 0, after_seq: int = 0
    ) -> Iterator[pb.LogLine]:
        req = pb.StreamLogsRequest(lease_id=lease_id, follow=follow, tail=tail, after_seq=after_seq)
        return self._stream(self._stub.StreamLogs, req)


class ProviderClient(_Client):
    """A provider's calls (sync). The agent daemon uses AsyncProviderClient."""

    @property
    def _stub(self) -> pb_grpc.ProviderStub:
        return pb_grpc.ProviderStub(self.channel)

    def register(self, msg: pb.RegisterProvider) -> pb.RegisterResponse:
        return self._unary(self._stub.Register, self._seal(msg))

    def heartbeat(
        self,
        running_lease_ids: Iterable[str] = (),
        inventory: pb.Inventory | None = None,
        draining: bool = False,
    ) -> pb.HeartbeatResponse:
        msg = pb.Heartbeat(running_lease_ids=list(running_lease_ids), draining=draining)
        if inventory is not None:
            msg.inventory.CopyFrom(inventory)
        return self._unary(self._stub.Heartbeat, self._seal(msg))

    def watch_orders(self, resume_token: int = 0) -> Iterator[pb.ProviderEvent]:
        return self._stream(
            self._stub.WatchOrders, self._seal(pb.WatchOrders(resume_token=resume_token))
        )

    def place_bid(
        self, order_id: str, price_per_hour: int, offer: pb.BidOffer | None = None
    ) -> pb.Bid:
        msg = pb.PlaceBid(order_id=order_id, price_per_hour=price_per_hour, offer=offer)
        return self._unary(self._stub.PlaceBid, self._seal(msg))

    def withdraw_bid(self, bid_id: str) -> pb.Bid:
        return self._unary(self._stub.WithdrawBid, self._seal(pb.WithdrawBid(bid_id=bid_id)))

    def decline_order(self, order_id: str, reason: str) -> pb.Ack:
        msg = pb.DeclineOrder(order_id=order_id, reason=reason)
        return self._unary(self._stub.DeclineOrder, self._seal(msg))

    def get_manifest(self, lease_id: str) -> pb.Manifest:
        return self._unary(self._stub.GetManifest, self._seal(pb.GetManifest(lease_id=lease_id)))

    def report_status(self, report: pb.LeaseStatusReport) -> pb.Lease:
        return self._unary(self._stub.ReportLeaseStatus, self._seal(report))

    def report_logs(self, lease_id: str, lines: Iterable[pb.LogLine]) -> pb.Ack:
        msg = pb.LogBatch(lease_id=lease_id, lines=list(lines))
        return self._unary(self._stub.ReportLogs, self._seal(msg))

    def close_lease(self, lease_id: str, message: str = "") -> pb.Lease:
        msg = pb.CloseLease(lease_id=lease_id, message=message)
        return self._unary(self._stub.CloseLease, self._seal(msg))


class MarketClient(_Client):
    """Public market data: providers, price statistics, the audit, the ledger."""

    @property
    def _stub(self) -> pb_grpc.MarketStub:
        return pb_grpc.MarketStub(self.channel)

    def list_providers(self, online_only: bool = False) -> list[pb.ProviderInfo]:
        req = pb.ListRequest(open_only=online_only)
        return list(self._unary(self._stub.ListProviders, req).providers)

    def stats(self, since_ms: int = 0) -> pb.MarketStats:
        return self._unary(self._stub.Stats, pb.MarketStatsRequest(since_ms=since_ms))

    def audit(self) -> pb.AuditReport:
        return self._unary(self._stub.Audit, pb.AuditRequest())

    def ledger(self, address: str | None = None, limit: int = 0) -> list[pb.LedgerEntry]:
        req = pb.ListRequest(owner=address or "", limit=limit)
        try:
            return list(self._stub.ListLedger(req, timeout=self.timeout_s))
        except grpc.RpcError as exc:
            raise translate(exc, self.address) from None
