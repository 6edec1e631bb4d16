"""gpumarket's own optional keys (`gpumarket:` job kind, runtime, restart, auction) and Akash's
`reclamation:`; an SDL without them gets the defaults."""

from __future__ import annotations

import re

from marketplace.core import units
from marketplace.core.config import MAX_BID_WINDOW_MS
from marketplace.core.limits import TEXT, shown
from marketplace.core.manifest.context import (
    ParseContext,
    Problem,
    boolean,
    choice,
    mapping,
    quantity,
)
from marketplace.core.manifest.gang import read_gang
from marketplace.core.manifest.yaml_lines import Path
from marketplace.core.resources import (
    AuctionSettings,
    JobKind,
    JobSettings,
    Payment,
    RestartPolicy,
    Tier,
)

_RECLAMATION = re.compile(r"^[1-9][0-9]*(s|m|h)$")
# scheme://location, printable and without spaces: a URI the job itself opens (s3://, gs://, ...)
_CHECKPOINT_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[!-~]+$")


def read_reclamation(ctx: ParseContext, top: dict[object, object]) -> int | None:
    if "reclamation" not in top:
        return None
    path: Path = ("reclamation",)
    spec = mapping(top["reclamation"], path, null_ok=False)
    ctx.unexpected(spec, ("min_window",), path)
    window = spec.get("min_window")
    if not isinstance(window, str) or not _RECLAMATION.fullmatch(window):
        raise Problem((*path, "min_window"), "min_window must look like 1h, 24h or 720h")
    return units.parse_duration_ms(window)


def read_job(ctx: ParseContext, value: object) -> JobSettings:
    if value is None:
        return JobSettings()
    path: Path = ("gpumarket",)
    spec = mapping(value, path)
    known = (
        "kind",
        "max_runtime",
        "restart",
        "auction",
        "min_reliability",
        "checkpoint",
        "gang",
        "tier",
    )
    for key in spec:
        if key not in known:
            raise Problem(
                (*path, str(key)), f"unknown key {shown(key)} (one of {', '.join(known)})"
            )
    kind = choice(spec.get("kind"), (*path, "kind"), JobKind, JobKind.SERVICE)
    restart = choice(
        spec.get("restart"), (*path, "restart"), RestartPolicy, RestartPolicy.ON_FAILURE
    )
    max_runtime = None
    if spec.get("max_runtime") is not None:
        max_runtime = quantity(units.parse_duration_ms, spec["max_runtime"], (*path, "max_runtime"))
    auction = read_auction(ctx, spec.get("auction"), (*path, "auction"))
    gang = read_gang(ctx, spec.get("gang"), (*path, "gang"))
    if gang is not None and kind != JobKind.TRAINING:
        raise Problem((*path, "gang"), "a gang is for training: set gpumarket.kind to training")
    if gang is not None and auction.manual:
        raise Problem((*path, "gang"), "a gang's nodes are awarded together: no manual auction")
    if spec.get("min_reliability") is not None:
        reliability = spec["min_reliability"]
        rpath = (*path, "min_reliability")
        if isinstance(reliability, bool) or not isinstance(reliability, int | float):
            raise Problem(rpath, "min_reliability must be a number between 0 and 1")
        if not 0 <= reliability <= 1:
            raise Problem(rpath, f"min_reliability {reliability} is outside 0..1")
        auction = AuctionSettings(
            auction.bid_window_ms, auction.payment, auction.manual, float(reliability)
        )
    return JobSettings(
        kind=kind,
        max_runtime_ms=max_runtime,
        restart_policy=restart,
        auction=auction,
        checkpoint_uri=read_checkpoint(spec.get("checkpoint"), (*path, "checkpoint")),
        gang=gang,
        tier=choice(spec.get("tier"), (*path, "tier"), Tier, Tier.ON_DEMAND),
    )


def read_checkpoint(value: object, path: Path) -> str | None:
    if value is None:
        return None
    limit = TEXT["checkpoint uri"].chars
    if not isinstance(value, str) or not value:
        raise Problem(path, "checkpoint must be a URI such as s3://bucket/run-1")
    if len(value) > limit:
        raise Problem(path, f"checkpoint is {len(value):,} characters; the limit is {limit:,}")
    if not _CHECKPOINT_URI.fullmatch(value):
        raise Problem(
            path, f"checkpoint {shown(value)} is not a URI (scheme://location, no spaces)"
        )
    return value


def read_auction(ctx: ParseContext, value: object, path: Path) -> AuctionSettings:
    defaults = AuctionSettings()
    if value is None:
        return defaults
    spec = mapping(value, path)
    for key in spec:
        if key not in ("bid_window", "payment", "manual"):
            raise Problem(
                (*path, str(key)), f"unknown key {shown(key)} (one of bid_window, payment, manual)"
            )
    window = defaults.bid_window_ms
    if spec.get("bid_window") is not None:
        window = quantity(units.parse_duration_ms, spec["bid_window"], (*path, "bid_window"))
        if window > MAX_BID_WINDOW_MS:
            limit = units.format_duration(MAX_BID_WINDOW_MS)
            raise Problem((*path, "bid_window"), f"bid_window must be at most {limit}")
    payment = choice(spec.get("payment"), (*path, "payment"), Payment, defaults.payment)
    manual = boolean(spec.get("manual", False), (*path, "manual"))
    return AuctionSettings(bid_window_ms=window, payment=payment, manual=manual)
