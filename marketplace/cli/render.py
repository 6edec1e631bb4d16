"""How the tenant commands show things: tables and lines for people, plain data for --json.

Wire messages (what the client returns) become rows here; deployment events, decoded into core
events by convert.py, become one line each. Amounts are shown in whole units with micro precision
(12.500000 act), times in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import click
from google.protobuf.message import Message

from marketplace.api import convert
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.escrow import format_time
from marketplace.core.events import DeploymentEventKind
from marketplace.core.money import format_amount
from marketplace.core.state import DeploymentEvent, Endpoint
from marketplace.terminal import print_table

# What proto_dict makes of a message: JSON values only.
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


def amount(micro: int) -> str:
    return format_amount(micro)


def when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def short(address: str, n: int = 14) -> str:
    return address if len(address) <= n else address[:n] + "…"


def proto_dict(message: Message) -> dict[str, JsonValue]:
    """A message as plain JSON data: every field, numbers as numbers, enums by name."""
    out: dict[str, JsonValue] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None:
            if field.is_repeated:
                out[field.name] = [proto_dict(v) for v in value]
            elif message.HasField(field.name):
                out[field.name] = proto_dict(value)
            else:
                out[field.name] = None
        elif field.enum_type is not None:
            name = field.enum_type.values_by_number
            if field.is_repeated:
                out[field.name] = [name[v].name for v in value]
            else:
                out[field.name] = name[value].name if value in name else value
        elif field.type == field.TYPE_BYTES:
            out[field.name] = value.hex()
        elif field.is_repeated:
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def endpoint_text(e: pb.Endpoint | Endpoint) -> str:
    if e.uri:
        return e.uri
    host = e.host or "?"
    return f"{e.service}: {host}:{e.external_port or e.port} ({e.proto or 'tcp'} → {e.port})"


def endpoints_text(endpoints: Sequence[pb.Endpoint | Endpoint]) -> str:
    return "; ".join(endpoint_text(e) for e in endpoints)


def gpu_summary(inv: pb.Inventory) -> str:
    counts: dict[str, int] = {}
    for g in inv.gpus:
        label = f"{g.model} {g.memory_mib // 1024}Gi"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n}x {label}" for label, n in sorted(counts.items())) or "-"


# --- tables ---------------------------------------------------------------------------------


def deployment_table(deps: Sequence[pb.Deployment]) -> None:
    print_table(
        [
            "DEPLOYMENT",
            "STATE",
            "ESCROW",
            "TIME LEFT",
            "DEPOSITED",
            "KIND",
            "ORDERS",
            "LEASES",
            "CREATED",
        ],
        [
            (
                d.id,
                convert.deployment_state_name(d.state),
                amount(d.escrow_balance),
                time_left(d),
                amount(d.deposited),
                kind_and_tier(d),
                len(d.order_ids),
                len(d.lease_ids),
                when(d.created_at_ms),
            )
            for d in deps
        ],
    )


def deployment_detail(
    dep: pb.Deployment, orders: Sequence[pb.Order], leases: Sequence[pb.Lease]
) -> None:
    """One deployment: a summary line, its orders, its leases."""
    click.echo(
        f"deployment {dep.id}  {convert.deployment_state_name(dep.state)}  {kind_and_tier(dep)}  "
        f"escrow {amount(dep.escrow_balance)} of {amount(dep.deposited)} deposited"
        + (f"  version {dep.version}" if dep.version > 1 else "")  # updated in place
    )
    for line in funding_lines(dep):
        click.echo(line)
    order_table(orders)
    lease_table(leases)


def kind_and_tier(dep: pb.Deployment) -> str:
    """'training', or 'training spot' for interruptible capacity (`gpumarket: tier: spot`)."""
    return f"{dep.job_kind} spot" if dep.tier == "spot" else dep.job_kind


def time_left(dep: pb.Deployment) -> str:
    """How long the escrow lasts at the running leases' rate ("-" while nothing runs)."""
    if not dep.rate_per_hour:
        return "-"
    return format_time(dep.escrow_time_left_ms) + (" (low)" if dep.escrow_low else "")


def funding_lines(dep: pb.Deployment) -> list[str]:
    """How long the escrow lasts at the running leases' rate, the auto top-up, and a warning
    when the market said the escrow is low (escrow_low)."""
    lines = []
    if dep.rate_per_hour:
        lines.append(
            f"escrow left {amount(dep.escrow_balance)}: lasts "
            f"{format_time(dep.escrow_time_left_ms)} at {amount(dep.rate_per_hour)}/h"
        )
    if dep.auto_top_up:
        lines.append(
            f"auto top-up {amount(dep.auto_top_up)} when low; moved {amount(dep.auto_topped_up)} "
            f"of at most {amount(dep.auto_top_up_max)}"
        )
    if dep.escrow_low:
        lines.append(low_warning(dep))
    return lines


def low_warning(dep: pb.Deployment) -> str:
    return (
        f"warning: {dep.id}'s escrow is low ({format_time(dep.escrow_time_left_ms)} left); "
        f"top it up with `gpumarket deposit {dep.id} AMOUNT`"
    )


