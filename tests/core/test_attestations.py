"""signedBy against auditors' attestations, in the core: allOf/anyOf, expiry on the market's
clock, revocation, untrusted auditors, and aliases of the foreign auditor real SDLs name."""

from __future__ import annotations

import dataclasses

import pytest

from marketplace.core.attestations import AttestationBook, AuditorTrust, parse_alias
from marketplace.core.clock import ManualClock
from marketplace.core.errors import Ineligible, InvalidArgument, NotFound, PermissionDenied
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import placement_mismatches
from marketplace.core.resources import GroupSpec, PlacementRequirements
from marketplace.core.state import BidState
from tests.core.test_market import ADMIN, capacity, deploy, gpu_group
from tests.helpers import CORPUS_SDL

AUDITOR = "gm1" + "a" * 32
OTHER = "gm1" + "b" * 32
STRANGER = "gm1" + "c" * 32
AKASH_AUDITOR = "akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63"
DAY = 86_400_000


def signed_group(all_of: tuple[str, ...] = (), any_of: tuple[str, ...] = ()) -> GroupSpec:
    group = gpu_group(attributes=(("region", "eu"),))
    req = PlacementRequirements(group.requirements.attributes, all_of, any_of)
    return dataclasses.replace(group, requirements=req)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


@pytest.fixture
def market(clock: ManualClock) -> MarketService:
    config = MarketConfig(
        admin_address=ADMIN,
        auditors=frozenset({AUDITOR, OTHER}),
        auditor_aliases=((AKASH_AUDITOR, AUDITOR),),
    )
    m = MarketService(clock, config)
    m.fund(ADMIN, "tenant1", 1_000_000_000)
    for name in ("p1", "p2"):
        m.register_provider(name, f"https://{name}", {"region": "eu"}, capacity(prefix=name))
    return m


def bid(
    market: MarketService, group_all: tuple[str, ...] = (), group_any: tuple[str, ...] = ()
) -> str:
    order_id = f"{deploy(market, group=signed_group(group_all, group_any))}/1/1"
    try:
        market.place_bid("p1", order_id, 1_000_000)
    except Ineligible as exc:
        return str(exc)
    assert market.get_bid(f"{order_id}/p1").state == BidState.OPEN
    return ""


def test_any_of_needs_one_trusted_signature_of_every_required_attribute(
    market: MarketService,
) -> None:
    assert "any of auditors" in bid(market, group_any=(AUDITOR,))
    market.sign_attributes(OTHER, "p1", {"region": "eu"}, 1_000_000 + DAY)
    assert bid(market, group_any=(AUDITOR, OTHER)) == ""
    assert "any of auditors" in bid(market, group_any=(AUDITOR,))  # OTHER is not listed


def test_all_of_needs_every_listed_auditor(market: MarketService) -> None:
    market.sign_attributes(AUDITOR, "p1", {"region": "eu"}, 1_000_000 + DAY)
    reason = bid(market, group_all=(AUDITOR, OTHER))
    assert f"signature from auditor {OTHER}" in reason
    market.sign_attributes(OTHER, "p1", {"region": "eu"}, 1_000_000 + DAY)
    assert bid(market, group_all=(AUDITOR, OTHER)) == ""


def test_signing_another_value_does_not_satisfy(market: MarketService) -> None:
    market.sign_attributes(AUDITOR, "p1", {"region": "us"}, 1_000_000 + DAY)
    assert "any of auditors" in bid(market, group_any=(AUDITOR,))


def test_expiry_is_on_the_markets_clock(market: MarketService, clock: ManualClock) -> None:
    market.sign_attributes(AUDITOR, "p1", {"region": "eu"}, 1_000_000 + DAY)
    assert bid(market, group_any=(AUDITOR,)) == ""
    clock.advance(DAY - 1)
    market.heartbeat("p1", [])
    assert bid(market, group_any=(AUDITOR,)) == ""
    clock.advance(1)  # expires_at is exclusive
    assert "any of auditors" in bid(market, group_any=(AUDITOR,))


def test_an_expired_or_far_future_expiry_is_refused(market: MarketService) -> None:
    with pytest.raises(InvalidArgument, match="already expired"):
        market.sign_attributes(AUDITOR, "p1", {"region": "eu"}, 1_000_000)
    with pytest.raises(InvalidArgument, match="at most"):
        market.sign_attributes(AUDITOR, "p1", {"region": "eu"}, 1_000_000 + 6 * 365 * DAY)


def test_revoked_does_not_satisfy(market: MarketService) -> None:
    market.sign_attributes(AUDITOR, "p1", {"region": "eu", "tier": "1"}, 1_000_000 + DAY)
    market.revoke_attributes(AUDITOR, "p1", ["region"])
    assert "any of auditors" in bid(market, group_any=(AUDITOR,))
    assert market.attestations.signed_for("p1", 1_000_000) == {
        AUDITOR: {"tier": "1"},
        AKASH_AUDITOR: {"tier": "1"},
    }
    with pytest.raises(NotFound):
        market.revoke_attributes(OTHER, "p1", [])


def test_untrusted_auditor_is_refused_and_never_counts(market: MarketService) -> None:
    with pytest.raises(PermissionDenied, match="not an auditor this marketplace trusts"):
        market.sign_attributes(STRANGER, "p1", {"region": "eu"}, 1_000_000 + DAY)
    # one stored while trusted stops counting once the operator no longer trusts its signer
    book = AttestationBook(AuditorTrust(frozenset({STRANGER})))
    book.sign("p1", STRANGER, {"region": "eu"}, 0, DAY)
    later = AttestationBook(AuditorTrust(frozenset({AUDITOR})))
    later.restore(book.of_provider("p1"))
    assert later.signed_for("p1", 1) == {}


