"""Attacks on what the aggregator now publishes and logs, mounted on rounds run through its real round code.

Each round is created, opened and run by ``aggregator.rounds`` with every disclosure stage summed in
the clear (``tests.stage_runner``: exactly the sums the secure protocols give). The attacker reads
only the public log and the published factor (:mod:`tests.disclosure_attacker` bounds each other
firm's contributions by linear programming over them and the round's bounds) and, as an insider,
its own data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from disclosure_attacker import (
    OUTSIDER,
    Firm,
    Insider,
    bounds_all,
    count_unknowns_equations,
    exactly_determined,
    firm_from_values,
    p_rule_disclosed,
    public_from_spec,
    slot_sums,
    solve_legacy,
)
from example_round import example_firms, example_spec
from stage_runner import stage_runner

from aggregator import rounds, translog
from aggregator.round_context import StageRun
from aggregator.store import MemberRow, Store, open_store
from keys import identity
from node.audit import audit_round, keep_context, kept_contexts
from node.store import NodeStore
from protocols.contribution import build_contribution
from protocols.disclosure import Screen, SignedStageContext, Stage, sign_context
from protocols.factor import PublishedFactor
from protocols.spec import KIND_W, KIND_WF, KIND_WX, RoundSpec, vector_layout

NOW = datetime(2025, 3, 1, tzinfo=UTC)
P = 0.10


def _spec(round_id: str, region: str = "CN") -> RoundSpec:
    return example_spec(round_id=round_id, region=region, deadline=NOW + timedelta(days=1))


def _firms(spec: RoundSpec, productions: Sequence[float]) -> list[tuple[Firm, list[int]]]:
    """Smelters with the example's per-unit values (cycled) at the given productions: the attacker's truth and the vector."""
    base = example_firms(spec)
    out = []
    for i, w in enumerate(productions):
        f = base[i % len(base)]
        ints = build_contribution(spec, f.values, w, f.footprint_by_gas).ints
        out.append((firm_from_values(spec, w, f.values, f.footprint_by_gas), ints))
    return out


class Association:
    """An aggregator (store, key) whose secure-aggregation runner sums each stage over chosen members' vectors."""

    def __init__(self, tmp_path: Path) -> None:
        self.store: Store = open_store(f"sqlite:///{tmp_path / 'aggregator.db'}")
        self.rows: dict[str, list[int]] = {}
        self.stages: list[Stage] = []
        inner = stage_runner(lambda _spec, roster: {m.identity_public_key: self.rows[m.identity_public_key]
                                                   for m in roster if m.identity_public_key in self.rows})  # fmt: skip

        def runner(spec: RoundSpec, roster: list[Any], run: StageRun) -> Any:
            self.stages.append(run.stage)
            return inner(spec, roster, run)

        self.ctx = rounds.RoundContext(store=self.store, key=identity.generate_identity(), runner=runner,
                                       clock=lambda: NOW, spawn=lambda work: work())  # fmt: skip

    def member(self, name: str) -> str:
        key = identity.public_key_b64(identity.generate_identity())
        with self.store.transaction() as tx:
            tx.add_member(MemberRow(fingerprint=name, org_name_zh=name, org_name_en=name, identity_public_key=key,
                                    supernode_public_key="sn", status="approved", created_at=NOW, updated_at=NOW))  # fmt: skip
        return key

    def run(self, spec: RoundSpec, vectors: dict[str, list[int]]) -> str:
        self.rows = vectors
        self.stages = []
        rounds.create_round(self.ctx, spec)
        rounds.open_round(self.ctx, spec.round_id)
        rounds.run_round(self.ctx, spec.round_id)
        return rounds.get_round(self.ctx, spec.round_id).state

    def log(self) -> list[dict[str, Any]]:
        with self.store.transaction() as tx:
            return [{"type": e.entry_type, "payload": json.loads(e.payload)} for e in tx.list_log()]


def published_sums(spec: RoundSpec, log: list[dict[str, Any]], round_id: str) -> tuple[int, dict[str, Fraction]]:
    """Every public byte of the round's aggregate: n and the first-moment sums it shows (slot name -> value)."""
    (agg,) = [e["payload"] for e in log if e["type"] == "aggregate" and e["payload"]["round_id"] == round_id]
    sums = {
        s.name: Fraction(int(v)) / s.scale
        for s, v in zip(vector_layout(spec), agg["summed"], strict=True)
        if v is not None and s.kind in (KIND_W, KIND_WX, KIND_WF)
    }
    return int(agg["n"]), sums


