"""The store's documents: dumps() (orjson where installed) writes the JSON values the reference
(encode() and the json module) writes, and a store written by the reference (every gpumarket
before orjson) loads as the same state."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from marketplace.core.clock import ManualClock
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.state import BidState, Offer
from marketplace.server.codec import decode, dumps, dumps_without, json_dumps
from marketplace.server.store import Store
from marketplace.server.store_api import Batch, SqlValue, changes_batch
from tests.server.test_store import run_scenario

CONFIG = MarketConfig(admin_address="admin")


@dataclass(frozen=True, slots=True)
class Odd:
    """What orjson leaves to the reference, beside what it writes itself."""

    big: int = 2**70  # past 64 bits
    blob: bytes = b"\x00\xffproof"
    text: str = "zu beschäftigt ✓"
    keys: dict[str, int] = field(default_factory=lambda: {"a": 1})
    state: BidState = BidState.OPEN
    offer: Offer = field(default_factory=lambda: Offer(("h100",), ("GPU-1",)))


def written_values(batches: list[Batch]) -> list[object]:
    """Every JSON document in the batches (the str columns that parse as objects)."""
    out = []
    for batch in batches:
        for _, rows in batch.statements:
            for row in rows:
                out += [json.loads(v) for v in row if isinstance(v, str) and v.startswith("{")]
    return out


class Recorder(Store):
    """A real store that also keeps the batches it wrote."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[Batch] = []

    def write(self, batch: Batch) -> None:
        self.batches.append(batch)
        super().write(batch)


def test_dumps_writes_the_values_the_reference_writes(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000_000)
    store = Recorder(tmp_path / "market.db")
    market = MarketService(clock, CONFIG, archive=store)
    run_scenario(market, clock, store)
    st = market.state
    records: list[object] = [
        *st.accounts.values(),
        *st.deployments.values(),
        *st.orders.values(),
        *st.bids.values(),
        *st.leases.values(),
        *st.providers.values(),
        *(d for ds in st.declines.values() for d in ds),
        Odd(),
    ]
    assert len(records) > 20
    for record in records:
        assert json.loads(dumps(record)) == json.loads(json_dumps(record))
        assert decode(type(record), json.loads(dumps(record))) == record
    for event in st.provider_events:
        without = dumps_without(event, ("order", "bid", "lease"))
        assert "order_id" in json.loads(without) and "order" not in json.loads(without)
    assert written_values(store.batches)  # the scenario wrote documents through dumps()


def test_a_store_written_by_the_reference_encoding_loads_the_same(tmp_path: Path) -> None:
    """A data dir of an older gpumarket (json module, non-ASCII escaped) opens as it was."""
    clock = ManualClock(1_700_000_000_000)
    store = Recorder(tmp_path / "new.db")
    market = MarketService(clock, CONFIG, archive=store)
    run_scenario(market, clock, store)
    order_id = market.list_orders(open_only=True)[0].id  # the re-order
    market.decline_order("p3", order_id, "zu beschäftigt ✓")  # non-ASCII: escaped by json
    store.write(changes_batch(market.drain_changes()))

    def as_before(value: SqlValue) -> SqlValue:  # the document as json.dumps wrote it
        if isinstance(value, str) and value.startswith("{"):
            return json.dumps(json.loads(value), separators=(",", ":"))
        return value

    old = Store(tmp_path / "old.db")
    for batch in store.batches:
        old.write(
            Batch(
                [
                    (w, [tuple(as_before(v) for v in row) for row in rows])
                    for w, rows in batch.statements
                ]
            )
        )
    old.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:  # written as the json module writes
        bodies = [b for (b,) in conn.execute("SELECT body FROM declines")]
    assert any("\\u00e4" in b for b in bodies)
    assert Store(tmp_path / "old.db").load() == market.state
    assert Store(tmp_path / "new.db").load() == market.state
