"""Keys and signed envelopes: what a forger, a replayer or a careless client runs into."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from marketplace import identity
from marketplace.api.envelope import open_envelope, seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.main import cli
from marketplace.core.clock import ManualClock
from marketplace.core.errors import InvalidArgument, NotFound, Unauthenticated

NOW = 1_800_000_000_000
MARKET = "gm1market"  # the marketplace the requests are signed for


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def key() -> identity.Key:
    return identity.Key.generate()


def bid_request(key: identity.Key, clock: ManualClock, price: int = 1_000) -> pb.SignedRequest:
    return seal(key, pb.PlaceBid(order_id="D1/1/1", price_per_hour=price), clock, market=MARKET)


def test_a_sealed_request_opens_to_its_signer_and_message(key, clock):
    signer, bid = open_envelope(
        bid_request(key, clock), pb.PlaceBid, identity.ReplayGuard(clock), market=MARKET
    )
    assert signer == key.address
    assert bid.order_id == "D1/1/1" and bid.price_per_hour == 1_000


def test_tampered_payload_is_refused(key, clock):
    request = bid_request(key, clock)
    request.payload = pb.PlaceBid(order_id="D1/1/1", price_per_hour=1).SerializeToString()
    with pytest.raises(Unauthenticated, match="bad signature"):
        open_envelope(request, pb.PlaceBid, market=MARKET)


def test_a_signed_bid_cannot_pass_as_another_message_type(key, clock):
    with pytest.raises(Unauthenticated, match="bad signature"):
        open_envelope(bid_request(key, clock), pb.WithdrawBid, market=MARKET)


def test_a_signature_from_another_key_is_refused(key, clock):
    request = bid_request(key, clock)
    request.public_key = identity.Key.generate().public_key
    with pytest.raises(Unauthenticated):
        open_envelope(request, pb.PlaceBid, market=MARKET)


def test_replayed_nonce_is_refused(key, clock):
    guard = identity.ReplayGuard(clock)
    request = bid_request(key, clock)
    open_envelope(request, pb.PlaceBid, guard, market=MARKET)
    with pytest.raises(Unauthenticated, match="replayed"):
        open_envelope(request, pb.PlaceBid, guard, market=MARKET)


@pytest.mark.parametrize("skew_ms", [-120_000, 120_000])
def test_stale_or_future_timestamp_is_refused(key, clock, skew_ms):
    request = bid_request(key, ManualClock(NOW + skew_ms))
    with pytest.raises(Unauthenticated, match="stale"):
        open_envelope(request, pb.PlaceBid, identity.ReplayGuard(clock), market=MARKET)


def test_a_replay_after_the_nonce_is_forgotten_is_still_refused_as_stale(key, clock):
    guard = identity.ReplayGuard(clock, max_skew_ms=1_000)
    request = bid_request(key, clock)
    open_envelope(request, pb.PlaceBid, guard, market=MARKET)
    clock.advance(5_000)
    open_envelope(bid_request(key, clock), pb.PlaceBid, guard, market=MARKET)  # drops the old nonce
    with pytest.raises(Unauthenticated, match="stale"):
        open_envelope(request, pb.PlaceBid, guard, market=MARKET)


def test_a_request_signed_for_another_marketplace_is_refused(key, clock):
    with pytest.raises(Unauthenticated, match="signed for another marketplace"):
        open_envelope(bid_request(key, clock), pb.PlaceBid, market="gm1elsewhere")
    # naming the other market in the envelope does not help: the signature covers it
    request = bid_request(key, clock)
    request.market_id = "gm1elsewhere"
    with pytest.raises(Unauthenticated, match="bad signature"):
        open_envelope(request, pb.PlaceBid, market="gm1elsewhere")


def test_the_guard_hands_over_the_nonces_of_commands_not_of_reads(key, clock):
    guard = identity.ReplayGuard(clock)
    command, read = bid_request(key, clock), bid_request(key, clock)
    open_envelope(command, pb.PlaceBid, guard, market=MARKET)
    open_envelope(read, pb.PlaceBid, guard, market=MARKET, durable=False)
    assert [n.nonce for n in guard.take_durable()] == [command.nonce]
    assert guard.take_durable() == []
    # a guard that remembers what was stored refuses the stored nonce after a "restart"
    again = identity.ReplayGuard(clock)
    again.remember(identity.SeenNonce(command.public_key, command.nonce, command.timestamp_ms))
    with pytest.raises(Unauthenticated, match="replayed"):
        open_envelope(command, pb.PlaceBid, again, market=MARKET)


def test_malformed_envelope_is_refused_not_crashed(clock):
    with pytest.raises(Unauthenticated, match="malformed"):
        open_envelope(
            pb.SignedRequest(payload=b"x", public_key=b"short"), pb.PlaceBid, market=MARKET
        )


def test_signed_garbage_payload_is_an_invalid_argument(key, clock):
    request = seal(key, pb.PlaceBid(), clock, market=MARKET)
    sig = key.sign(MARKET, "marketplace.api.v1.PlaceBid", b"\xff\xff\xff", clock.now_ms())
    request.payload, request.signature, request.nonce = b"\xff\xff\xff", sig.signature, sig.nonce
    with pytest.raises(InvalidArgument):
        open_envelope(request, pb.PlaceBid, market=MARKET)


def test_key_files_are_private_and_round_trip(isolated_home):
    key = identity.create_key("alice")
    path = identity.keys_dir() / "alice.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert identity.load_key("alice").address == key.address
    assert key.address.startswith("gm1") and len(key.address) == 35
    with pytest.raises(InvalidArgument, match="exists already"):
        identity.create_key("alice")
    with pytest.raises(NotFound, match="keys create"):
        identity.load_key("bob")
    with pytest.raises(InvalidArgument, match="bad key name"):
        identity.create_key("../evil")


def test_keys_cli_create_list_show(isolated_home):
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "tenant", "--json"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(cli, ["keys", "list"])
    assert "tenant" in listed.output and "gm1" in listed.output
    shown = runner.invoke(cli, ["keys", "show", "tenant"])
    assert identity.load_key("tenant").public_key.hex() in shown.output
    missing = runner.invoke(cli, ["keys", "show", "nobody"])
    assert missing.exit_code == 1
    assert missing.output.strip().startswith("Error: no key 'nobody'")
    assert "Traceback" not in missing.output
