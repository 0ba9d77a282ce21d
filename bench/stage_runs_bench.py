"""Benchmark: a secagg round's four disclosure stages in one Flower run vs one Flower run per stage.

Usage::

    python bench/stage_runs_bench.py               # 3 nodes, 2 rounds of each, alternating
    python bench/stage_runs_bench.py --repeat 1

In one :class:`pcf.deploy.Deployment` (TLS SuperLink, authenticated SuperNodes under
``pcf node supernode``), three nodes with a store, a signed invitation to every bench round and
the firm's consent. Each round runs its stages (screen, dominance, values, cells) through
:class:`aggregator.flower_runner.FlowerSecAggRunner`, the aggregator's side deciding between them
with :class:`protocols.disclosure.StagedRound`:

* one run: the runner hands each later stage to the run's waiting ServerApp (what the aggregator does);
* per stage: the runner's run is ended after every stage, so each stage starts its own ``flwr run``
  (the previous design), as the baseline.

Printed: seconds per stage and per round, and the ratio one run / per stage of the same deployment.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from aggregator.flower_runner import FlowerSecAggRunner, register_supernode
from aggregator.round_context import RosterEntry, StageRun
from aggregator.settings import AggregatorSettings
from keys.identity import generate_identity, public_key_b64
from node import rounds
from node.service import import_paths
from node.store import NodeStore
from pcf.deploy import Deployment
from pcf.samples import background_files, firm_files, sample_spec
from protocols.disclosure import Stage, StagedRound
from protocols.roster import sign_roster
from protocols.spec import RoundSpec, sign_spec, spec_hash


def run_round(runner: FlowerSecAggRunner, spec: RoundSpec, roster: list[RosterEntry], key: Ed25519PrivateKey,
              *, one_run: bool) -> list[float]:  # fmt: skip
    """Seconds of each stage of ``spec`` (the round must pass every stage)."""
    staged = StagedRound(spec)
    took = []
    try:
        while (stage := staged.next_stage()) is not None:
            members = roster if stage == Stage.SCREEN else [e for e in roster if e.identity_public_key in staged.cohort]
            started = time.monotonic()
            result = runner(spec, members, StageRun(stage, len(staged.layout(stage)), staged.context(key, stage)))
            took.append(time.monotonic() - started)
            decision = staged.record(stage, [int(v) for v in result.summed], list(result.contributors))
            if not decision.proceed:
                raise RuntimeError(f"round {spec.round_id}: stopped at {stage}: {decision.message}")
            if not one_run:
                runner.end(spec)
    finally:
        runner.end(spec)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="rounds of each kind (alternating)")
    args = parser.parse_args()
    key = generate_identity()
    specs = [sample_spec("aluminium", n_firms=3, round_id=f"bench-stages-{i}") for i in range(2 * args.repeat + 1)]
    results: dict[str, list[list[float]]] = {"one run": [], "per stage": []}
    with tempfile.TemporaryDirectory(prefix="pcf-stage-bench-") as tmp, Deployment(Path(tmp) / "deploy") as d:
        d.start_superlink()
        settings = AggregatorSettings(
            environment="development", home=Path(tmp) / "runner",
            admin_token=SecretStr("bench-admin-token-0123456789"), pact_client_secret=SecretStr("bench-pact-secret-0123456789"),
            superlink_address=f"{d.superlink_address_host}:{d.superlink_port}",
            superlink_root_certificates=d.tls_dir / "ca.crt", flwr_home=d.flwr_home,
            flower_stage_timeout_seconds=60, flower_connect_timeout_seconds=60,
        )  # fmt: skip
        files = firm_files("aluminium")
        handles, node_ids = [], []
        for i in range(3):
            handle = d.add_node(f"smelter{i}")
            store = NodeStore(handle.db_url)
            try:
                store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(key))
                import_paths(store, [*background_files(), files[i]])
            finally:
                store.close()
            node_ids.append(register_supernode(settings, handle.supernode_public.read_text()))
            handles.append(handle)
        for spec in specs:
            roster = sign_roster(key, spec.round_id, spec_hash(spec),
                                 {n: h.identity_public for n, h in zip(node_ids, handles, strict=True)})  # fmt: skip
            for handle in handles:
                store = NodeStore(handle.db_url)
                try:
                    rounds.receive_invitation(store, sign_spec(spec, key), roster)
                    uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
                    rounds.approve(store, spec.round_id, uuid, confirm_zeros=True, approved_by="bench")
                finally:
                    store.close()
        for handle in handles:
            d.start_supernode(handle)
        entries = [RosterEntry("", h.identity_public, "", n) for n, h in zip(node_ids, handles, strict=True)]
        runner = FlowerSecAggRunner(settings)
        run_round(runner, specs[0], entries, key, one_run=True)  # warm-up: every SuperNode connected
        for i, spec in enumerate(specs[1:]):
            kind = "one run" if i % 2 == 0 else "per stage"
            results[kind].append(run_round(runner, spec, entries, key, one_run=kind == "one run"))
            Console().print(f"{kind}: {sum(results[kind][-1]):.1f} s " + " ".join(f"{t:.1f}" for t in results[kind][-1]))

    table = Table(title="secagg round, 3 nodes: four disclosure stages")
    table.add_column("runs")
    for stage in Stage:
        table.add_column(f"{stage} (s)", justify="right")
    table.add_column("round (s)", justify="right")
    for kind, rows in results.items():
        per_stage = [statistics.median(col) for col in zip(*rows, strict=True)]
        table.add_row(kind, *(f"{t:.1f}" for t in per_stage), f"{statistics.median(sum(r) for r in rows):.1f}")
    Console().print(table)
    one = statistics.median(sum(r) for r in results["one run"])
    per = statistics.median(sum(r) for r in results["per stage"])
    Console().print(f"one run / per stage: {one / per:.2f}")


if __name__ == "__main__":
    main()
