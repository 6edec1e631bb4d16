"""Every bound on what a request may carry, in one table, and the checks that apply them.

The market stores what providers and tenants send and echoes it to everyone (ListProviders,
ExplainOrder, events), so one oversized or garbled string would break those reads for all.
Commands check their inputs here before they change anything; a value out of bounds is refused
with InvalidArgument naming the field and the limit (gRPC INVALID_ARGUMENT).

Text is display-safe: stored strings hold no control characters but tab (a name with a NUL, an
escape sequence that rewrites a reader's terminal, a newline that forges a table row are all
refused). Log lines are the exception: they are a container's own output, which neither the
provider nor the tenant fully controls, so refusing them would lose logs. Their control
characters (ANSI colours included) are escaped as visible text instead (`\\x1b`), which keeps
every byte's information and runs nothing on the reader's terminal.

Money: every amount is an integer number of micro-units. No single amount (a faucet payment, a
deposit) and no running total (the total ever minted, hence every balance and escrow) may pass
MAX_AMOUNT, so nothing ever overflows the int64 of the wire and the store (9.2×10^18). A price
per hour (a bid, a group's maximum) may not pass MAX_PRICE_PER_HOUR. Zero never means "no
limit": a group's maximum price is at least 1 micro-unit per hour.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from marketplace.core.errors import InvalidArgument
from marketplace.core.matching import Capacity

# re-exported: callers name values through limits, as before quoting became its own module
from marketplace.core.quoting import MAX_ERROR_VALUE as MAX_ERROR_VALUE
from marketplace.core.quoting import MAX_PATH_KEY as MAX_PATH_KEY
from marketplace.core.quoting import clipped as clipped
from marketplace.core.quoting import path_key as path_key
from marketplace.core.quoting import shown as shown
from marketplace.core.resources import GroupSpec
from marketplace.core.state import Endpoint, Offer

# --- money (micro-units) ---------------------------------------------------------------------
MAX_AMOUNT = 10**18  # one payment or deposit, the total ever minted, any balance (int64 < 9.3e18)
MAX_PRICE_PER_HOUR = 10**15  # a bid, a group's maximum, a per-GPU offer price (10^9 units/h)

# --- manifests ---------------------------------------------------------------------------------
MAX_MANIFEST_BYTES = 1024 * 1024  # the SDL text
MAX_MANIFEST_NODES = 10_000  # YAML nodes, counting each alias as the size of what it names
MAX_MANIFEST_DEPTH = 64  # nesting of YAML collections
MAX_MANIFEST_TEXT = 4 * 1024 * 1024  # characters of all scalars, aliases expanded


@dataclass(frozen=True, slots=True)
class TextLimit:
    """How long one stored string may be (characters); `required` refuses the empty string."""

    chars: int
    required: bool = False


TEXT: Mapping[str, TextLimit] = {
    "host_uri": TextLimit(512),
    "region": TextLimit(64),
    "version": TextLimit(64),
    "attribute key": TextLimit(128),
    "attribute value": TextLimit(256),
    "decline reason": TextLimit(1024),
    "lease message": TextLimit(1024),
    "close message": TextLimit(1024),
    "update summary": TextLimit(1024),  # what an update in place changes (the event's message)
    "gpu uuid": TextLimit(128),
    "gpu model": TextLimit(64),
    "gpu interface": TextLimit(16),
    "gpu health reason": TextLimit(512),  # why a GPU is not offered (telemetry)
    "driver version": TextLimit(64),
    "cuda version": TextLimit(64),
    "endpoint host": TextLimit(253),
    "endpoint uri": TextLimit(512),
    "endpoint service": TextLimit(63),
    "endpoint proto": TextLimit(8),
    "group name": TextLimit(128),
    "auditor": TextLimit(128),
    "id": TextLimit(128, required=True),  # deployment, order, bid and lease ids
    "address": TextLimit(64, required=True),
    "checkpoint uri": TextLimit(2048, required=True),
}
MAX_ATTRIBUTES = 64  # per provider, and per group's placement requirements
MAX_GROUPS = 256  # placement groups in one deployment
MAX_GANG_NODES = 64  # nodes of one gang (`gpumarket: gang: nodes`), each an order
MAX_BANDWIDTH_MBPS = 10_000_000  # a declared link or a gang's floor: 10 Tbps
MAX_GPUS = 256  # devices one provider registers
MAX_GPU_RAM_GIB = 16 * 1024  # one device's VRAM as a provider reports it (telemetry's 16 TiB)
MAX_OFFER_ITEMS = 256  # GPU models/uuids named in one bid offer
MAX_ENDPOINTS = 256  # per lease status report
MAX_RUNNING_IDS = 10_000  # lease ids in one heartbeat

# --- GPU telemetry (core/telemetry.py): each reading's range, inclusive; the market keeps only
# the latest reading per GPU of each registered provider (MAX_GPUS each), so memory stays flat
TELEMETRY_RANGES: Mapping[str, tuple[int, int]] = {
    "temperature_c": (-40, 200),
    "power_w": (0, 10_000),
    "utilization_pct": (0, 100),
    "memory_used_mib": (0, 16 * 1024 * 1024),  # 16 TiB
    "memory_mib": (0, 16 * 1024 * 1024),
    "xid_count": (0, 1_000_000_000),
    "last_xid": (-1, 65_535),  # -1: NVML's event wait failed (all GPUs held back)
    "index": (0, MAX_GPUS - 1),
}

# --- times a client stamps what it sends by (a log line, a telemetry reading) -------------------
# Its clock agrees with the market's within a signature's ±60 s; what it sends may have waited
# while it was away, but never from before what it describes (a log line before its lease).
MAX_CLOCK_AHEAD_MS = 5 * 60_000
MAX_TELEMETRY_AGE_MS = 24 * 3600_000  # a reading older than this describes no GPU as it is

# --- logs ----------------------------------------------------------------------------------------
MAX_LOG_LINES_PER_BATCH = 5_000
MAX_LOG_LINE_CHARS = 16_384  # after escaping
LOG_STREAMS = ("stdout", "stderr", "system")  # system: what the agent says about the lease

# --- shells and file copies (server/relay.py, provider_agent/shell.py) -------------------------
MAX_SHELL_FRAME_BYTES = 1024 * 1024  # stdin, stdout or stderr bytes in one session frame
MAX_SHELL_COMMAND_ARGS = 256  # words of a command run in a lease's container
MAX_SHELL_COMMAND_CHARS = 64 * 1024  # all of its words together
MAX_SHELL_PATH_CHARS = 4096  # a path copied to or from a container (PATH_MAX)
MAX_SESSIONS_PER_LEASE = 16  # shells and copies open at once on one lease
MAX_SESSIONS = 1024  # open at once on one marketplace
MAX_COPY_BYTES = 16 * 1024**3  # one file copied in or out (a provider may set its own, lower)

# --- memory that stays flat under a long run (issue 13): history beyond these is read from the
# store, or not kept (price statistics cover the newest leases)
PRICE_POINTS_KEPT = 50_000  # leases' prices behind Market.Stats, the newest
LOG_SEQS_CACHED = 10_000  # leases whose last log line number the server holds (LRU)
MAX_READS_WAITING = 64  # reads queued for the server's reader thread (server/offloop.py)

# --- addresses -----------------------------------------------------------------------------------
ADDRESS_PREFIX = "gm1"
_ADDRESS_BYTES = 20  # sha256(public key)[:20], base32 without padding: 32 characters
_ADDRESS = re.compile(r"gm1[a-z2-7]{32}")

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def is_address(text: str) -> bool:
    """Whether `text` is a well-formed account address (what identity.address_of derives)."""
    if not _ADDRESS.fullmatch(text):
        return False
    raw = base64.b32decode(text[len(ADDRESS_PREFIX) :].upper())
    return len(raw) == _ADDRESS_BYTES


def check_address(field: str, text: str) -> str:
    if not is_address(text):
        raise InvalidArgument(
            f"{field}: {shown(text)} is not an account address "
            f"({ADDRESS_PREFIX} and 32 base32 characters, as `gpumarket keys show` prints)"
        )
    return text


def whole_number(text: str, most_digits: int = 18) -> int | None:
    """`text` as a non-negative int when it is 1 to `most_digits` ASCII digits, else None.
    str.isdigit() alone is no guard before int(): it passes '²' (which int() refuses with a
    ValueError) and other scripts' digits, and int() refuses more than 4,300 digits."""
    if not 0 < len(text) <= most_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def check_text(field: str, text: str, limit: TextLimit | None = None) -> str:
    """`text` if it fits its field's limit and holds no control character but tab."""
    bound = limit or TEXT[field]
    if len(text) > bound.chars:
        raise InvalidArgument(f"{field} is {len(text):,} characters; the limit is {bound.chars:,}")
    if bound.required and not text:
        raise InvalidArgument(f"{field} is empty")
    # isprintable() is True only without control characters (_CONTROL's are all unprintable),
    # and is much cheaper than the search; tabs and other unprintables still go to the search
    bad = None if text.isprintable() else _CONTROL.search(text)
    if bad is not None:
        raise InvalidArgument(
            f"{field} holds a control character (U+{ord(bad.group()):04X} at {bad.start()}); "
            "only printable text and tabs are kept"
        )
    return text


