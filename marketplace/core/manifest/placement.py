"""profiles.placement: provider attributes, auditors (signedBy) and pricing per compute profile."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from marketplace.core import units
from marketplace.core.limits import MAX_ATTRIBUTES, check_text, shown
from marketplace.core.manifest.context import (
    ParseContext,
    Problem,
    field,
    mapping,
    market_bound,
    sequence,
    text,
)
from marketplace.core.manifest.limits import ATTRIBUTE_KEY, PRICE_MAX
from marketplace.core.manifest.yaml_lines import Path
from marketplace.core.money import BLOCK_SECONDS, DENOMS, per_block_to_per_hour
from marketplace.core.resources import PlacementRequirements

_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_NAME = re.compile(r"[^\x00-\x20\x7f-\x9f]{1,128}")  # a group's name: every provider sees it
_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f-\x9f]{0,256}")  # an attribute's value
# the least price per block that converts to 1 micro-unit per hour (money.per_block_to_per_hour)
MIN_PRICE = (BLOCK_SECONDS / 3600).quantize(Decimal("0.0001"), rounding=ROUND_CEILING)


@dataclass
class Placement:
    """A placement profile, read: where a group may go and what it pays per compute profile,
    in each denomination offered (one before SDL 2.2; 2.2 may list several)."""

    requirements: PlacementRequirements
    pricing: dict[str, dict[str, Decimal]]  # compute profile → denom → amount per block


def read_placements(
    ctx: ParseContext, value: object, version: str = "2.0"
) -> dict[str, Placement | None]:
    path: Path = ("profiles", "placement")
    result: dict[str, Placement | None] = {}
    for name, spec in mapping(value, path, null_ok=False).items():
        ppath = (*path, str(name))
        if not _NAME.fullmatch(str(name)):
            problem = f"invalid placement name {shown(str(name))} (1-128 printable characters)"
            ctx.errors.append(Problem(ppath, problem))
            continue
        if ctx.collect(market_bound, ppath, check_text, "group name", str(name)) is None:
            continue
        result[str(name)] = ctx.collect(read_placement, ctx, spec, ppath, version)
    return result


def read_placement(ctx: ParseContext, value: object, path: Path, version: str) -> Placement:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("attributes", "signedBy", "pricing"), path)
    attributes = []
    apath = (*path, "attributes")
    written = field(spec, "attributes", path)
    if len(written) > MAX_ATTRIBUTES:
        raise Problem(apath, f"{len(written):,} attributes; the limit is {MAX_ATTRIBUTES}")
    for key, val in written.items():
        key_text = str(key)
        if not ATTRIBUTE_KEY.fullmatch(key_text):
            raise Problem((*apath, str(key)), f"invalid attribute key {shown(key_text)}")
        if isinstance(val, dict | list) or val is None:
            got = units.type_name(val)
            raise Problem((*apath, str(key)), f"attribute value must be a string, got {got}")
        text = ctx.raw((*apath, str(key)), val)
        if not _VALUE.fullmatch(text):
            problem = f"attribute value {shown(text)} must be printable, at most 256 characters"
            raise Problem((*apath, str(key)), problem)
        market_bound((*apath, key_text), check_text, "attribute key", key_text)
        market_bound((*apath, key_text), check_text, "attribute value", text)
        attributes.append((key_text, text))
    signed = field(spec, "signedBy", path)
    ctx.unexpected(signed, ("allOf", "anyOf"), (*path, "signedBy"))
    all_of = read_auditors(ctx, signed, "allOf", (*path, "signedBy"))
    any_of = read_auditors(ctx, signed, "anyOf", (*path, "signedBy"))
    for which, auditors in (("allOf", all_of), ("anyOf", any_of)):
        if len(auditors) > MAX_ATTRIBUTES:
            problem = f"{len(auditors):,} auditors; the limit is {MAX_ATTRIBUTES}"
            raise Problem((*path, "signedBy", which), problem)
        for i, auditor in enumerate(auditors):
            if not _NAME.fullmatch(auditor):
                problem = f"invalid auditor {shown(auditor)} (1-128 printable characters)"
                raise Problem((*path, "signedBy", which, i), problem)
            market_bound((*path, "signedBy", which, i), check_text, "auditor", auditor)
    pricing: dict[str, dict[str, Decimal]] = {}
    ppath = (*path, "pricing")
    if "pricing" not in spec:
        raise Problem(ppath, "pricing is required")
    for profile, coins in mapping(spec["pricing"], ppath, null_ok=False).items():
        pricing[str(profile)] = read_prices(ctx, coins, (*ppath, str(profile)), version)
    return Placement(
        requirements=PlacementRequirements(
            attributes=tuple(sorted(attributes)),
            signed_by_all_of=all_of,
            signed_by_any_of=any_of,
        ),
        pricing=pricing,
    )


def read_auditors(
    ctx: ParseContext, signed: dict[object, object], key: str, path: Path
) -> tuple[str, ...]:
    if key not in signed:
        return ()
    return ctx.strings(sequence(signed[key], (*path, key)), (*path, key))


def read_prices(ctx: ParseContext, value: object, path: Path, version: str) -> dict[str, Decimal]:
    """One compute profile's price: a coin, or (SDL 2.2) a list of coins in distinct denoms,
    of which the group pays in one (deployment.choose_denom)."""
    if not isinstance(value, list):
        denom, amount = read_coin(ctx, value, path)
        return {denom: amount}
    if version in ("2.0", "2.1"):
        raise Problem(path, f'a list of prices needs version "2.2" (this SDL is {version})')
    if not value:
        raise Problem(path, "invalid multi-coin amount: no coins specified")
    prices: dict[str, Decimal] = {}
    for index, coin in enumerate(value):
        denom, amount = read_coin(ctx, coin, (*path, index))
        if denom in prices:
            raise Problem((*path, index, "denom"), f"denom {denom} is priced twice")
        prices[denom] = amount
    return prices


def read_coin(ctx: ParseContext, value: object, path: Path) -> tuple[str, Decimal]:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("denom", "amount"), path)
    denom = spec.get("denom")
    if denom is None:
        raise Problem((*path, "denom"), "denom is required")
    denom = text(denom, (*path, "denom"))
    if denom not in DENOMS:
        raise Problem((*path, "denom"), f"unsupported denom {shown(denom)} (use uact)")
    if spec.get("amount") is None:
        raise Problem((*path, "amount"), "amount is required")
    amount_value = spec["amount"]
    if isinstance(amount_value, bool) or not isinstance(amount_value, int | float | str):
        got = units.type_name(amount_value)
        raise Problem((*path, "amount"), f"amount must be a decimal number, got {got}")
    written = ctx.raw((*path, "amount"), amount_value).strip()
    if not _DECIMAL.fullmatch(written):
        raise Problem((*path, "amount"), f"invalid coin amount {shown(written)} (a decimal ≥ 0)")
    try:
        amount = Decimal(written)
    except InvalidOperation:
        raise Problem((*path, "amount"), f"invalid coin amount {shown(written)}") from None
    if amount == 0:
        raise Problem((*path, "amount"), "invalid coin amount: amount is zero")
    if amount > PRICE_MAX:
        raise Problem(
            (*path, "amount"), f"invalid price: {shown(written)} is over the maximum of 10000000"
        )
    if per_block_to_per_hour(amount) == 0:
        raise Problem(
            (*path, "amount"),
            f"price {shown(written)} {denom} per block is under 1 micro-unit per hour, and a group's "
            f"maximum must be at least that (0 would mean no cap); use at least {MIN_PRICE}",
        )
    return denom, amount