def assert_nothing_pinned(spec: RoundSpec, n: int, sums: dict[str, Fraction], firms: list[Firm], insiders: Sequence[int]) -> int:
    """No remaining firm's production, component or footprint is exact or within p %; returns the cells checked."""
    public = public_from_spec(spec, n, sums, assume_background=True)
    insider = Insider(tuple(firms[i] for i in insiders)) if insiders else OUTSIDER
    unknowns, equations = count_unknowns_equations(public, insider)
    assert unknowns > equations
    others = [f for i, f in enumerate(firms) if i not in insiders]
    checked = 0
    for cell, intervals in bounds_all(public, insider).items():
        for (lo, hi), firm in zip(intervals, others, strict=True):
            true = firm.contribution(cell)
            assert not exactly_determined(lo, hi), (cell, insiders, lo, hi)
            assert not p_rule_disclosed(lo, hi, true, P), (cell, insiders, lo, float(true), hi)
            checked += 1
    return checked


@pytest.mark.parametrize("productions", [(3e6, 5e6, 2e6), (3e6, 5e6, 2e6, 4e6), (3e6, 5e6, 2e6, 4e6, 1.5e6)])
def test_what_a_published_round_logs_pins_no_firm_for_an_outsider_an_insider_or_n_minus_2_colluders(
    tmp_path: Path, productions: tuple[float, ...]
) -> None:
    # Prepare: n smelters, members of the association
    spec = _spec(f"published-{len(productions)}")
    firms = _firms(spec, productions)
    assoc = Association(tmp_path)
    vectors = {assoc.member(f"firm{i}"): ints for i, (_, ints) in enumerate(firms)}

    # Execute: the round through the aggregator's own code; the attacker reads the public log
    assert assoc.run(spec, vectors) == "published"
    log = assoc.log()
    n, sums = published_sums(spec, log, spec.round_id)
    assert n == len(productions)
    # the log carries no second moment and no individual-level sum: only the totals the factor publishes
    assert set(sums) == {"w"} | {f"wx[{c.name_en}]" for c in spec.components} | {f"wF[{g}]" for g in spec.footprint.gases}

    # Assert: outsider, every insider alone, every coalition of n - 2
    truth = [f for f, _ in firms]
    checked = assert_nothing_pinned(spec, n, sums, truth, ())
    for i in range(n):
        checked += assert_nothing_pinned(spec, n, sums, truth, (i,))
    for coalition in combinations(range(n), n - 2):
        checked += assert_nothing_pinned(spec, n, sums, truth, coalition)
    assert checked > 0


def test_the_same_firms_under_release_0_1s_sums_are_recovered_exactly_by_the_insider(tmp_path: Path) -> None:
    # The control that shows the attacker is real: with the second moments 0.1 logged, one insider
    # at n = 3 solves the other two exactly; the round above logs none of them.
    spec = _spec("legacy-control")
    truth = [f for f, _ in _firms(spec, (600_000, 800_000, 700_000))]
    legacy = public_from_spec(spec, 3, slot_sums(spec, truth, moments=True))
    solution = solve_legacy(legacy, Insider((truth[0],)))
    assert solution.exact and solution.unique()
    assert solution.weights == (Fraction(800_000), Fraction(700_000))


def test_a_round_where_one_firm_holds_90_percent_stops_before_any_component_sum_exists(tmp_path: Path) -> None:
    spec = _spec("dominated-90")
    firms = _firms(spec, (9e6, 5e5, 5e5))
    assoc = Association(tmp_path)
    vectors = {assoc.member(f"firm{i}"): ints for i, (_, ints) in enumerate(firms)}

    assert assoc.run(spec, vectors) == "suppressed"

    # the runner was never asked for the values stage: no sum over any component was ever formed
    assert assoc.stages == [Stage.SCREEN, Stage.DOMINANCE]
    log = assoc.log()
    assert [e["type"] for e in log] == ["spec_published", "stage", "stage", "suppression"]
    assert log[2]["payload"]["decision"] == "stop" and log[-1]["payload"]["rule"] == "dominance"
    assert "production" in log[-1]["payload"]["detail"]
    with assoc.store.transaction() as tx:
        assert tx.get_aggregate(spec.round_id) is None and tx.list_factors() == []


def test_three_smelters_of_3_5_and_2_mt_publish_the_exact_weighted_mean(tmp_path: Path) -> None:
    spec = _spec("three-smelters")
    firms = _firms(spec, (3e6, 5e6, 2e6))
    assoc = Association(tmp_path)
    vectors = {assoc.member(f"firm{i}"): ints for i, (_, ints) in enumerate(firms)}
    assert assoc.run(spec, vectors) == "published"
    assert assoc.stages == [Stage.SCREEN, Stage.DOMINANCE, Stage.VALUES, Stage.CELLS]
    with assoc.store.transaction() as tx:
        (row,) = tx.list_factors()
    factor = json.loads(row.document)
    truth = [f for f, _ in firms]
    expected = sum(f.w * f.footprint for f in truth) / sum(f.w for f in truth)
    assert factor["value"] == pytest.approx(float(expected), abs=1 / spec.footprint.scale)
    # no spread over three firms is published; the uncertainty is the pedigree's (ecoinvent v3):
    # basic 0.0006, reliability 2 (0.0006), completeness 4 at n = 3 (0.002), the rest score 1
    assert factor["distribution"]["weighted_sd"] is None and factor["distribution"]["quantiles"] == {}
    assert factor["distribution"]["pedigree_gsd"] == pytest.approx(math.exp(math.sqrt(0.0006 + 0.0006 + 0.002)))


