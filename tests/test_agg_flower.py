"""The aggregator's Flower wiring in process: SuperNode registration, signed roster, value bound, runner, recording."""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from example_round import example_firms, example_spec
from flwr.app import Context, RecordDict
from plain_apps import plain_client_app, plain_server_app
from pydantic import SecretStr
from stage_runner import stage_runner

from aggregator import members, rounds, translog
from aggregator.errors import Conflict, RegistrationFailed, UnregistrationFailed
from aggregator.flower_runner import (
    FlowerRunFailed,
    FlowerSecAggRunner,
    register_supernode,
    supernode_unregistrar,
    unregister_supernode,
    write_flwr_config,
)
from aggregator.round_context import StageRun
from aggregator.settings import AggregatorSettings
from aggregator.store import MemberRow, Store, open_store
from keys import identity
from pcf.flower_app import read_records
from protocols.contribution import build_contribution
from protocols.disclosure import Stage, screen_layout
from protocols.flower_apps import (
    InProcessGrid,
    NodeConfigKey,
    RecordKey,
)
from protocols.roster import verify_roster
from protocols.spec import RoundSpec, other_gases_slot, spec_hash, vector_layout

NOW = datetime(2025, 3, 1, tzinfo=UTC)
SUPERNODE_KEY = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQ= node"


def settings(tmp_path: Path, **overrides: object) -> AggregatorSettings:
    values: dict[str, object] = {
        "environment": "development",
        "home": tmp_path / "agg",
        "admin_token": "admin-token-0123456789abcdef",
        "pact_client_secret": "pact-secret-0123456789abcdef",
        "superlink_address": "127.0.0.1:9093",
        "superlink_root_certificates": tmp_path / "ca.crt",
    }
    return AggregatorSettings(**(values | overrides))  # type: ignore[arg-type]


def spec(round_id: str = "r1", **overrides: object) -> RoundSpec:
    return example_spec(round_id=round_id, deadline=NOW + timedelta(days=1), **overrides)  # type: ignore[arg-type]


def context(store: Store, runner: rounds.SecAggRunner | None = None) -> rounds.RoundContext:
    return rounds.RoundContext(
        store=store,
        key=identity.generate_identity(),
        runner=runner,
        flower_roster=True,
        clock=lambda: NOW,
        spawn=lambda work: work(),
    )


def add_members(store: Store, count: int) -> list[int]:
    ids = []
    with store.transaction() as tx:
        for i in range(count):
            key = identity.public_key_b64(identity.generate_identity())
            row = tx.add_member(MemberRow(
                fingerprint=identity.fingerprint(key), org_name_zh=f"甲{i}", org_name_en=f"A{i}",
                identity_public_key=key, supernode_public_key=f"{SUPERNODE_KEY}{i}", status="pending",
                created_at=NOW, updated_at=NOW))  # fmt: skip
            assert row.id is not None
            ids.append(row.id)
    return ids


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'agg.db'}")


class FakeFlwr:
    """Stands in for the ``flwr`` CLI: records calls, answers with canned output."""

    def __init__(self, stdout: str = "", returncode: int = 0) -> None:
        self.stdout, self.returncode = stdout, returncode
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, args: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(args), dict(env)))
        return subprocess.CompletedProcess(list(args), self.returncode, self.stdout, "")


# ---------------------------------------------------------------------------------- registration


def test_approval_stores_the_node_id_the_superlink_assigned(store: Store) -> None:
    (member_id,) = add_members(store, 1)
    seen: list[str] = []

    def register(key: str) -> str:
        seen.append(key)
        return "18446744073709551557"  # above 2**63: kept exactly as text

    approved = members.approve_member(store, member_id, NOW, register)
    again = members.approve_member(store, member_id, NOW, register)

    assert approved.status == "approved" and approved.flower_node_id == "18446744073709551557"
    assert again.flower_node_id == approved.flower_node_id
    assert seen == [f"{SUPERNODE_KEY}0"]  # registered once


