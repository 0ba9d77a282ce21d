"""Benchmark: a secure-aggregation round vs a plain-sum round on a real deployment (TLS SuperLink, authenticated SuperNodes).

Usage::

    python bench/deployed_round_bench.py              # 3 and 10 nodes, d = the aluminium round's vector
    python bench/deployed_round_bench.py --nodes 3    # one size only

For each size, in the same run: a :class:`pcf.deploy.Deployment` starts a SuperLink; every node
gets a home with its store (background data and one sample smelter), its identity, its SuperNode
keys registered with the SuperLink, a signed invitation and the firm's consent. Then

* the plain round: the test-only plaintext ClientApp (``tests.plain_apps``) on stock SuperNodes
  (the node's gate would refuse it), one round trip;
* the secure round: the node's own ClientApp under ``pcf node supernode`` (the gate), the round's
  four disclosure stages (``protocols.disclosure``) in one Flower run, each a SecAgg+ instance of
  five round trips (advertise, share keys, masked input, consistency, unmask) with every node-side check.

Both run through :class:`aggregator.flower_runner.FlowerSecAggRunner` (``flwr run`` of the round's
FAB, wait for the ServerApp's result), timed from ``flwr run`` to the result after one warm-up
round each (so every SuperNode is connected), and are printed as seconds and as the ratio
secagg / plain of the same run. ``d`` is the length of the sample aluminium round's vector. No aggregator HTTP service is involved:
the bench signs specs and rosters with its own aggregator key.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from aggregator.flower_runner import FlowerSecAggRunner, register_supernode
from aggregator.rounds import RosterEntry, StageRun, StageSum
from aggregator.settings import AggregatorSettings
from keys.identity import Ed25519PrivateKey, generate_identity, public_key_b64
from node import rounds
from node.service import import_paths
from node.store import NodeStore
from pcf.deploy import Deployment, NodeHandle
from pcf.samples import background_files, firm_files, sample_spec
from protocols.disclosure import Stage, StagedRound
from protocols.roster import sign_roster
from protocols.spec import RoundSpec, sign_spec, spec_hash, vector_layout

PLAIN_SERVERAPP = "tests.plain_apps:plain_server_app"
PLAIN_CLIENTAPP = "tests.plain_apps:store_plain_client_app"


def _settings(d: Deployment, home: Path) -> AggregatorSettings:
    return AggregatorSettings(
        environment="development",
        home=home,
        admin_token=SecretStr("bench-admin-token-0123456789"),
        pact_client_secret=SecretStr("bench-pact-secret-0123456789"),
        superlink_address=f"{d.superlink_address_host}:{d.superlink_port}",
        superlink_root_certificates=d.tls_dir / "ca.crt",
        flwr_home=d.flwr_home,
        flower_stage_timeout_seconds=60,
        flower_connect_timeout_seconds=60,
    )


def _invite(handles: dict[str, NodeHandle], node_ids: dict[str, str], spec: RoundSpec, agg_key: object) -> None:
    signed = sign_spec(spec, agg_key)  # type: ignore[arg-type]  # an Ed25519PrivateKey
    roster = sign_roster(
        agg_key,  # type: ignore[arg-type]  # an Ed25519PrivateKey
        spec.round_id,
        spec_hash(spec),
        {node_ids[name]: h.identity_public for name, h in handles.items()},
    )
    for handle in handles.values():
        store = NodeStore(handle.db_url)
        try:
            rounds.receive_invitation(store, signed, roster)
            uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
            rounds.approve(store, spec.round_id, uuid, confirm_zeros=True, approved_by="bench")
        finally:
            store.close()


def _plain_round(runner: FlowerSecAggRunner, spec: RoundSpec, entries: list[RosterEntry]) -> StageSum:
    """One plain sum of the whole vector (the control has no stages)."""
    try:
        return runner(spec, entries, StageRun(Stage.SCREEN, len(vector_layout(spec)), None))
    finally:
        runner.end(spec)


def _secure_round(
    runner: FlowerSecAggRunner, spec: RoundSpec, entries: list[RosterEntry], key: Ed25519PrivateKey
) -> StagedRound:
    """Every disclosure stage of the round, as the aggregator drives them (``aggregator.round_secagg``)."""
    staged = StagedRound(spec)
    try:
        while (stage := staged.next_stage()) is not None:
            cohort = set(staged.cohort)
            members = entries if stage == Stage.SCREEN else [e for e in entries if e.identity_public_key in cohort]
            run = StageRun(stage, len(staged.layout(stage)), staged.context(key, stage))
            result = runner(spec, members, run)
            staged.record(stage, list(result.summed), list(result.contributors))
    finally:
        runner.end(spec)
    return staged


def measure(n: int, root: Path, console: Console) -> tuple[float, float, int]:
    """Seconds of a plain and of a secure round over ``n`` nodes of one deployment, and the vector length."""
    agg_key = generate_identity()
    files = firm_files("aluminium")
    with Deployment(root) as d:
        d.start_superlink()
        settings = _settings(d, root / "runner")
        handles: dict[str, NodeHandle] = {}
        node_ids: dict[str, str] = {}
        for i in range(n):
            handle = d.add_node(f"firm{i}")
            store = NodeStore(handle.db_url)
            try:
                store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(agg_key))
                import_paths(store, [*background_files(), files[i % len(files)]])
            finally:
                store.close()
            node_ids[handle.name] = register_supernode(settings, handle.supernode_public.read_text())
            handles[handle.name] = handle
        console.print(f"n={n}: {n} nodes registered", style="dim")
        entries = [RosterEntry("", handles[name].identity_public, "", node) for name, node in node_ids.items()]

        # The plain control first (stock SuperNodes), then the secure round (the node's gate).
        plain_spec = sample_spec("aluminium", round_id=f"bench-plain-{n}", max_participants=max(n, 3))
        _invite(handles, node_ids, plain_spec, agg_key)
        for handle in handles.values():
            d.start_supernode(handle, approved_code_only=False)
        plain_runner = FlowerSecAggRunner(settings, serverapp=PLAIN_SERVERAPP, clientapp=PLAIN_CLIENTAPP)
        _plain_round(plain_runner, plain_spec, entries)  # warm-up: every SuperNode connected, the FAB fetched once
        start = time.monotonic()
        plain_sum = _plain_round(plain_runner, plain_spec, entries)
        plain = time.monotonic() - start
        assert len(plain_sum.contributors) == n, f"plain round: {len(plain_sum.contributors)} of {n} nodes contributed"
        console.print(f"n={n}: plain round {plain:.1f} s", style="dim")

        for handle in handles.values():
            d.stop_process(f"supernode-{handle.name}")
            d.start_supernode(handle)
        warm_spec = sample_spec("aluminium", round_id=f"bench-warm-{n}", max_participants=max(n, 3))
        secure_spec = sample_spec("aluminium", round_id=f"bench-secagg-{n}", max_participants=max(n, 3))
        _invite(handles, node_ids, warm_spec, agg_key)
        _invite(handles, node_ids, secure_spec, agg_key)
        _secure_round(FlowerSecAggRunner(settings), warm_spec, entries, agg_key)  # warm-up (a consent serves one round)
        start = time.monotonic()
        staged = _secure_round(FlowerSecAggRunner(settings), secure_spec, entries, agg_key)
        secure = time.monotonic() - start
        assert staged.stopped is None and len(staged.cohort) == n, f"secure round: {staged.stopped}, {len(staged.cohort)} of {n}"
        console.print(f"n={n}: secure round (four stages) {secure:.1f} s", style="dim")
        length = len(vector_layout(secure_spec))
    return plain, secure, length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, action="append", help="node counts (default: 3 and 10)")
    args = parser.parse_args()
    console = Console(width=160)
    table = Table(title="A round on a real deployment (TLS, authenticated SuperNodes): seconds from flwr run to result")
    for column in ("nodes", "d", "plain s", "secagg s", "secagg / plain"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="pcf-deployed-bench-") as tmp:
        for n in args.nodes or [3, 10]:
            plain, secure, length = measure(n, Path(tmp) / f"n{n}", console)
            table.add_row(str(n), str(length), f"{plain:.1f}", f"{secure:.1f}", f"{secure / plain:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