def check_texts(field: str, texts: Iterable[str], most: int) -> tuple[str, ...]:
    items = tuple(texts)
    if len(items) > most:
        raise InvalidArgument(f"{len(items):,} {field}s; the limit is {most:,}")
    for item in items:
        check_text(field, item)
    return items


def check_attribute_key(key: str) -> str:
    """An attribute key: 1 to 128 characters, not blank, no space around it. A blank key or
    ' region' could never be matched by a manifest's (which Akash's key pattern bounds)."""
    check_text("attribute key", key)
    if not key.strip():
        raise InvalidArgument(f"attribute key {shown(key)} is empty")
    if key != key.strip():
        raise InvalidArgument(f"attribute key {shown(key)} has spaces around it")
    return key


def check_attributes(attributes: Mapping[str, str]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"{len(attributes):,} attributes; the limit is {MAX_ATTRIBUTES}")
    for key, value in attributes.items():
        check_attribute_key(key)
        check_text("attribute value", value)


def check_amount(field: str, amount: int, most: int = MAX_AMOUNT) -> int:
    """A positive amount of micro-units no larger than `most`."""
    if amount <= 0:
        raise InvalidArgument(f"{field} must be positive, got {shown(amount)}")
    if amount > most:
        raise InvalidArgument(f"{field} {amount:,} is over the maximum of {most:,} micro-units")
    return amount