@pytest.mark.parametrize(
    ("second_region", "members_second"),
    [("CN", [0, 1, 2]), ("CN-YN", [0, 1, 2]), ("CN", [0, 1, 2, 3, 4])],
    ids=["new-version-one-firm-fewer", "contained-region-one-firm-fewer", "new-version-one-firm-more"],
)
def test_two_publications_that_would_subtract_to_one_firm_are_never_both_made(
    tmp_path: Path, second_region: str, members_second: list[int]
) -> None:
    # Prepare: a factor published over four firms, then a round over a cohort that differs by one
    assoc = Association(tmp_path)
    first = _spec("cohort-a")
    firms = _firms(first, (3e6, 5e6, 2e6, 4e6, 3.5e6))
    keys = [assoc.member(f"firm{i}") for i in range(len(firms))]
    assert assoc.run(first, {keys[i]: firms[i][1] for i in range(4)}) == "published"
    second = _spec("cohort-b", region=second_region)

    # Execute
    state = assoc.run(second, {keys[i]: _firms(second, (3e6, 5e6, 2e6, 4e6, 3.5e6))[i][1] for i in members_second})

    # Assert: suppressed by the cohort rule before any value was summed; only one aggregate is logged
    assert state == "suppressed"
    assert assoc.stages == [Stage.SCREEN]
    log = assoc.log()
    assert log[-1]["type"] == "suppression" and log[-1]["payload"]["rule"] == "cohort"
    assert len([e for e in log if e["type"] == "aggregate"]) == 1


def test_a_disjoint_region_or_the_same_cohort_again_publishes(tmp_path: Path) -> None:
    assoc = Association(tmp_path)
    first = _spec("cohort-c", region="CN-YN")
    firms = _firms(first, (3e6, 5e6, 2e6, 4e6, 3.5e6, 2.5e6))
    keys = [assoc.member(f"firm{i}") for i in range(len(firms))]
    assert assoc.run(first, {keys[i]: firms[i][1] for i in range(3)}) == "published"
    # another province's smelters: no overlap of scope
    assert assoc.run(_spec("cohort-d", region="CN-SC"), {keys[i]: firms[i][1] for i in range(3, 6)}) == "published"
    # the same three firms again (next year's data): the difference is their group's change, not one firm
    assert assoc.run(_spec("cohort-e", region="CN-YN"), {keys[i]: firms[i][1] for i in range(3)}) == "published"


def test_a_firm_audits_the_contexts_it_was_sent_against_the_log_and_the_published_totals(tmp_path: Path) -> None:
    # Prepare: a published round whose stage contexts one firm kept, as its node does
    spec = _spec("audited")
    firms = _firms(spec, (3e6, 5e6, 2e6))
    assoc = Association(tmp_path)
    vectors = {assoc.member(f"firm{i}"): ints for i, (_, ints) in enumerate(firms)}
    sent: list[SignedStageContext] = []
    runner = assoc.ctx.runner
    assert runner is not None

    def keeping(spec_: RoundSpec, roster: list[Any], run: StageRun) -> Any:
        if run.context is not None:
            sent.append(run.context)
        return runner(spec_, roster, run)

    assoc.ctx.runner = keeping
    assert assoc.run(spec, vectors) == "published"
    node = NodeStore(f"sqlite:///{tmp_path / 'node.db'}")
    for signed in sent:
        keep_context(node, signed)
    with assoc.store.transaction() as tx:
        entries = [translog.row_to_entry(row) for row in tx.list_log()]
        factor = PublishedFactor.model_validate_json(tx.list_factors()[0].document)

    # Execute / Assert: everything agrees
    assert [c.context.stage for c in kept_contexts(node, spec.round_id)] == [Stage.DOMINANCE, Stage.VALUES, Stage.CELLS]
    assert audit_round(node, spec.round_id, entries, factor) == []

    # a split view: this firm was sent a production bracket other than the one logged (signed all the same)
    forged = sent[0].context.model_copy(update={"brackets": {"production": ("1", "1.25")}})
    keep_context(node, sign_context(assoc.ctx.key, spec, Stage.DOMINANCE, forged.cohort,
                                    Screen(3, 1, tuple(forged.reporters), dict(forged.gas_reporters)), {"production": Fraction(1)}))  # fmt: skip
    findings = audit_round(node, spec.round_id, entries, factor)
    assert [f.stage for f in findings] == ["dominance", "dominance"]
    assert "split view" in findings[0].message and findings[1].cell == "production"
    node.close()
