"""Attacks on secure aggregation over a real deployment (TLS SuperLink, authenticated SuperNodes, the node's gate).

The aggregator's side is played with :class:`aggregator.flower_runner.FlowerSecAggRunner` and a
deviating ServerApp (``tests.lying_apps``): first a round run with a threshold below the spec's,
then an honest run, then the same round run again. The nodes run their own ClientApp under
``pcf node supernode``; each attack must be refused with its reason in the firm's outbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from aggregator.flower_runner import FlowerRunFailed, FlowerSecAggRunner, register_supernode
from aggregator.rounds import RosterEntry, StageRun
from aggregator.settings import AggregatorSettings
from keys.identity import generate_identity, public_key_b64
from node import rounds
from node.service import import_paths
from node.store import NodeStore
from pcf.deploy import Deployment, NodeHandle
from pcf.samples import background_files, firm_files, sample_spec
from protocols.disclosure import Stage, screen_layout
from protocols.roster import sign_roster
from protocols.spec import sign_spec, spec_hash

pytestmark = pytest.mark.slow


def _stages(handle: NodeHandle, round_id: str) -> list[tuple[str, str]]:
    store = NodeStore(handle.db_url)
    try:
        return [(row.stage, row.note) for row in rounds.outbox(store, round_id)]
    finally:
        store.close()


def test_a_lying_server_app_and_a_second_run_of_a_round_are_refused_by_every_node(tmp_path: Path) -> None:
    # Prepare: a SuperLink, three nodes with stores, invitations signed by the aggregator key, consents
    agg = generate_identity()
    with Deployment(tmp_path / "deploy") as d:
        d.start_superlink()
        settings = AggregatorSettings(
            environment="development",
            home=tmp_path / "runner",
            admin_token=SecretStr("attack-admin-token-0123456789"),
            pact_client_secret=SecretStr("attack-pact-secret-0123456789"),
            superlink_address=f"{d.superlink_address_host}:{d.superlink_port}",
            superlink_root_certificates=d.tls_dir / "ca.crt",
            flwr_home=d.flwr_home,
            flower_stage_timeout_seconds=45,
            flower_connect_timeout_seconds=45,
        )
        files = firm_files("aluminium")
        handles, node_ids = [], []
        for i in range(3):
            handle = d.add_node(f"smelter{i}")
            store = NodeStore(handle.db_url)
            try:
                store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(agg))
                import_paths(store, [*background_files(), files[i]])
            finally:
                store.close()
            node_ids.append(register_supernode(settings, handle.supernode_public.read_text()))
            handles.append(handle)
        spec = sample_spec("aluminium", n_firms=3, round_id="deployed-attack-2024")
        roster = sign_roster(agg, spec.round_id, spec_hash(spec),
                             {n: h.identity_public for n, h in zip(node_ids, handles, strict=True)})
        for handle in handles:
            store = NodeStore(handle.db_url)
            try:
                rounds.receive_invitation(store, sign_spec(spec, agg), roster)
                uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
                rounds.approve(store, spec.round_id, uuid, confirm_zeros=True, approved_by="attack test")
            finally:
                store.close()
            d.start_supernode(handle)
        entries = [RosterEntry("", h.identity_public, "", n) for n, h in zip(node_ids, handles, strict=True)]
        screen = StageRun(Stage.SCREEN, len(screen_layout(spec)), None)

        # Execute + Assert 1: a ServerApp asking for threshold 2 of 3 is refused before any key leaves
        with pytest.raises(FlowerRunFailed, match="SecAggAborted"):
            FlowerSecAggRunner(settings, serverapp="tests.lying_apps:low_threshold_server_app")(spec, entries, screen)
        for handle in handles:
            sent = _stages(handle, spec.round_id)
            assert {stage for stage, _ in sent} == {"secagg:refused:screen:advertise_keys"}, sent
            assert all("threshold 2; accepted: at least 3" in note for _, note in sent)

        # Execute + Assert 2: the honest run is served (the refused run did not spend the consent)
        honest = FlowerSecAggRunner(settings)
        result = honest(spec, entries, screen)
        honest.end(spec)  # the round's run ends after its one stage here
        assert len(result.contributors) == 3 and any(result.summed)

        # Execute + Assert 3: the same round run again is refused by every node; no key advertised twice
        with pytest.raises(FlowerRunFailed, match="SecAggAborted"):
            FlowerSecAggRunner(settings)(spec, entries, screen)
        for handle in handles:
            sent = _stages(handle, spec.round_id)
            assert [stage for stage, _ in sent].count("secagg:screen:advertise_keys") == 1, sent
            assert "secagg:screen:consistency" in {stage for stage, _ in sent}
            assert any("already used by Flower run" in note for _, note in sent), sent