def test_a_failed_registration_leaves_the_member_pending(store: Store) -> None:
    (member_id,) = add_members(store, 1)

    def refuse(key: str) -> str:
        raise RegistrationFailed("SuperLink refused the key")

    with pytest.raises(RegistrationFailed):
        members.approve_member(store, member_id, NOW, refuse)
    with store.transaction() as tx:
        row = tx.get_member(member_id)
    assert (row.status, row.flower_node_id) == ("pending", None)


def test_register_supernode_runs_flwr_with_the_key_file_and_parses_the_node_id(tmp_path: Path) -> None:
    s = settings(tmp_path)
    fake = FakeFlwr(stdout='{"success": true, "node-id": "9223372036854775809"}')
    keys_seen: list[str] = []

    def run(args: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        keys_seen.append(Path(args[3]).read_text())
        return fake(args, env, timeout)

    assert register_supernode(s, SUPERNODE_KEY, run=run) == "9223372036854775809"
    args, env = fake.calls[0]
    assert args[1:3] == ["supernode", "register"] and args[4:] == ["pcf", "--format", "json"]
    assert keys_seen == [SUPERNODE_KEY + "\n"]
    assert env["FLWR_HOME"] == str(s.flwr_home_dir)
    config = tomllib.loads((s.flwr_home_dir / "config.toml").read_text())
    assert config["superlink"]["pcf"] == {"address": "127.0.0.1:9093", "root-certificates": str(tmp_path / "ca.crt")}


def test_register_supernode_reports_what_flwr_said_when_it_fails(tmp_path: Path) -> None:
    fake = FakeFlwr(stdout='{"success": false, "error-message": "Public key already in use"}', returncode=1)
    with pytest.raises(RegistrationFailed, match="Public key already in use"):
        register_supernode(settings(tmp_path), SUPERNODE_KEY, run=fake)


def test_revoking_unregisters_the_supernode_with_flwr_and_says_so(store: Store, tmp_path: Path) -> None:
    # Prepare: an approved member whose SuperNode the SuperLink registered as node 2**63 + 5
    (member_id,) = add_members(store, 1)
    members.approve_member(store, member_id, NOW, lambda _key: "9223372036854775813")
    fake = FakeFlwr(stdout='{"success": true, "node-id": 9223372036854775813}')

    # Execute
    revoked = members.revoke_member(store, member_id, NOW, supernode_unregistrar(settings(tmp_path), run=fake))

    # Assert
    assert (revoked.status, revoked.superlink_unregistered, revoked.unregister_error) == ("revoked", True, None)
    ((args, env),) = fake.calls
    assert args[1:] == ["supernode", "unregister", "9223372036854775813", "pcf", "--format", "json"]
    assert env["FLWR_HOME"] == str(settings(tmp_path).flwr_home_dir)


def test_a_failed_unregistration_does_not_block_the_revocation_and_is_reported(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the SuperLink refuses (here: the node is unknown to it)
    (member_id,) = add_members(store, 1)
    members.approve_member(store, member_id, NOW, lambda _key: "7")
    refusing = FakeFlwr(stdout='{"success": false, "error-message": "Node 7 not found"}', returncode=1)

    # Execute
    with caplog.at_level("WARNING", logger="aggregator.members"):
        revoked = members.revoke_member(store, member_id, NOW, supernode_unregistrar(settings(tmp_path), run=refusing))

    # Assert: revoked in the store all the same; the response and the log say the SuperNode is still registered
    assert (revoked.status, revoked.superlink_unregistered) == ("revoked", False)
    assert revoked.unregister_error is not None and "did not unregister SuperNode 7: Node 7 not found" in revoked.unregister_error
    assert "supernode unregister 7 pcf" in revoked.unregister_error  # what to run by hand
    with store.transaction() as tx:
        assert tx.get_member(member_id).status == "revoked"
    assert any("still registered" in r.getMessage() for r in caplog.records)
    again = members.revoke_member(store, member_id, NOW, supernode_unregistrar(settings(tmp_path), run=FakeFlwr('{"success": true}')))
    assert again.superlink_unregistered is True  # revoking again retries


def test_revoking_a_member_without_node_id_or_superlink_unregisters_nothing(store: Store) -> None:
    pending, approved = add_members(store, 2)
    members.approve_member(store, approved, NOW, lambda _key: "8")

    def unregister(node_id: str) -> None:
        raise AssertionError(f"unregister({node_id}) called")

    assert members.revoke_member(store, pending, NOW, unregister).superlink_unregistered is None  # never registered
    assert members.revoke_member(store, approved, NOW).superlink_unregistered is None  # no SuperLink configured


def test_unregister_supernode_refuses_a_node_id_that_is_not_one_without_running_flwr(tmp_path: Path) -> None:
    fake = FakeFlwr()
    for bad in ("-1", "7; rm -rf /", str(2**64)):
        with pytest.raises(UnregistrationFailed, match="accepted: a decimal unsigned 64-bit"):
            unregister_supernode(settings(tmp_path), bad, run=fake)
    assert fake.calls == []


def test_flwr_config_keeps_other_connections_and_follows_a_new_address(tmp_path: Path) -> None:
    s = settings(tmp_path, flwr_home=tmp_path / "home")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:1"\n\n'
        '[superlink.pcf]\naddress = "old:1"\n'
    )
    write_flwr_config(s)
    write_flwr_config(s)
    config = tomllib.loads((tmp_path / "home" / "config.toml").read_text())
    assert config["superlink"]["default"] == "local"
    assert config["superlink"]["local"] == {"address": "127.0.0.1:1"}
    assert config["superlink"]["pcf"]["address"] == "127.0.0.1:9093"


def test_settings_accept_the_short_root_certificate_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PCF_AGG_SUPERLINK_ROOT_CERT", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("PCF_AGG_FLWR_HOME", str(tmp_path / "flwr"))
    s = AggregatorSettings(
        admin_token=SecretStr("admin-token-0123456789abcdef"), pact_client_secret=SecretStr("pact-secret-0123456789")
    )
    assert (s.superlink_root_certificates, s.flwr_home_dir) == (tmp_path / "ca.crt", tmp_path / "flwr")


# ---------------------------------------------------------------------------------------- roster


def approve_all(store: Store, count: int, first: int = 0) -> list[str]:
    """Approve ``count`` new members; the fake SuperLink assigns node ids 2**63 + first, + first + 1, ..."""
    assigned = iter(range(first, first + count))
    node_ids = []
    for member_id in add_members(store, count):
        node_ids.append(members.approve_member(store, member_id, NOW, lambda _key: str(2**63 + next(assigned))).flower_node_id)
    return [n for n in node_ids if n is not None]


def test_opening_a_secagg_round_signs_stores_and_logs_its_roster(store: Store) -> None:
    node_ids = approve_all(store, 3)
    ctx = context(store)
    s = spec()
    rounds.create_round(ctx, s)

    opened = rounds.open_round(ctx, s.round_id)

    assert opened.roster is not None
    roster = verify_roster(opened.roster, identity.public_key_b64(ctx.key), s.round_id, spec_hash(s))
    assert set(roster) == set(node_ids)
    assert rounds.get_round(ctx, s.round_id).roster == opened.roster
    with store.transaction() as tx:
        log = [translog.row_to_entry(r) for r in tx.list_log()]
    assert [e.type for e in log] == [translog.SPEC_PUBLISHED, translog.ROSTER]
    assert log[1].payload["roster"] == roster and log[1].payload["signature"] == opened.roster.signature


def test_a_secagg_round_with_too_small_a_roster_stays_a_draft(store: Store) -> None:
    approve_all(store, 2)
    add_members(store, 1)  # pending: no node id, not on the roster
    ctx = context(store)
    rounds.create_round(ctx, spec())

    with pytest.raises(Conflict, match="min_participants is 3"):
        rounds.open_round(ctx, "r1")

    assert rounds.get_round(ctx, "r1").state == "draft"
    with store.transaction() as tx:
        assert tx.list_log() == []


def test_the_runner_gets_the_signed_roster_without_members_revoked_since(store: Store) -> None:
    node_ids = approve_all(store, 4)
    s = spec()
    got: list[list[rounds.RosterEntry]] = []
    rows = [build_contribution(s, f.values, f.weight, f.footprint_by_gas).ints for f in example_firms(s)]

    def rows_of(_spec: RoundSpec, roster: Sequence[rounds.RosterEntry]) -> dict[str, list[int]]:
        got.append(list(roster))
        return {e.identity_public_key: row for e, row in zip(roster, rows, strict=False)}

    runner = stage_runner(rows_of)

    ctx = context(store, runner)
    rounds.create_round(ctx, s)
    rounds.open_round(ctx, s.round_id)
    approve_all(store, 1, first=10)  # approved after opening: not on this round's roster
    with store.transaction() as tx:
        revoked = next(m for m in tx.list_members() if m.flower_node_id == node_ids[0])
        assert revoked.id is not None
        members.set_status(tx, revoked.id, "revoked", NOW)

    rounds.run_round(ctx, s.round_id)

    assert [e.flower_node_id for e in got[0]] == node_ids[1:]
    assert all(g == got[0] for g in got)  # every stage over the screen's cohort
    assert rounds.get_round(ctx, s.round_id).state == "published"


def test_value_bits_are_the_smallest_bound_that_holds_every_slot() -> None:
    s = spec()
    merged = other_gases_slot(s)  # the values stage's slot for merged gases counts too
    assert merged is not None
    top = max([slot.bound_int for slot in vector_layout(s)] + [merged.bound_int])
    bits = rounds.secagg_value_bits(s, 3)
    assert top < 2**bits and top >= 2 ** (bits - 1)
    with pytest.raises(ValueError, match="could wrap"):
        rounds.secagg_value_bits(s, 2 ** (63 - bits) + 1)


# ---------------------------------------------------------------------------------------- runner


def roster_entries(n: int) -> list[rounds.RosterEntry]:
    return [
        rounds.RosterEntry(f"fp{i}", identity.public_key_b64(identity.generate_identity()), "sn", str(2**63 + i))
        for i in range(n)
    ]


class FakeRun(FakeFlwr):
    """``flwr run`` that 'runs' the ServerApp by writing the result file its run config names."""

    def __init__(self, result: Mapping[str, object] | None) -> None:
        super().__init__(stdout='{"success": true, "run-id": "42"}')
        self.result = result
        self.config: dict[str, object] = {}

    def __call__(self, args: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        if args[1] == "run":
            self.config = tomllib.loads(Path(args[args.index("--run-config") + 1]).read_text())
            if self.result is not None:
                Path(str(self.config["result-path"])).write_text(json.dumps(self.result))
        return super().__call__(args, env, timeout)


def test_runner_runs_the_fab_with_the_roster_and_returns_the_signed_sums_without_keeping_them(tmp_path: Path) -> None:
    s = spec()
    length = len(screen_layout(s))
    entries = roster_entries(3)
    fake = FakeRun({"round_id": "r1/screen", "total_signed": [str(-5)] + ["7"] * (length - 1),
                    "contributors": [int(e.flower_node_id or 0) for e in entries[:2]]})  # fmt: skip
    runner = FlowerSecAggRunner(settings(tmp_path), run=fake, clock=lambda: NOW, poll_interval=0.01)

    result = runner(s, entries, StageRun(Stage.SCREEN, length, None))

    assert (result.summed[0], list(result.summed[1:])) == (-5, [7] * (length - 1))
    assert list(result.contributors) == [e.identity_public_key for e in entries[:2]]
    assert (fake.config["round-id"], fake.config["stage"], fake.config["vector-length"]) == ("r1/screen", "screen", length)
    assert fake.config["value-bits"] == rounds.secagg_value_bits(s, 3)
    assert fake.config["participants"] == ",".join(e.flower_node_id or "" for e in entries)
    assert runner.last_run_dir is not None
    assert not list(runner.last_run_dir.glob("result*.json"))  # the full sum is not kept on disk
    roster = json.loads((runner.last_run_dir / "roster.json").read_text())
    assert roster == {e.flower_node_id: e.identity_public_key for e in entries}
    pyproject = tomllib.loads((runner.last_run_dir / "app" / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "pcf.flower_app:server_app",
        "clientapp": "node.flower_client:client_app",
    }
    assert set(fake.config) <= set(pyproject["tool"]["flwr"]["app"]["config"])


def test_runner_fails_when_the_serverapp_reports_an_abort(tmp_path: Path) -> None:
    fake = FakeRun({"error": "SecAggAborted: at stage masked_input only 1 nodes remain"})
    runner = FlowerSecAggRunner(settings(tmp_path), run=fake, clock=lambda: NOW, poll_interval=0.01)
    with pytest.raises(FlowerRunFailed, match="SecAggAborted"):
        runner(spec(), roster_entries(3), StageRun(Stage.SCREEN, len(screen_layout(spec())), None))


def test_runner_stops_an_overdue_run(tmp_path: Path) -> None:
    fake = FakeRun(None)
    runner = FlowerSecAggRunner(
        settings(tmp_path, flower_run_timeout_seconds=0.3), run=fake, clock=lambda: NOW, poll_interval=0.01
    )
    with pytest.raises(FlowerRunFailed, match="was stopped"):
        runner(spec(), roster_entries(3), StageRun(Stage.SCREEN, len(screen_layout(spec())), None))
    assert fake.calls[-1][0][1:3] == ["stop", "42"]


def test_a_failed_run_aborts_the_round_and_publishes_nothing(store: Store, tmp_path: Path) -> None:
    approve_all(store, 3)
    runner = FlowerSecAggRunner(
        settings(tmp_path), run=FakeRun({"error": "boom"}), clock=lambda: NOW, poll_interval=0.01
    )
    ctx = context(store, runner)
    rounds.create_round(ctx, spec())
    rounds.open_round(ctx, "r1")
    rounds.run_round(ctx, "r1")
    assert rounds.get_round(ctx, "r1").state == "aborted"
    with store.transaction() as tx:
        assert tx.get_aggregate("r1") is None and tx.list_factors() == []
    assert runner.last_run_dir is not None and (runner.last_run_dir / "stop.json").exists()  # its run is ended


# ------------------------------------------------------------------------------------- recording


def test_the_recording_serverapp_keeps_every_message_it_received(tmp_path: Path) -> None:
    nodes = [11, 12, 13]
    vectors = {n: [n * 1_000_003, -n] for n in nodes}
    configs = {}
    for n in nodes:
        key = identity.generate_identity()
        identity.save_private_key(key, tmp_path / f"{n}.pem")
        (tmp_path / f"{n}.json").write_text(json.dumps({"identity_key_path": f"{n}.pem", "roster": {}, "vector": vectors[n]}))
        configs[n] = {NodeConfigKey.INPUT: str(tmp_path / f"{n}.json")}
    (tmp_path / "roster.json").write_text(json.dumps({str(n): "unused" for n in nodes}))
    record, result = tmp_path / "received.bin", tmp_path / "result.json"
    run_config = {
        "round-id": "rec", "vector-length": 2, "value-bits": 40, "roster-path": str(tmp_path / "roster.json"),
        "result-path": str(result), "record-path": str(record), "connect-timeout": 1.0,
    }  # fmt: skip

    plain_server_app(
        InProcessGrid({n: plain_client_app for n in nodes}, configs),
        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config),  # type: ignore[arg-type]
    )

    assert json.loads(result.read_text())["total_signed"] == [str(sum(v[0] for v in vectors.values())), "-36"]
    blobs = read_records(record)
    assert len(blobs) == 3
    for n in nodes:
        assert any(np.int64(vectors[n][0]).tobytes() in blob for blob in blobs)
    assert RecordKey.VECTOR.encode() in blobs[0]
