"""Round logic in-process: all-or-nothing publication, no double decision, settings that refuse placeholders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from example_round import example_firms, example_spec
from pydantic import ValidationError
from stage_runner import run_in_clear, stage_runner, stage_sum

from aggregator import round_outcome, rounds
from aggregator.errors import InvalidTransition, SpecRejected, Unavailable, WindowClosed
from aggregator.settings import AggregatorSettings
from aggregator.store import MemberRow, Store, open_store
from keys import identity
from protocols.contribution import build_contribution
from protocols.disclosure import Stage, StagedRound
from protocols.spec import RoundSpec

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def context(store: Store, runner: rounds.SecAggRunner | None = None) -> rounds.RoundContext:
    # ``spawn`` runs the secagg work inline, so a test sees the round's end when run_round returns.
    return rounds.RoundContext(
        store=store, key=identity.generate_identity(), runner=runner, clock=lambda: NOW, spawn=lambda work: work()
    )


def spec(round_id: str = "r1", **overrides: object) -> RoundSpec:
    return example_spec(round_id=round_id, deadline=NOW + timedelta(days=1), **overrides)  # type: ignore[arg-type]


def example_rows(s: RoundSpec) -> dict[str, list[int]]:
    return {f.name: build_contribution(s, f.values, f.weight, f.footprint_by_gas).ints for f in example_firms(s)}


def summing_runner(s: RoundSpec) -> rounds.SecAggRunner:
    """Every stage summed in the clear over the four example smelters, one per roster member."""
    rows = list(example_rows(s).values())
    return stage_runner(lambda _spec, roster: {m.identity_public_key: r for m, r in zip(roster, rows, strict=False)})


def enroll_one(store: Store, count: int = 4) -> None:
    """Approved members (four: one per example smelter the runner sums)."""
    with store.transaction() as tx:
        for i in range(count):
            tx.add_member(MemberRow(fingerprint=f"aa{i}", org_name_zh="甲", org_name_en=f"A{i}",
                                    identity_public_key=f"k{i}", supernode_public_key=f"sn{i}", status="approved",
                                    created_at=NOW, updated_at=NOW))  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'agg.db'}")


def test_a_publication_that_fails_half_way_stores_nothing_of_it(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s = spec()
    ctx = context(store, summing_runner(s))
    enroll_one(store)
    rounds.create_round(ctx, s)
    rounds.open_round(ctx, "r1")

    def broken(*args: object, **kwargs: object) -> None:
        from protocols.factor import FactorError

        raise FactorError("simulated failure while building the factor")

    monkeypatch.setattr(round_outcome, "build_factor", broken)
    rounds.run_round(ctx, "r1")

    result = rounds.get_round(ctx, "r1")
    assert result.state == "aborted" and "simulated failure" in (result.decision or "")
    with store.transaction() as tx:
        assert tx.get_aggregate("r1") is None and tx.list_factors() == []
        # each disclosure stage was logged as it was decided; the publication left nothing
        assert [e.entry_type for e in tx.list_log()] == ["spec_published", *["stage"] * 4, "abort"]


def test_a_round_is_decided_once_even_when_the_result_arrives_twice(store: Store) -> None:
    s = spec()
    runner = summing_runner(s)
    ctx = context(store, runner)
    enroll_one(store)
    rounds.create_round(ctx, s)
    rounds.open_round(ctx, "r1")
    rounds.run_round(ctx, "r1")
    assert rounds.get_round(ctx, "r1").state == "published"

    staged = run_in_clear(s, {f"k{i}": row for i, row in enumerate(example_rows(s).values())})
    round_outcome.conclude_staged(ctx, "r1", staged, [])  # a late duplicate of the result
    with store.transaction() as tx:
        assert len(tx.factor_versions(tx.list_factors()[0].factor_id)) == 1
        assert [e.entry_type for e in tx.list_log()] == ["spec_published", *["stage"] * 4, "aggregate", "publication"]
    with pytest.raises(InvalidTransition):
        rounds.cancel_round(ctx, "r1")


def test_round_creation_refuses_what_could_not_be_published(store: Store) -> None:
    ctx = context(store)
    with pytest.raises(SpecRejected, match="footprint_weighted_mean"):
        rounds.create_round(ctx, spec(statistics=["mean"]))
    with pytest.raises(Unavailable, match="PCF_AGG_PAILLIER_PUBLIC_KEY"):
        rounds.create_round(ctx, spec(protocol="paillier", paillier={"key_bits": 2048, "key_id": "0" * 64}))
    late = example_spec(round_id="late", deadline=NOW - timedelta(seconds=1))
    rounds.create_round(ctx, late)
    with pytest.raises(WindowClosed):
        rounds.open_round(ctx, "late")
    rounds.create_round(ctx, spec("no-runner"))
    rounds.open_round(ctx, "no-runner")
    with pytest.raises(Unavailable):
        rounds.run_round(ctx, "no-runner")
    assert rounds.get_round(ctx, "no-runner").state == "open"  # refused before any transition


def test_settings_refuse_placeholder_secrets_outside_development(tmp_path: Path) -> None:
    good = {"admin_token": "a" * 32, "pact_client_secret": "b" * 32, "home": tmp_path}
    settings = AggregatorSettings(**good)  # type: ignore[arg-type]
    assert settings.database_url == f"sqlite:///{tmp_path / 'aggregator.db'}"
    assert settings.identity_key_file == tmp_path / "identity.key"
    for field, value in (("admin_token", "changeme"), ("pact_client_secret", "short"), ("admin_token", "CHANGEME")):
        with pytest.raises(ValidationError, match="PCF_AGG_"):
            AggregatorSettings(**(good | {field: value}))  # type: ignore[arg-type]
    dev = AggregatorSettings(**(good | {"admin_token": "changeme", "environment": "development"}))  # type: ignore[arg-type]
    assert dev.admin_token.get_secret_value() == "changeme"
    with pytest.raises(ValidationError):
        AggregatorSettings(pact_client_secret="b" * 32, home=tmp_path)  # type: ignore[call-arg,arg-type]


def test_settings_come_from_the_pcf_agg_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCF_AGG_ADMIN_TOKEN", "z" * 24)
    monkeypatch.setenv("PCF_AGG_PACT_CLIENT_SECRET", "y" * 24)
    monkeypatch.setenv("PCF_AGG_DB_URL", "postgresql://pcf@127.0.0.1:5432/agg")
    monkeypatch.setenv("PCF_AGG_HOME", str(tmp_path))
    settings = AggregatorSettings()  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://pcf@127.0.0.1:5432/agg"
    assert settings.home == tmp_path and settings.national_db_push_url is None


def test_each_protocol_has_one_implementation_chosen_by_name() -> None:
    from aggregator.round_paillier import PaillierProtocol
    from aggregator.round_secagg import SecaggProtocol

    assert isinstance(rounds.protocol_for("secagg"), SecaggProtocol)
    assert isinstance(rounds.protocol_for("paillier"), PaillierProtocol)
    with pytest.raises(SpecRejected, match="accepted are paillier, secagg"):
        rounds.protocol_for("plaintext")


def test_a_secagg_round_takes_no_posted_contribution_and_has_no_custodians(store: Store) -> None:
    from aggregator.errors import Conflict

    s = spec()
    ctx = context(store, summing_runner(s))
    enroll_one(store)
    rounds.create_round(ctx, s)
    rounds.open_round(ctx, "r1")
    with store.transaction() as tx:
        member = tx.list_members("approved")[0]

    with pytest.raises(Conflict, match="only to 'paillier' rounds"):
        rounds.submit_contribution(ctx, "r1", member, b"{}", "POST", "/p", "t", "sig")
    with pytest.raises(Conflict, match="only 'paillier' rounds are decrypted"):
        rounds.decryption_request(ctx, "r1")
    with pytest.raises(Conflict, match="only 'paillier' rounds are decrypted"):
        rounds.submit_partial(ctx, "r1", b"{}")
    assert rounds.custodian_key_for(ctx, "r1")("aa") is None
    assert rounds.get_round(ctx, "r1").contributions == 0


def test_a_stage_is_recorded_and_its_state_saved_in_one_transaction(store: Store) -> None:
    # Prepare: an open round whose screen sum arrives; saving the round's state fails (a crash)
    s = spec()
    ctx = context(store)
    enroll_one(store)
    rounds.create_round(ctx, s)
    rounds.open_round(ctx, "r1")
    with store.transaction() as tx:
        tx.transition_round("r1", ["open"], "collecting", NOW)
    rows = {f"k{i}": row for i, row in enumerate(example_rows(s).values())}
    staged = StagedRound(s)
    summed = stage_sum(s, rows, Stage.SCREEN, staged, ctx.key)

    def crash(tx: object, recorded: StagedRound, decided: object) -> None:
        raise RuntimeError("the process died while saving the round's state")

    # Execute
    with pytest.raises(RuntimeError, match="died"):
        round_outcome.record_stage(ctx, "r1", staged, Stage.SCREEN, summed, list(rows), persist=crash)

    # Assert: the stage's log entry went with it; recorded again later, it is logged once
    with store.transaction() as tx:
        assert [e.entry_type for e in tx.list_log()] == ["spec_published"]
    decision = round_outcome.record_stage(ctx, "r1", StagedRound(s), Stage.SCREEN, summed, list(rows))
    assert decision.proceed
    with store.transaction() as tx:
        assert [e.entry_type for e in tx.list_log()] == ["spec_published", "stage"]
