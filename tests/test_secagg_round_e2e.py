"""A secagg round end to end over the real Deployment Engine: enrol, register, roster, consent, flwr run, publish."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from round_harness import Firm, admin, enrol_and_start, open_round, public, run_round

from pcf.deploy import Deployment
from pcf.samples import firm_files, sample_spec

pytestmark = pytest.mark.slow


def test_secagg_round_publishes_the_weighted_mean_of_the_approving_firms_footprints(tmp_path: Path) -> None:
    # Prepare: SuperLink (TLS, SuperNode auth), aggregator wired to it, four nodes, three of which consent
    started = time.monotonic()
    with Deployment(tmp_path / "deploy") as d:
        d.start_superlink()
        d.start_aggregator({"PCF_AGG_FLOWER_STAGE_TIMEOUT_SECONDS": "45"})
        files = firm_files("aluminium")
        firms = [Firm.create(d, f"smelter{i}", files[i]) for i in range(3)]
        abstainer = Firm.create(d, "abstainer", files[0])
        enrol_and_start(d, [*firms, abstainer])
        spec = sample_spec("aluminium", n_firms=3, round_id="e2e-aluminium-2024")
        opened = open_round(d, spec)
        roster = opened["roster"]
        assert roster is not None and set(roster["roster"]) == {f.node_id for f in [*firms, abstainer]}
        log = public(d, "/api/v1/log").json()["entries"]
        assert [e["type"] for e in log] == ["spec_published", "roster"]
        assert log[1]["payload"]["roster"] == roster["roster"]
        previews = [f.accept_invitation(spec.round_id, consent=True) for f in firms]
        abstainer.accept_invitation(spec.round_id, consent=False)

        # Execute
        ready = time.monotonic()
        result = run_round(d, spec.round_id, timeout=300)
        round_seconds = time.monotonic() - ready

        # Assert: published with the three consenting firms; the abstainer's error made it a dropout
        assert result["state"] == "published", f"{result['decision']}\n{d.log('aggregator')[-3000:]}"
        (listed,) = public(d, "/api/v1/factors").json()
        factor = public(d, f"/api/v1/factors/{listed['factor_id']}").json()
        assert factor["n_participants"] == 3
        weights = [p.mapping.weight for p in previews if p is not None]
        footprints = [p.mapping.footprint_total for p in previews if p is not None]
        expected = sum(w * f for w, f in zip(weights, footprints, strict=True)) / sum(weights)
        assert factor["value"] == pytest.approx(expected, abs=2 / spec.footprint.scale)
        stages = [e["payload"] for e in public(d, "/api/v1/log").json()["entries"] if e["type"] == "stage"]
        assert [(p["stage"], p["decision"], p["n"]) for p in stages] == [
            ("screen", "proceed", 3), ("dominance", "proceed", 3), ("values", "proceed", 3), ("cells", "proceed", 3)
        ]
        assert factor["production_covered"] == pytest.approx(sum(weights))
        for firm in firms:
            # every stage is a secure sum of its own: four of each message, each in the outbox
            sent = {row.stage for row in firm.outbox(spec.round_id)}
            for stage in ("screen", "dominance", "values", "cells"):
                for message in ("advertise_keys", "share_keys", "masked_input", "unmask"):
                    assert f"secagg:{stage}:{message}" in sent, sent
        assert not any("masked_input" in row.stage for row in abstainer.outbox(spec.round_id))
        members = admin(d, "GET", "/api/v1/members").json()
        assert all(m["status"] == "approved" and m["flower_node_id"] for m in members)
    print(f"\nsecagg round over the Deployment Engine: {round_seconds:.1f} s (whole test {time.monotonic() - started:.1f} s)")


def test_a_member_whose_supernode_cannot_be_registered_stays_pending(tmp_path: Path) -> None:
    with Deployment(tmp_path / "deploy") as d:
        d.start_superlink()
        d.start_aggregator()
        firm = Firm.create(d, "smelter", None)
        firm.handle.supernode_public.write_text("ssh-ed25519 AAAAnot-a-p384-key smelter\n")
        firm.enroll()
        response = firm.approve_membership()
        assert response.status_code == 502, response.text
        assert response.json()["error"] == "registration-failed"
        (member,) = admin(d, "GET", "/api/v1/members").json()
        assert member["status"] == "pending" and member["flower_node_id"] is None
