"""Attacks of a lying server on secure aggregation, mounted on the node's real ClientApp (issue 9, properties 2 and 3).

Each test plays the aggregator / SuperLink operator with :class:`secagg_adversary.LyingServer`: it
picks participants and threshold, re-runs a round, or tells share holders different survivor sets,
with one Sybil roster member when the attack needs one. The honest nodes run
:data:`node.flower_client.client_app` over their own stores. Every attack must end with the
adversary unable to reconstruct the victim's input, the refusal's reason in the node's outbox, and
nothing of the victim's masked input or shares sent beyond what the honest protocol allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from secagg_adversary import AGGREGATOR, Cohort, LyingServer, round_params

from keys.identity import public_key_b64
from node import rounds
from node.service import import_paths
from node.store import ConsentRow, NodeStore
from pcf.samples import background_files, firm_files, sample_spec
from protocols.disclosure import Stage, stage_round_id
from protocols.flower_apps import run_secagg, secagg_client_app
from protocols.secagg import SecAggAborted, to_signed
from protocols.secagg_policy import RoundPolicy
from protocols.spec import RoundSpec

A, B, C, D, S = 101, 102, 103, 104, 999  # S is the adversary's Sybil


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A node store with the background data, one firm and the aggregator's key pinned (copied per node)."""
    path = tmp_path_factory.mktemp("template") / "node.db"
    store = NodeStore(f"sqlite:///{path}")
    try:
        store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(AGGREGATOR))
        import_paths(store, background_files() + [firm_files("aluminium")[0]])
        uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
    finally:
        store.close()
    return path, uuid


@pytest.fixture(scope="module")
def spec() -> RoundSpec:
    return sample_spec("aluminium", round_id="attack-2024")


def cohort(tmp_path: Path, template: tuple[Path, str], spec: RoundSpec, honest: list[int], sybils: list[int]) -> Cohort:
    return Cohort.create(tmp_path, template[0], spec, honest, sybils, process_uuid=template[1])


def policy_threshold(spec: RoundSpec, n: int) -> int:
    return RoundPolicy.from_spec(spec, range(n)).threshold(n)


def consent(c: Cohort, node: int) -> ConsentRow:
    store = c.store(node)
    try:
        return rounds.consent_of(store, c.spec.round_id)
    finally:
        store.close()


# ------------------------------------------------------------------------------ the split-view lie


def test_split_view_lie_recovers_the_victim_exactly_from_nodes_that_do_not_check_the_round(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec
) -> None:
    # Prepare: the control. Library ClientApps without the invitation check, threshold n//2+1 = 2 at n = 3.
    c = cohort(tmp_path, template, spec, [A, B], [S])
    rng = np.random.default_rng(9)
    length = round_params(spec, c.nodes).vector_length
    vectors = {n: rng.integers(0, 2**20, length).astype(np.uint64) for n in (A, B)}
    grid = c.grid(app=secagg_client_app)
    for node, config in c.json_inputs(tmp_path, vectors).items():
        grid.contexts[node].node_config.update(config)
    server = LyingServer(grid, c, round_params(spec, c.nodes, threshold=2))

    # Execute: B is told the victim dropped, the victim is told it survived
    assert server.to_masked_input() == [A, B, S]
    recovered = server.split_view(A, shown_dropped=[B])

    # Assert: the attack is real, so its failure below means something
    assert recovered.estimate is not None and np.array_equal(recovered.estimate, vectors[A])


def test_split_view_lie_at_three_nodes_with_one_sybil_is_refused_and_recovers_nothing(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec
) -> None:
    # Prepare: the node's ClientApp; the adversary must use a threshold the nodes accept (3 of 3)
    c = cohort(tmp_path, template, spec, [A, B], [S])
    t = policy_threshold(spec, 3)
    assert t == 3
    server = LyingServer(c.grid(), c, round_params(spec, c.nodes, threshold=t))

    # Execute
    assert server.to_masked_input() == [A, B, S]
    recovered = server.split_view(A, shown_dropped=[B])

    # Assert: B refuses a survivor set below the threshold; the victim holds too few signatures
    assert recovered.estimate is None
    assert len(recovered.key_shares) < t
    assert "SecAggAborted" in recovered.errors[B] and "consistency" in recovered.errors[B]
    assert "signature(s) over its survivor set" in recovered.errors[A]
    assert "secagg:screen:unmask" not in c.stages_sent(A) and "secagg:screen:unmask" not in c.stages_sent(B)
    refusal = next(row for row in c.outbox(A) if row.stage == "secagg:refused:screen:unmask")
    assert "no share is revealed" in refusal.note


@pytest.mark.parametrize("shown_dropped", [[C, D], [D], [B, C, D]])
def test_split_view_lie_at_five_nodes_with_one_sybil_recovers_nothing(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec, shown_dropped: list[int]
) -> None:
    # Prepare: four honest firms and a Sybil; the nodes accept threshold max(3, ceil(2/3 * 5)) = 4
    c = cohort(tmp_path, template, spec, [A, B, C, D], [S])
    t = policy_threshold(spec, 5)
    assert t == 4
    server = LyingServer(c.grid(), c, round_params(spec, c.nodes, threshold=t))

    # Execute
    assert server.to_masked_input() == [A, B, C, D, S]
    recovered = server.split_view(A, shown_dropped=shown_dropped)

    # Assert: at most one story gathers t signatures, so at most one of the victim's secrets is exposed
    assert recovered.estimate is None
    assert min(len(recovered.seed_shares), len(recovered.key_shares)) < t
    told_dropped = [n for n in shown_dropped if "secagg:screen:unmask" in c.stages_sent(n)]
    told_survived = [n for n in (A, B, C, D) if n not in shown_dropped and "secagg:screen:unmask" in c.stages_sent(n)]
    assert not (told_dropped and told_survived)  # never both stories unmasked


