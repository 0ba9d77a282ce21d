"""A round's disclosure stages share one Flower run: the runner hands each stage to the waiting ServerApp.

The aggregator's runner (:class:`aggregator.flower_runner.FlowerSecAggRunner`) runs here with a
``flwr`` CLI stand-in whose ``flwr run`` starts the real recording ServerApp
(:data:`pcf.flower_app.server_app`) in a thread, over an in-process Grid of nodes that run the
node's real ClientApp on their own stores (:class:`secagg_adversary.Cohort`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict
from secagg_adversary import AGGREGATOR, Cohort

from aggregator.flower_runner import FlowerRunFailed, FlowerSecAggRunner
from aggregator.round_context import RosterEntry, StageRun
from aggregator.settings import AggregatorSettings
from keys.identity import generate_identity, public_key_b64
from node import rounds
from node.service import import_paths
from node.store import NodeStore
from pcf.flower_app import read_records, server_app
from pcf.samples import background_files, firm_files, sample_spec
from protocols.disclosure import STAGES, Stage, StagedRound, sign_context
from protocols.flower_apps import InProcessGrid
from protocols.spec import RoundSpec

A, B, C = 101, 102, 103


class ThreadedFlwr:
    """``flwr`` for the runner: ``run`` starts the ServerApp over ``grid`` in a thread; ``ls`` reports it."""

    def __init__(self, grid: InProcessGrid) -> None:
        self.grid = grid
        self.calls: list[list[str]] = []
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def _serve(self, config: dict[str, object]) -> None:
        try:
            server_app(self.grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))  # type: ignore[arg-type]  # a TOML table is a UserConfig
        except BaseException as exc:  # noqa: BLE001 -- kept for the test's asserts
            self.failure = exc

    def __call__(self, args: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args[1:]))
        out = ""
        if args[1] == "run":
            config = tomllib.loads(Path(args[args.index("--run-config") + 1]).read_text())
            self.thread = threading.Thread(target=self._serve, args=(config,), daemon=True)
            self.thread.start()
            out = '{"success": true, "run-id": "7"}'
        elif args[1] == "ls":
            alive = self.thread is not None and self.thread.is_alive()
            out = json.dumps({"runs": [{"status": "running" if alive else "finished:completed"}]})
        return subprocess.CompletedProcess(list(args), 0, out, "")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("template") / "node.db"
    store = NodeStore(f"sqlite:///{path}")
    try:
        store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(AGGREGATOR))
        import_paths(store, background_files() + [firm_files("aluminium")[0]])
        uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
    finally:
        store.close()
    return path, uuid


def setup(tmp_path: Path, template: tuple[Path, str], round_id: str) -> tuple[RoundSpec, Cohort, ThreadedFlwr, FlowerSecAggRunner]:
    spec = sample_spec("aluminium", n_firms=3, round_id=round_id)
    cohort = Cohort.create(tmp_path / "nodes", template[0], spec, [A, B, C], process_uuid=template[1])
    flwr = ThreadedFlwr(cohort.grid(run_id=1))
    settings = AggregatorSettings(
        environment="development", home=tmp_path / "agg", admin_token="admin-token-0123456789abcdef",  # type: ignore[arg-type]
        pact_client_secret="pact-secret-0123456789abcdef", superlink_address="127.0.0.1:9093",  # type: ignore[arg-type]
        flower_connect_timeout_seconds=1, flower_stage_timeout_seconds=5,
    )  # fmt: skip
    runner = FlowerSecAggRunner(settings, run=flwr, record_path=tmp_path / "received.bin", poll_interval=0.01)
    return spec, cohort, flwr, runner


def entries(cohort: Cohort) -> list[RosterEntry]:
    return [RosterEntry("", public_key_b64(key), "", str(node)) for node, key in sorted(cohort.roster.items())]


def test_every_stage_of_a_round_runs_in_one_flower_run_and_each_message_is_recorded(
    tmp_path: Path, template: tuple[Path, str]
) -> None:
    # Prepare: three consenting nodes; the aggregator's side decides between stages, as _run_secagg does
    spec, cohort, flwr, runner = setup(tmp_path, template, "one-run-2024")
    staged = StagedRound(spec)
    roster = entries(cohort)

    # Execute
    ran = []
    while (stage := staged.next_stage()) is not None:
        members = roster if stage == Stage.SCREEN else [e for e in roster if e.identity_public_key in staged.cohort]
        result = runner(spec, members, StageRun(stage, len(staged.layout(stage)), staged.context(AGGREGATOR, stage)))
        decision = staged.record(stage, [int(v) for v in result.summed], list(result.contributors))
        ran.append(stage)
        assert decision.proceed, decision.message
    runner.end(spec)
    assert flwr.thread is not None
    flwr.thread.join(timeout=10)

    # Assert: one `flwr run` for the four stages; the ServerApp exited at the stop, without error
    assert ran == list(STAGES)
    assert [c[0] for c in flwr.calls].count("run") == 1 and "stop" not in [c[0] for c in flwr.calls]
    assert not flwr.thread.is_alive() and flwr.failure is None
    assert runner.last_run_dir is not None and not list(runner.last_run_dir.glob("result-*.json"))
    for node in (A, B, C):
        sent = cohort.stages_sent(node)
        for s in STAGES:
            for message in ("advertise_keys", "share_keys", "masked_input", "consistency", "unmask"):
                assert sent.count(f"secagg:{s}:{message}") == 1, (node, s, message, sent)
    # every message the ServerApp received, over all four stages, is in its sender's outbox
    outboxes = {row.sha256 for node in (A, B, C) for row in cohort.outbox(node)}
    received = read_records(tmp_path / "received.bin")
    assert len(received) == 3 * 5 * len(STAGES)
    assert all(hashlib.sha256(blob).hexdigest() in outboxes for blob in received)


def test_a_context_for_another_stage_than_the_round_id_names_is_refused_before_anything_is_sent(
    tmp_path: Path, template: tuple[Path, str]
) -> None:
    # Prepare: the screen runs honestly; then the next stage, dominance, comes with the aggregator's
    # genuine signature over a context that says 'values'
    spec, cohort, flwr, runner = setup(tmp_path, template, "wrong-stage-2024")
    staged = StagedRound(spec)
    roster = entries(cohort)
    screen = runner(spec, roster, StageRun(Stage.SCREEN, len(staged.layout(Stage.SCREEN)), None))
    staged.record(Stage.SCREEN, [int(v) for v in screen.summed], list(screen.contributors))
    other = sign_context(AGGREGATOR, spec, Stage.VALUES, staged.cohort, staged.screen)

    # Execute
    with pytest.raises(FlowerRunFailed, match="SecAggAborted"):
        runner(spec, roster, StageRun(Stage.DOMINANCE, len(staged.layout(Stage.DOMINANCE)), other))
    runner.end(spec)
    assert flwr.thread is not None
    flwr.thread.join(timeout=10)
    assert not flwr.thread.is_alive()  # the failed stage ended the run

    # Assert: every node refused at the advertise message, sent no key and spent nothing of the stage
    for node in (A, B, C):
        sent = cohort.stages_sent(node)
        assert not [s for s in sent if s.startswith("secagg:dominance:")], sent
        refusal = next(row for row in cohort.outbox(node) if row.stage == "secagg:refused:dominance:advertise_keys")
        assert "stage" in (refusal.note or "") and "values" in (refusal.note or "")
        store = cohort.store(node)
        try:
            assert store.get_setting(f"stage:{spec.round_id}:dominance") is None
        finally:
            store.close()


def test_a_stage_context_signed_by_another_key_is_refused(tmp_path: Path, template: tuple[Path, str]) -> None:
    spec, cohort, flwr, runner = setup(tmp_path, template, "foreign-key-2024")
    staged = StagedRound(spec)
    roster = entries(cohort)
    screen = runner(spec, roster, StageRun(Stage.SCREEN, len(staged.layout(Stage.SCREEN)), None))
    staged.record(Stage.SCREEN, [int(v) for v in screen.summed], list(screen.contributors))

    with pytest.raises(FlowerRunFailed):
        runner(spec, roster, StageRun(Stage.DOMINANCE, len(staged.layout(Stage.DOMINANCE)),
                                      staged.context(generate_identity(), Stage.DOMINANCE)))  # fmt: skip
    runner.end(spec)
    assert flwr.thread is not None
    flwr.thread.join(timeout=10)
    assert not flwr.thread.is_alive()

    for node in (A, B, C):
        assert not [s for s in cohort.stages_sent(node) if s.startswith("secagg:dominance:")]
        refusal = next(row for row in cohort.outbox(node) if row.stage == "secagg:refused:dominance:advertise_keys")
        assert "not signed by the aggregator" in (refusal.note or "")