def check_auto_top_up(step: int, cap: int) -> None:
    """An auto top-up (escrow.py): none (0, 0), or a positive step and a cap of at least one
    step (0: the default, escrow.DEFAULT_CAP_AMOUNTS steps)."""
    if step == 0 and cap == 0:
        return
    check_amount("auto top-up", step)
    if cap:
        check_amount("auto top-up cap", cap)
        if cap < step:
            raise InvalidArgument(
                f"auto top-up cap {cap:,} is below its step {step:,}: it could never move one"
            )


def check_group_texts(group: GroupSpec) -> None:
    """What every provider sees of a group (its order): its name and placement requirements."""
    check_text("group name", group.name)
    check_attributes(dict(group.requirements.attributes))
    check_texts("auditor", group.requirements.signed_by_all_of, MAX_ATTRIBUTES)
    check_texts("auditor", group.requirements.signed_by_any_of, MAX_ATTRIBUTES)


def check_capacity(capacity: Capacity) -> None:
    """What a provider registers or heartbeats: no negative size, a bounded list of GPUs."""
    for field in ("cpu_millis", "memory_bytes", "storage_bytes"):
        value = getattr(capacity, field)
        if not 0 <= value <= MAX_AMOUNT:
            raise InvalidArgument(f"inventory {field} {shown(value)} is outside 0..{MAX_AMOUNT:,}")
    check_texts("gpu uuid", (device.uuid for device in capacity.gpus), MAX_GPUS)
    for device in capacity.gpus:  # echoed by ListProviders to everyone: bounded, int64-safe
        check_text("gpu model", device.variant.model)
        check_text("gpu interface", device.variant.interface)
        if not 0 <= device.variant.ram_gib <= MAX_GPU_RAM_GIB:
            raise InvalidArgument(
                f"inventory gpu {clipped(device.uuid)}: VRAM {shown(device.variant.ram_gib)} GiB "
                f"is outside 0..{MAX_GPU_RAM_GIB:,}"
            )


