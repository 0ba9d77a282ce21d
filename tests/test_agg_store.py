"""The aggregator store's contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import translog
from aggregator.errors import (
    Conflict,
    DuplicateContribution,
    InvalidTransition,
    NotFound,
)
from aggregator.store import (
    ContributionRow,
    DeliveryRow,
    FactorCohortRow,
    FactorRow,
    MemberRow,
    RoundRow,
    Store,
    normalize_url,
    open_store,
)
from keys import identity

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def member(fp: str) -> MemberRow:
    return MemberRow(
        fingerprint=fp,
        org_name_zh="某铝业",
        org_name_en="Some Aluminium",
        identity_public_key=f"key-{fp}",
        supernode_public_key="sn",
        created_at=T0,
        updated_at=T0,
    )


def round_row(round_id: str, state: str = "draft") -> RoundRow:
    return RoundRow(id=round_id, protocol="paillier", signed_spec="{}", spec_hash="h", state=state, created_at=T0, updated_at=T0)


class StoreContract:
    """Behaviour every backend must show; subclasses provide the ``store`` fixture."""

    def test_rows_round_trip_with_timezone_aware_times(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.add_member(member("aa"))
        with store.transaction() as tx:
            (m,) = tx.list_members()
            assert m.org_name_zh == "某铝业" and m.status == "pending"
            assert m.created_at == T0 and m.created_at.tzinfo is not None
            assert tx.find_member("aa") is not None and tx.find_member("zz") is None

    def test_an_enrolled_key_cannot_enrol_twice(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.add_member(member("aa"))
        with pytest.raises(Conflict), store.transaction() as tx:
            tx.add_member(member("aa"))
        with store.transaction() as tx:
            assert len(tx.list_members()) == 1

    def test_a_failing_unit_of_work_leaves_nothing_behind(self, store: Store) -> None:
        key = identity.generate_identity()
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.add_member(member("aa"))
            tx.add_round(round_row("r1"))
            translog.append(tx, key, translog.ABORT, {"round_id": "r1", "reason": "x"}, T0)
            raise RuntimeError("crash half-way")
        with store.transaction() as tx:
            assert tx.list_members() == [] and tx.list_rounds() == [] and tx.last_log_entry() is None

    def test_state_transition_is_a_compare_and_set(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.add_round(round_row("r1", "open"))
        with store.transaction() as tx:
            row = tx.transition_round("r1", ["open", "collecting"], "aggregating", T0 + timedelta(hours=1))
            assert row.state == "aggregating" and row.updated_at == T0 + timedelta(hours=1)
        with pytest.raises(InvalidTransition), store.transaction() as tx:
            tx.transition_round("r1", ["open", "collecting"], "aggregating", T0)
        with pytest.raises(NotFound), store.transaction() as tx:
            tx.transition_round("nope", ["open"], "collecting", T0)
        with store.transaction() as tx:
            row = tx.transition_round("r1", ["aggregating"], "suppressed", T0, decision="dominance")
            assert (row.state, row.decision) == ("suppressed", "dominance")
            assert [r.id for r in tx.list_rounds(["suppressed"])] == ["r1"] and tx.list_rounds(["open"]) == []

    def test_a_member_is_counted_once_per_round(self, store: Store) -> None:
        with store.transaction() as tx:
            mid = tx.add_member(member("aa")).id
            tx.add_round(round_row("r1", "open"))
            assert mid is not None
            tx.add_contribution(ContributionRow(round_id="r1", member_id=mid, contribution_hash="h1", body="{}", received_at=T0))
        with pytest.raises(DuplicateContribution), store.transaction() as tx:
            tx.add_contribution(ContributionRow(round_id="r1", member_id=mid, contribution_hash="h2", body="{}", received_at=T0))
        with store.transaction() as tx:
            assert [c.contribution_hash for c in tx.list_contributions("r1")] == ["h1"]
            assert tx.count_contributions("r1") == 1 and tx.count_partials("r1") == 0

    def test_an_aggregate_keeps_big_sums_and_is_stored_once(self, store: Store) -> None:
        summed = [2**70, -(2**65), 0, 7]
        with store.transaction() as tx:
            tx.add_round(round_row("r1", "aggregating"))
            tx.put_aggregate("r1", summed, 4, T0, histogram_salt="ab")
        with pytest.raises(Conflict), store.transaction() as tx:
            tx.put_aggregate("r1", [1, 2, 3, 4], 5, T0)
        with store.transaction() as tx:
            assert tx.get_aggregate("r1") == (summed, 4)
            assert tx.get_aggregate("r2") is None

    def test_factor_versions_are_immutable_and_listed_in_order(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.add_round(round_row("r1", "published"))
            for v in (1, 2):
                assert tx.next_factor_version("f") == v
                tx.add_factor(FactorRow(factor_id="f", version=v, round_id="r1", document=json.dumps({"v": v}),
                                        document_hash=f"h{v}", log_seq=v, created_at=T0))  # fmt: skip
            tx.add_factor(FactorRow(factor_id="g", version=1, round_id="r1", document="{}", document_hash="g1",
                                    log_seq=3, created_at=T0))  # fmt: skip
        with pytest.raises(Conflict), store.transaction() as tx:
            tx.add_factor(FactorRow(factor_id="f", version=2, round_id="r1", document="{}", document_hash="x",
                                    log_seq=9, created_at=T0))  # fmt: skip
        with store.transaction() as tx:
            latest = tx.get_factor("f")
            assert latest is not None and latest.version == 2 and latest.document_hash == "h2"
            first = tx.get_factor("f", 1)
            assert first is not None and first.document == json.dumps({"v": 1})
            assert tx.get_factor("f", 3) is None
            assert [r.version for r in tx.factor_versions("f")] == [1, 2]
            assert [(r.factor_id, r.version) for r in tx.list_factors()] == [("f", 2), ("g", 1)]
            assert len(tx.list_factors(latest_only=False)) == 3

    def test_factor_cohorts_are_written_once_and_give_sizes_by_revision(self, store: Store) -> None:
        def cohort(version: int, members: list[str], flow: str = "flow-al") -> FactorCohortRow:
            return FactorCohortRow(factor_id="f", version=version, round_id="r1", members=json.dumps(members),
                                   size=len(members), reference_flow=flow, region="CN-YN",
                                   period_start=date(2024, 1, 1), period_end=date(2024, 12, 31), min_participants=3,
                                   created_at=T0)  # fmt: skip

        with store.transaction() as tx:
            tx.add_round(round_row("r1", "published"))
            tx.add_factor_cohort(cohort(1, ["1", "2", "3", "4"]))
            tx.add_factor_cohort(cohort(2, ["1", "2", "3"], flow="flow-other"))
        with pytest.raises(Conflict, match="already has a recorded cohort"), store.transaction() as tx:
            tx.add_factor_cohort(cohort(2, ["5", "6", "7"]))
        with store.transaction() as tx:
            assert tx.cohort_sizes("f") == {1: 4, 2: 3} and tx.cohort_sizes("g") == {}
            (row,) = tx.list_factor_cohorts("flow-al")
            assert (row.version, row.period_start, row.size) == (1, date(2024, 1, 1), 4)
            assert json.loads(row.members) == ["1", "2", "3", "4"]
            assert len(tx.list_factor_cohorts()) == 2

    def test_log_entries_chain_and_any_edit_breaks_the_chain(self, store: Store) -> None:
        key = identity.generate_identity()
        with store.transaction() as tx:
            for i in range(3):
                translog.append(tx, key, translog.ABORT, {"round_id": f"r{i}", "reason": "test"}, T0 + timedelta(seconds=i))
        with store.transaction() as tx:
            entries = [translog.row_to_entry(r) for r in tx.list_log()]
            assert [e.seq for e in tx.list_log(2, 1)] == [2]
        pub = identity.public_key_b64(key)
        assert translog.verify_chain(entries, pub, {}) is None
        assert entries[1].prev_hash == entries[0].entry_hash and entries[0].prev_hash == translog.GENESIS_HASH
        edited = [entries[0], entries[1].model_copy(update={"payload": {"round_id": "rX", "reason": "test"}}), entries[2]]
        broken = translog.verify_chain(edited, pub, {})
        assert broken is not None and broken.seq == 2
        broken = translog.verify_chain([entries[0], entries[2]], pub, {})
        assert broken is not None and broken.seq == 3 and "gap" in broken.reason
        other = identity.public_key_b64(identity.generate_identity())
        broken = translog.verify_chain(entries, other, {})
        assert broken is not None and broken.seq == 1 and "signature" in broken.reason

    def test_a_request_signature_is_accepted_once_within_the_window(self, store: Store) -> None:
        window = timedelta(minutes=5)
        with store.transaction() as tx:
            assert tx.remember_request("sig", "fp", T0, window)
        with store.transaction() as tx:
            assert not tx.remember_request("sig", "fp", T0 + timedelta(minutes=1), window)
        with store.transaction() as tx:  # forgotten once older than the window (stale anyway)
            assert tx.remember_request("sig", "fp", T0 + timedelta(minutes=10), window)

    def test_a_delivery_receipt_is_replaced_per_target(self, store: Store) -> None:
        def receipt(status: str, attempts: int) -> DeliveryRow:
            return DeliveryRow(factor_id="f", version=1, url="http://x/y", idempotency_key="k", status=status,
                               attempts=attempts, status_code=503, created_at=T0, updated_at=T0)  # fmt: skip

        with store.transaction() as tx:
            tx.put_delivery(receipt("failed", 5))
        with store.transaction() as tx:
            tx.put_delivery(receipt("delivered", 2))
        with store.transaction() as tx:
            got = tx.get_delivery("f", 1, "http://x/y")
            assert got is not None and (got.status, got.attempts) == ("delivered", 2)
            assert tx.get_delivery("f", 1, "http://other") is None


    def test_reopening_keeps_every_row_and_changes_no_schema(self, store: Store) -> None:
        from aggregator import migrations

        with store.transaction() as tx:
            tx.add_member(member("aa"))
        if store.engine.url.database in (None, "", ":memory:"):
            pytest.skip("an in-memory database is not reopened")
        again = open_store(store.engine.url.render_as_string(hide_password=False))
        try:
            assert again.notes == [] and migrations.current(again.engine) == migrations.head()
            with again.transaction() as tx:
                assert [m.fingerprint for m in tx.list_members()] == ["aa"]
        finally:
            again.close()


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path / 'sub' / 'agg.db'}")
        yield s
        s.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, fresh_pg_database: str) -> Iterator[Store]:
        s = open_store(fresh_pg_database)
        assert s.dialect == "postgresql"
        yield s
        s.close()


def test_database_urls_pick_the_backend_and_unknown_schemes_are_refused() -> None:
    assert normalize_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="accepted are"):
        normalize_url("mysql://u@h/db")