def test_signatures_over_another_survivor_set_are_refused(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec
) -> None:
    c = cohort(tmp_path, template, spec, [A, B, C], [])
    server = LyingServer(c.grid(), c, round_params(spec, c.nodes, threshold=3))
    server.to_masked_input()
    # B is shown {A, B}, everyone else {A, B, C}; B's own signature does not fit the others' set
    recovered = server.split_view(C, shown_dropped=[B])
    assert recovered.estimate is None
    assert "SecAggAborted" in recovered.errors[B]
    assert all("secagg:screen:unmask" not in c.stages_sent(n) for n in (A, C))


# ------------------------------------------------------------------------------ who takes part


def test_three_runs_over_pairs_are_each_refused_before_any_key_is_sent(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec
) -> None:
    c = cohort(tmp_path, template, spec, [A, B, C], [])
    for run_id, pair in enumerate([[A, B], [B, C], [A, C]], start=1):
        server = LyingServer(c.grid(run_id=run_id), c, round_params(spec, pair, threshold=2))
        assert server.to_masked_input(pair) == []
        for node in pair:
            assert "2 participant(s); accepted: at least min_participants = 3" in server.errors[node]
    for node in (A, B, C):
        assert set(c.stages_sent(node)) == {"secagg:refused:screen:advertise_keys"}
        assert consent(c, node).spent_at is None  # a refused round does not spend the consent


def test_a_threshold_below_the_spec_is_refused(tmp_path: Path, template: tuple[Path, str], spec: RoundSpec) -> None:
    c = cohort(tmp_path, template, spec, [A, B, C], [])
    server = LyingServer(c.grid(), c, round_params(spec, c.nodes, threshold=2))
    assert server.to_masked_input() == []
    assert all("threshold 2; accepted: at least 3" in server.errors[n] for n in (A, B, C))
    refusal = c.outbox(A)[0]
    assert refusal.stage == "secagg:refused:screen:advertise_keys" and "threshold 2" in refusal.note


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"participants": (A, B, C, 4242)}, "participants [4242] are not in the signed roster"),
        ({"vector_length": 3}, "vector length 3; accepted:"),
        ({"value_bits": 40}, "input bound 2**40; accepted:"),
    ],
)
def test_parameters_the_invitation_does_not_allow_are_refused(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec, change: dict[str, object], reason: str
) -> None:
    import dataclasses

    c = cohort(tmp_path, template, spec, [A, B, C], [])
    params = round_params(spec, [A, B, C], threshold=3)
    if "participants" in change:
        params = round_params(spec, list(change["participants"]), threshold=3)  # type: ignore[call-overload]
    else:
        params = dataclasses.replace(params, **change)  # type: ignore[arg-type]
    server = LyingServer(c.grid(), c, params)
    server.to_masked_input([A, B, C])
    assert all(reason in server.errors[n] for n in (A, B, C)), server.errors
    assert all(set(c.stages_sent(n)) == {"secagg:refused:screen:advertise_keys"} for n in (A, B, C))


# ------------------------------------------------------------------------------ single-use consent


def test_a_consent_serves_one_run_even_across_restarts(
    tmp_path: Path, template: tuple[Path, str], spec: RoundSpec
) -> None:
    # Prepare: an honest first run over the three firms
    c = cohort(tmp_path, template, spec, [A, B, C], [])
    roster = {n: public_key_b64(k) for n, k in c.roster.items()}
    first = run_secagg(c.grid(run_id=1), c.nodes, stage_round_id(spec.round_id, Stage.SCREEN), len(c.vector(A)), roster, threshold=3,
                       value_bits=round_params(spec, c.nodes).value_bits)
    expected = np.sum([to_signed(c.vector(n)) for n in c.nodes], axis=0)
    assert np.array_equal(to_signed(first.total), expected)
    assert all(consent(c, n).spent_by_run == "1" for n in c.nodes)

    # Execute: a second run of the round, then the first run again after a restart (fresh Flower contexts)
    for run_id in (2, 1):
        with pytest.raises(SecAggAborted):
            run_secagg(c.grid(run_id=run_id), c.nodes, stage_round_id(spec.round_id, Stage.SCREEN), len(c.vector(A)), roster, threshold=3,
                       value_bits=round_params(spec, c.nodes).value_bits)

    # Assert: each refusal is in the outbox with its reason; no key advertisement left a second time
    for node in c.nodes:
        stages = c.stages_sent(node)
        assert stages.count("secagg:screen:advertise_keys") == 1 and stages.count("secagg:refused:screen:advertise_keys") == 2
        notes = [row.note for row in c.outbox(node) if row.stage == "secagg:refused:screen:advertise_keys"]
        assert all("already used by Flower run 1" in note for note in notes)