def order_table(orders: Sequence[pb.Order]) -> None:
    print_table(
        ["ORDER", "STATE", "GROUP", "MAX/H", "WINDOW CLOSES"],
        [
            (
                o.id,
                convert.order_state_name(o.state),
                o.spec.name,
                amount(o.spec.max_price_per_hour),
                when(o.closes_at_ms),
            )
            for o in orders
        ],
    )


def lease_table(leases: Sequence[pb.Lease]) -> None:
    print_table(
        ["LEASE", "STATE", "TIER", "PROVIDER", "PRICE/H", "PAID", "REASON", "ENDPOINTS"],
        [
            (
                x.id,
                convert.lease_state_name(x.state),
                x.tier or "on-demand",  # spot: pre-emptible (`gpumarket: tier: spot`)
                short(x.provider),
                amount(x.price_per_hour),
                amount(x.paid),
                convert.close_reason_name(x.close_reason) or "-",
                endpoints_text(x.endpoints) or "-",
            )
            for x in leases
        ],
    )


def lease_detail(lease: pb.Lease) -> None:
    lease_table([lease])
    if lease.message:
        click.echo(f"message: {lease.message}")


def bid_table(bids: Sequence[pb.Bid]) -> None:
    print_table(
        ["BID", "PROVIDER", "PRICE/H", "STATE", "RELIABILITY", "GPUS"],
        [
            (
                b.id,
                short(b.provider),
                amount(b.price_per_hour),
                convert.bid_state_name(b.state),
                f"{b.reliability:.2f}",
                ",".join(b.offer.gpu_models) or "-",
            )
            for b in bids
        ],
    )


def explanation(answer: pb.OrderExplanation) -> None:
    """Why an order has no (winning) bid: a summary line, its bids, every decline."""
    o = answer.order
    click.echo(f"order {o.id}  {convert.order_state_name(o.state)}: {answer.summary}")
    if answer.bids:
        bid_table(answer.bids)
    if answer.declines:
        print_table(
            ["PROVIDER", "REASON", "BY"],
            [
                (short(d.provider), d.reason, "marketplace" if d.by_marketplace else "provider")
                for d in answer.declines
            ],
        )


def account_lines(acct: pb.Account) -> None:
    click.echo(f"address:   {acct.address}")
    click.echo(f"balance:   {amount(acct.balance)}")
    click.echo(f"escrowed:  {amount(acct.escrowed)}")


def provider_table(providers: Sequence[pb.ProviderInfo]) -> None:
    print_table(
        ["PROVIDER", "ONLINE", "REGION", "GPUS", "RELIABILITY", "LEASES", "LAST HEARTBEAT"],
        [
            (
                short(p.address, 20),
                "yes" if p.online else "no",
                p.region or "-",
                gpu_summary(p.inventory),
                f"{p.reliability:.2f}",
                p.leases_running,
                when(p.last_heartbeat_ms),
            )
            for p in providers
        ],
    )


# --- events ---------------------------------------------------------------------------------


def describe_event(event: DeploymentEvent) -> str:
    """One line for a person following a deployment ("" for events not worth a line)."""
    kind, bid, lease = event.kind, event.bid, event.lease
    if kind == DeploymentEventKind.BID_PLACED:
        if bid is None:  # sealed: who bid and at what price show once the window closes
            return f"  sealed bid on {event.order_id}"
        return (
            f"  bid  {amount(bid.price_per_hour)}/h from {short(bid.provider)} "
            f"(reliability {bid.reliability:.2f})"
        )
    if kind == DeploymentEventKind.BID_DECLINED:
        return f"  declined: {event.message}"
    if kind == DeploymentEventKind.NO_ELIGIBLE_BID:
        return f"  auction closed without a winner: {event.message}"
    if kind == DeploymentEventKind.LEASE_CREATED:
        if lease is None:
            return f"lease {event.lease_id} created; waiting for it to start"
        return (
            f"lease {lease.id}: won by {short(lease.provider)} at {amount(lease.price_per_hour)}/h; "
            "waiting for it to start"
        )
    if kind == DeploymentEventKind.LEASE_RUNNING:
        ends = endpoints_text(lease.endpoints) if lease is not None else ""
        return f"lease {event.lease_id} running: {ends or 'no endpoints'}"
    if kind == DeploymentEventKind.LEASE_CLOSED:
        return f"lease {event.lease_id} closed ({event.message})"
    if kind in (DeploymentEventKind.ORDER_OPENED, DeploymentEventKind.ORDER_REOPENED):
        return f"order {event.order_id} open for bids"
    if kind == DeploymentEventKind.REORDERS_STOPPED:
        return f"not ordered again: {event.message}"
    if kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
        return f"deployment {event.deployment_id} closed: {event.message}"
    if kind == DeploymentEventKind.ESCROW_LOW:
        return f"warning: {event.message}"
    if kind == DeploymentEventKind.ESCROW_TOPPED_UP:
        return event.message
    if kind == DeploymentEventKind.DEPLOYMENT_UPDATED:
        return f"deployment {event.deployment_id} updated to {event.message}"
    if kind in (DeploymentEventKind.UPDATE_RUNNING, DeploymentEventKind.UPDATE_FAILED):
        return f"lease {event.lease_id}: {event.message}"
    if kind == DeploymentEventKind.LEASE_PREEMPTED:
        return f"lease {event.lease_id} pre-empted (spot): {event.message}"
    return ""