def test_an_auditor_signs_a_bounded_number_of_attributes_per_provider(
    market: MarketService,
) -> None:
    expires = 1_000_000 + DAY
    market.sign_attributes(AUDITOR, "p1", {f"k{i}": "v" for i in range(60)}, expires)
    with pytest.raises(InvalidArgument, match="at most 64 attributes"):
        market.sign_attributes(AUDITOR, "p1", {f"x{i}": "v" for i in range(5)}, expires)
    market.sign_attributes(AUDITOR, "p1", {"k1": "re-signed"}, expires)  # replaces: no growth
    market.sign_attributes(OTHER, "p1", {f"x{i}": "v" for i in range(5)}, expires)


def test_unregistered_provider_is_not_attested(market: MarketService) -> None:
    with pytest.raises(NotFound):
        market.sign_attributes(AUDITOR, "nobody", {"region": "eu"}, 1_000_000 + DAY)


def test_the_foreign_auditor_real_sdls_name_is_an_alias(market: MarketService) -> None:
    assert "any of auditors" in bid(market, group_any=(AKASH_AUDITOR,))
    market.sign_attributes(AUDITOR, "p1", {"region": "eu"}, 1_000_000 + DAY)
    assert bid(market, group_any=(AKASH_AUDITOR,)) == ""
    assert bid(market, group_all=(AKASH_AUDITOR,)) == ""


def test_an_alias_does_not_lend_another_auditors_signature(market: MarketService) -> None:
    market.sign_attributes(OTHER, "p1", {"region": "eu"}, 1_000_000 + DAY)
    assert "any of auditors" in bid(market, group_any=(AKASH_AUDITOR,))


def test_resigning_replaces_the_earlier_value(market: MarketService) -> None:
    market.sign_attributes(AUDITOR, "p1", {"region": "us"}, 1_000_000 + DAY)
    market.sign_attributes(AUDITOR, "p1", {"region": "eu"}, 1_000_000 + DAY)
    assert [a.value for a in market.attestations.of_provider("p1")] == ["eu"]
    assert len(market.attestations.take_changed()) == 2


def test_trust_and_alias_settings_are_checked() -> None:
    assert parse_alias(f"{AKASH_AUDITOR}={AUDITOR}") == (AKASH_AUDITOR, AUDITOR)
    with pytest.raises(InvalidArgument, match="FOREIGN=LOCAL"):
        parse_alias(AKASH_AUDITOR)
    with pytest.raises(InvalidArgument, match="not an account address"):
        AuditorTrust(frozenset({"akash1xyz"}))
    with pytest.raises(InvalidArgument, match="two auditors"):
        AuditorTrust(aliases=((AKASH_AUDITOR, AUDITOR), (AKASH_AUDITOR, OTHER)))
    trust = AuditorTrust(aliases=((AKASH_AUDITOR, AUDITOR),))
    assert trust.trusts(AUDITOR) and trust.trusted == (AUDITOR,)
    assert trust.names_of(AUDITOR) == (AUDITOR, AKASH_AUDITOR)


def test_a_placement_without_signed_by_ignores_attestations(market: MarketService) -> None:
    assert bid(market) == ""


# --- the SDL corpus: real signedBy placements against a provider the aliased auditor signed ----


def _signed_by_groups() -> list[tuple[str, GroupSpec]]:
    found = []
    for path in sorted(CORPUS_SDL.iterdir()):
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            manifest = parse_manifest(path.read_bytes(), path.name)
        except ManifestError:
            continue  # refused with its reason (test_manifest_corpus)
        for group in manifest.groups:
            if group.requirements.signed_by_all_of or group.requirements.signed_by_any_of:
                found.append((path.name, group))
    return found


def _matching_files(
    groups: list[tuple[str, GroupSpec]], provider: dict[str, str], book: AttestationBook
) -> set[str]:
    audited = book.signed_for("p1", 0)
    failing = {
        name
        for name, group in groups
        if placement_mismatches(group.requirements, provider, audited)
    }
    return {name for name, _ in groups} - failing


def test_corpus_sdls_that_need_signed_by_match_a_provider_the_aliased_auditor_signed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    groups = _signed_by_groups()
    files = {name for name, _ in groups}
    named = {a for _, g in groups for a in (*g.requirements.signed_by_any_of,)}
    assert AKASH_AUDITOR in named and len(files) >= 40
    typical = {"host": "akash", "region": "eu"}
    chia = {**typical, "chia-plotting": "true"}

    without_alias = AttestationBook(AuditorTrust(frozenset({AUDITOR})))
    without_alias.sign("p1", AUDITOR, typical, 0, DAY)
    before = _matching_files(groups, typical, without_alias)

    book = AttestationBook(AuditorTrust(aliases=((AKASH_AUDITOR, AUDITOR),)))
    book.sign("p1", AUDITOR, typical, 0, DAY)
    after = _matching_files(groups, typical, book)
    book.sign("p1", AUDITOR, chia, 0, DAY)
    after_chia = _matching_files(groups, chia, book)

    with capsys.disabled():
        print(
            f"\nsignedBy in the SDL corpus: {len(files)} files need it; they match a provider "
            f"signed by the local auditor: without the alias {len(before)}, with "
            f"--auditor-alias {AKASH_AUDITOR}=LOCAL {len(after)} (host=akash signed), "
            f"{len(after_chia)} (host=akash and chia-plotting=true signed)"
        )
    assert before == set()
    assert after_chia == files
    assert len(after) >= len(files) - sum(
        1 for _, g in groups if ("chia-plotting", "true") in g.requirements.attributes
    )
