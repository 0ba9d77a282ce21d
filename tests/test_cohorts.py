"""Cohorts of published factor versions: overlapping scopes, the differencing rule, and cohort sizes in the API."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from asgi_client import in_process_client
from example_round import example_flow_uuid, example_spec
from fastapi import FastAPI

from aggregator import factors_api
from aggregator.cohorts import (
    cohort_conflict,
    contributing_members,
    members_of_nodes,
    record_cohort,
    regions_overlap,
    scopes_overlap,
)
from aggregator.errors import Conflict, NotFound
from aggregator.repository import StoreFactorRepository, document_bytes, document_hash
from aggregator.store import ContributionRow, FactorRow, MemberRow, RoundRow, Store, open_store
from keys import identity
from protocols.spec import Product, ReferencePeriod, RoundSpec, sign_spec

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = identity.generate_identity()
YEAR_2024 = ReferencePeriod(start=date(2024, 1, 1), end=date(2024, 12, 31))
FIRMS = "abcdefg"
CLINKER = Product(name_zh="水泥熟料", name_en="Cement clinker", classification_code="3011",
                  reference_flow=example_flow_uuid("cement-clinker"))  # fmt: skip


def spec(round_id: str, region: str = "CN", period: ReferencePeriod = YEAR_2024, **fields: Any) -> RoundSpec:
    return example_spec(round_id=round_id, region=region, reference_period=period, **fields)


def seeded(url: str) -> Store:
    """A store at ``url`` with the firms ``a`` to ``g`` enrolled."""
    s = open_store(url)
    with s.transaction() as tx:
        for firm in FIRMS:
            tx.add_member(MemberRow(fingerprint=firm, org_name_zh=firm, org_name_en=firm, identity_public_key=f"k-{firm}",
                                    supernode_public_key="sn", created_at=T0, updated_at=T0))  # fmt: skip
    return s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = seeded(f"sqlite:///{tmp_path / 'agg.db'}")
    yield s
    s.close()


def ids(store: Store, firms: str) -> list[str]:
    """The member ids (``member.id`` as strings) of the firms named by letters."""
    with store.transaction() as tx:
        by_name = {m.fingerprint: m.id for m in tx.list_members()}
    return [str(by_name[f]) for f in firms]


def add_round(store: Store, s: RoundSpec) -> None:
    with store.transaction() as tx:
        tx.add_round(RoundRow(id=s.round_id, protocol=s.protocol, signed_spec=sign_spec(s, KEY).model_dump_json(),
                              spec_hash="h", state="published", created_at=T0, updated_at=T0))  # fmt: skip


def publish(store: Store, s: RoundSpec, firms: str, revision: int = 1) -> str | None:
    """What the publishing transaction does: check the cohort, and record it unless refused."""
    members = ids(store, firms)
    add_round(store, s)
    factor_id = f"factor-{s.region.lower()}-{s.product.name_en[:5].lower()}"
    with store.transaction() as tx:
        conflict = cohort_conflict(tx, s, members)
        if conflict is None:
            record_cohort(tx, factor_id, revision, s.round_id, members, now=T0)
    return conflict


# -- scopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [("CN", "CN", True), ("CN", "CN-YN", True), ("CN-YN", "CN", True), ("CN-YN", "CN-YN-KM", True),
     ("CN", "CN-YN-KM", True), ("cn-yn", "CN-YN", True), ("CN-YN", "CN-SC", False), ("CN-YN-KM", "CN-YN-QJ", False),
     ("CN-YN-KM", "CN-SC", False), ("CN", "JP", False)],
)  # fmt: skip
def test_regions_overlap_when_one_contains_the_other_by_iso_3166_parts(a: str, b: str, overlap: bool) -> None:
    assert regions_overlap(a, b) is overlap


def test_scopes_overlap_for_the_same_product_nested_regions_and_overlapping_periods() -> None:
    base = spec("r1")

    assert scopes_overlap(base, spec("r2"))
    assert scopes_overlap(base, spec("r2", region="CN-YN")) and scopes_overlap(spec("r2", region="CN-YN"), base)
    assert not scopes_overlap(spec("r1", region="CN-YN"), spec("r2", region="CN-SC"))
    half = ReferencePeriod(start=date(2024, 7, 1), end=date(2025, 6, 30))
    assert scopes_overlap(base, spec("r2", period=half))
    last_day = ReferencePeriod(start=date(2024, 12, 31), end=date(2025, 12, 31))
    assert scopes_overlap(base, spec("r2", period=last_day))  # periods include both ends
    year_2025 = ReferencePeriod(start=date(2025, 1, 1), end=date(2025, 12, 31))
    assert not scopes_overlap(base, spec("r2", period=year_2025))
    assert not scopes_overlap(base, spec("r2", product=CLINKER))


# -- the differencing rule ---------------------------------------------------------------------


def test_a_version_from_one_firm_fewer_is_refused_naming_the_published_version_and_the_difference(
    store: Store,
) -> None:
    vectors = {f: [10 * i + n for i in range(5)] for n, f in enumerate(FIRMS)}
    four, three = ([sum(vectors[f][i] for f in firms) for i in range(5)] for firms in ("abcd", "abc"))
    assert [x - y for x, y in zip(four, three, strict=True)] == vectors["d"]  # what the refusal prevents
    assert publish(store, spec("cn-al-2024"), "abcd") is None

    conflict = publish(store, spec("cn-al-2024-rerun"), "abc", revision=2)

    assert conflict is not None
    assert "factor 'factor-cn-prima' revision 1" in conflict and "cohort of 4 firm(s)" in conflict
    assert "differs from it by 1 firm(s), fewer than 3" in conflict
    assert "the difference of the two publications would be the values of 1 firm(s)" in conflict
    with store.transaction() as tx:  # nothing of the refused version was recorded
        assert tx.cohort_sizes("factor-cn-prima") == {1: 4}


def test_the_rule_holds_on_postgres(fresh_pg_database: str) -> None:
    pg = seeded(fresh_pg_database)
    try:
        assert publish(pg, spec("cn"), "abcd") is None
        assert publish(pg, spec("yn", region="CN-YN"), "abc") is not None
        assert publish(pg, spec("cn-again"), "abcd", revision=2) is None
    finally:
        pg.close()


def test_a_firm_re_enrolled_under_a_new_member_id_is_the_same_firm(store: Store) -> None:
    with store.transaction() as tx:
        for m in tx.list_members():
            m.uscc = f"91530000MA6K{ord(m.fingerprint):06d}"
            tx.session.add(m)
        again = tx.add_member(MemberRow(fingerprint="d2", org_name_zh="d", org_name_en="d", identity_public_key="k-d2",
                                        supernode_public_key="sn", uscc="91530000MA6K000100", created_at=T0,
                                        updated_at=T0))  # fmt: skip
        assert again.uscc == f"91530000MA6K{ord('d'):06d}"
    assert publish(store, spec("r1"), "abcde") is None
    cohort = [*ids(store, "abc"), str(again.id)]

    with store.transaction() as tx:  # {a,b,c,d'} against {a,b,c,d,e}: by member id 3 apart, by firm only e
        conflict = cohort_conflict(tx, spec("r2"), cohort)

    assert conflict is not None and "differs from it by 1 firm(s)" in conflict


def test_a_re_run_over_the_same_firms_is_allowed(store: Store) -> None:
    assert publish(store, spec("r1"), "abc") is None

    assert publish(store, spec("r2"), "abc", revision=2) is None


def test_disjoint_cohorts_are_allowed(store: Store) -> None:
    assert publish(store, spec("r1"), "abc") is None

    assert publish(store, spec("r2"), "def", revision=2) is None  # difference 6 >= 3


def test_a_cohort_differing_by_min_participants_firms_is_allowed(store: Store) -> None:
    assert publish(store, spec("r1"), "abcdef") is None

    assert publish(store, spec("r2"), "abc", revision=2) is None  # difference 3


def test_a_subregion_factor_one_firm_short_of_the_national_one_is_refused(store: Store) -> None:
    assert publish(store, spec("cn", region="CN"), "abcd") is None

    conflict = publish(store, spec("yn", region="CN-YN"), "abc")

    assert conflict is not None and "factor 'factor-cn-prima' revision 1" in conflict and "by 1 firm(s)" in conflict


def test_sibling_regions_do_not_conflict(store: Store) -> None:
    assert publish(store, spec("yn", region="CN-YN"), "abcd") is None

    assert publish(store, spec("sc", region="CN-SC"), "abc") is None


def test_other_periods_and_products_do_not_conflict(store: Store) -> None:
    assert publish(store, spec("r2024"), "abcd") is None

    year_2025 = ReferencePeriod(start=date(2025, 1, 1), end=date(2025, 12, 31))
    assert publish(store, spec("r2025", period=year_2025), "abc", revision=2) is None
    assert publish(store, spec("clinker", product=CLINKER), "abc") is None


def test_the_larger_min_participants_of_the_two_rounds_applies(store: Store) -> None:
    assert publish(store, spec("r1", min_participants=5), "abcdefg") is None

    conflict = publish(store, spec("r2", min_participants=3), "abc", revision=2)

    assert conflict is not None and "differs from it by 4 firm(s), fewer than 5" in conflict


def test_three_versions_that_differ_pairwise_by_three_but_combine_to_one_firm_are_refused(store: Store) -> None:
    # The attack: with the totals of v1, v2 and v3 public, v3 - (v1 - v2) is firm g's vector, exactly.
    rng = random.Random(3)
    vectors = {f: [rng.randrange(10**9) for _ in range(8)] for f in FIRMS}

    def total(firms: str) -> list[int]:
        return [sum(vectors[f][i] for f in firms) for i in range(8)]

    t1, t2, t3 = total("abcdef"), total("abc"), total("defg")
    assert [c - (a - b) for a, b, c in zip(t1, t2, t3, strict=True)] == vectors["g"]
    # The defence: the third version is refused, although every pair differs by at least 3 firms.
    assert publish(store, spec("v1"), "abcdef") is None
    assert publish(store, spec("v2"), "abc", revision=2) is None

    conflict = publish(store, spec("v3"), "defg", revision=3)

    assert conflict is not None
    assert "would determine the values of 1 firm(s), fewer than 3" in conflict
    assert "revision 1" in conflict and "revision 2" in conflict


def test_a_cohort_spanned_by_published_ones_reveals_nothing_new(store: Store) -> None:
    assert publish(store, spec("v1"), "abc") is None
    assert publish(store, spec("v2"), "def", revision=2) is None

    assert publish(store, spec("v3"), "abcdef", revision=3) is None  # v1 + v2: no new sum


def test_the_check_repeated_after_recording_skips_the_rounds_own_version(store: Store) -> None:
    s = spec("r1")
    assert publish(store, s, "abcd") is None

    members = ids(store, "abc")
    with store.transaction() as tx:
        assert cohort_conflict(tx, s, members) is None


# -- recording ---------------------------------------------------------------------------------


def test_record_cohort_stores_sorted_member_ids_and_the_rounds_scope(store: Store) -> None:
    s = spec("yn", region="CN-YN")
    assert publish(store, s, "dcba") is None

    expected = sorted(ids(store, "abcd"), key=int)
    with store.transaction() as tx:
        (row,) = tx.list_factor_cohorts(example_flow_uuid("primary-aluminium-ingot"))
        assert json.loads(row.members) == expected and row.size == 4
        assert (row.region, row.period_start, row.period_end, row.min_participants) == (
            "CN-YN", date(2024, 1, 1), date(2024, 12, 31), 3)  # fmt: skip
        assert row.created_at == T0
        assert tx.list_factor_cohorts(CLINKER.reference_flow) == []


@pytest.mark.parametrize(
    ("members", "error", "match"),
    [(["1", "1", "2"], ValueError, "appear more than once"), (["1", "x"], ValueError, "member id"),
     (["1", "999"], NotFound, "member 999"), ([], ValueError, "at least one member")],
)  # fmt: skip
def test_record_cohort_refuses_a_malformed_cohort(
    store: Store, members: Sequence[str], error: type[Exception], match: str
) -> None:
    add_round(store, spec("r1"))

    with pytest.raises(error, match=match), store.transaction() as tx:
        record_cohort(tx, "f", 1, "r1", members, now=T0)
    with store.transaction() as tx:
        assert tx.list_factor_cohorts() == []


def test_a_versions_cohort_is_recorded_once(store: Store) -> None:
    assert publish(store, spec("r1"), "abc") is None

    members = ids(store, "abcd")
    with pytest.raises(Conflict, match="already has a recorded cohort"), store.transaction() as tx:
        record_cohort(tx, "factor-cn-prima", 1, "r1", members, now=T0)


def test_a_rounds_cohort_is_its_contributors_or_the_members_of_its_contributing_supernodes(store: Store) -> None:
    a, b, c = (int(m) for m in ids(store, "abc"))
    add_round(store, spec("p1"))
    with store.transaction() as tx:
        for m in (c, a):
            tx.add_contribution(ContributionRow(round_id="p1", member_id=m, contribution_hash=f"h{m}", body="{}",
                                                received_at=T0))  # fmt: skip
        for m, node in ((a, "18446744073709551557"), (b, "7"), (c, "9")):
            tx.set_member_status(m, "approved", T0, flower_node_id=node)

    with store.transaction() as tx:
        assert contributing_members(tx, "p1") == [str(a), str(c)]
        assert members_of_nodes(tx, [9, "18446744073709551557"]) == [str(a), str(c)]
        with pytest.raises(ValueError, match="node id.* 8 belong to no member"):
            members_of_nodes(tx, [7, 8])


# -- the public API shows each version's cohort size, never its members -------------------------


def test_versions_endpoint_lists_the_cohort_size_of_every_version_and_no_member(store: Store) -> None:
    from pact_test_app import FACTORS  # factors built from real round statistics

    v1, v2 = FACTORS[0], FACTORS[1]
    assert v1.factor_id == v2.factor_id
    with store.transaction() as tx:
        for n, f in enumerate((v1, v2), start=1):
            tx.add_round(RoundRow(id=f.provenance.round_id, protocol="secagg", signed_spec="{}", spec_hash="h",
                                  state="published", created_at=T0, updated_at=T0))  # fmt: skip
            tx.add_factor(FactorRow(factor_id=f.factor_id, version=f.revision, round_id=f.provenance.round_id,
                                    document=document_bytes(f).decode(), document_hash=document_hash(f), log_seq=n,
                                    created_at=T0))  # fmt: skip
    # Version 1 was published before cohorts were recorded; version 2 has its cohort.
    add_round(store, spec("cohort-spec"))
    members = ids(store, "abcd")
    with store.transaction() as tx:
        record_cohort(tx, v2.factor_id, v2.revision, "cohort-spec", members, now=T0)
    app = FastAPI()
    app.include_router(factors_api.router_factory(StoreFactorRepository(store)))

    with in_process_client(app) as client:
        response = client.get(f"/api/v1/factors/{v2.factor_id}/versions")

    assert response.status_code == 200, response.text
    rows = response.json()
    assert [(r["revision"], r["cohort_size"]) for r in rows] == [(1, None), (2, 4)]
    assert all(set(r) == set(factors_api.FactorVersion.model_fields) for r in rows)  # sizes, no member ids