def check_offer(offer: Offer) -> None:
    """An offer within its bounds. A provider sends the same offer with bid after bid (the
    simulator the very same object): a valid one is remembered (Offer is frozen, so equal
    offers are equally valid); an invalid one raises every time."""
    if _CHECKED_OFFERS.get(id(offer)) is offer:  # the very object again: no hashing of it
        return
    _check_offer(offer)
    if len(_CHECKED_OFFERS) >= 4096:
        _CHECKED_OFFERS.clear()
    _CHECKED_OFFERS[id(offer)] = offer


# valid offers by id, each held so its id cannot be reused while it is remembered
_CHECKED_OFFERS: dict[int, Offer] = {}


@lru_cache(maxsize=4096)
def _check_offer(offer: Offer) -> None:
    check_texts("gpu model", offer.gpu_models, MAX_OFFER_ITEMS)
    check_texts("gpu uuid", offer.gpu_uuids, MAX_OFFER_ITEMS)
    check_text("driver version", offer.driver_version)
    check_text("cuda version", offer.cuda_version)
    check_text("region", offer.region)
    check_texts("id", offer.preempts, MAX_OFFER_ITEMS)  # the spot leases a bid would pre-empt
    if not 0 <= offer.price_per_gpu_hour <= MAX_PRICE_PER_HOUR:
        raise InvalidArgument(
            f"offer price_per_gpu_hour {shown(offer.price_per_gpu_hour)} is outside "
            f"0..{MAX_PRICE_PER_HOUR:,}"
        )


def check_time(field: str, time_ms: int, now_ms: int, earliest_ms: int, earliest: str) -> int:
    """A time a client stamped: from `earliest_ms` (what `earliest` names) to now, give or take
    MAX_CLOCK_AHEAD_MS. Kept, a log line dated 1970 or 2262 would sort before or after every
    other, and a reading from the future would hide every real one after it."""
    skew = f"at most {MAX_CLOCK_AHEAD_MS // 1000} s (is the sender's clock right?)"
    if time_ms > now_ms + MAX_CLOCK_AHEAD_MS:
        ahead = (time_ms - now_ms) // 1000
        raise InvalidArgument(f"{field} is {ahead:,} s ahead of the marketplace's clock; {skew}")
    if time_ms < earliest_ms - MAX_CLOCK_AHEAD_MS:
        behind = (earliest_ms - time_ms) // 1000
        raise InvalidArgument(f"{field} is {behind:,} s before {earliest}; {skew}")
    return time_ms


def check_endpoints(endpoints: tuple[Endpoint, ...]) -> None:
    if len(endpoints) > MAX_ENDPOINTS:
        raise InvalidArgument(f"{len(endpoints):,} endpoints; the limit is {MAX_ENDPOINTS}")
    for endpoint in endpoints:
        for name in ("port", "external_port"):  # uint32 on the wire
            if not 0 <= getattr(endpoint, name) <= 65535:
                raise InvalidArgument(
                    f"endpoint {name} {getattr(endpoint, name)} is outside 0..65535"
                )
        check_text("endpoint service", endpoint.service)
        check_text("endpoint host", endpoint.host)
        check_text("endpoint uri", endpoint.uri)
        check_text("endpoint proto", endpoint.proto)


def escape_log_line(line: str) -> str:
    """A log line made display-safe: control characters but tab as visible `\\xNN` text, then cut
    to MAX_LOG_LINE_CHARS (cut first too, so a huge line costs no more than a long one)."""
    cut = line[:MAX_LOG_LINE_CHARS]
    return _CONTROL.sub(_escape, cut)[:MAX_LOG_LINE_CHARS]


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def display_safe(text: str, field: str) -> str:
    """For senders: free text (an error's message) made to fit `field`: control characters as
    spaces, cut to the limit. The market refuses what does not fit; a sender can avoid that."""
    return _CONTROL.sub(" ", text[: TEXT[field].chars * 2])[: TEXT[field].chars]
