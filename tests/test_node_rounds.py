"""The node's consent flow: verified invitations, plaintext preview, approval, outbox (CLI and library)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keys.identity import generate_identity, public_key_b64
from node import rounds
from node.contribute import map_process
from node.service import import_paths
from node.store import NodeStore
from pcf.cli import app
from pcf.samples import background_files, firm_files, sample_spec
from protocols.errors import InvalidSignature
from protocols.roster import sign_roster
from protocols.spec import SignedSpec, sign_spec, spec_hash

runner = CliRunner()
AGG = generate_identity()


@pytest.fixture
def node(tmp_path: Path) -> tuple[NodeStore, str]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store = NodeStore(url)
    store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(AGG))
    import_paths(store, background_files() + [firm_files("aluminium")[0]])
    return store, url


def firm_uuid(store: NodeStore) -> str:
    return next(p.uuid for p in store.bundle().processes.values() if p.annual_production)


def invite(store: NodeStore) -> str:
    spec = sample_spec("aluminium")
    roster = sign_roster(AGG, spec.round_id, spec_hash(spec), {"7": public_key_b64(AGG)})
    rounds.receive_invitation(store, sign_spec(spec, AGG), roster)
    return spec.round_id


def test_invitation_signed_by_another_key_is_refused(node: tuple[NodeStore, str]) -> None:
    store, _ = node
    with pytest.raises(InvalidSignature):
        rounds.receive_invitation(store, sign_spec(sample_spec("aluminium"), generate_identity()))


def test_roster_not_signed_by_the_aggregator_is_refused(node: tuple[NodeStore, str]) -> None:
    store, _ = node
    spec = sample_spec("aluminium")
    forged = sign_roster(generate_identity(), spec.round_id, spec_hash(spec), {"7": public_key_b64(AGG)})
    with pytest.raises(InvalidSignature):
        rounds.receive_invitation(store, sign_spec(spec, AGG), forged)
    good = sign_roster(AGG, spec.round_id, spec_hash(spec), {"7": public_key_b64(AGG)})
    swapped = good.model_copy(update={"roster": {"7": public_key_b64(generate_identity())}})
    with pytest.raises(InvalidSignature):
        rounds.receive_invitation(store, sign_spec(spec, AGG), swapped)


def test_tampered_spec_is_refused(node: tuple[NodeStore, str]) -> None:
    store, _ = node
    signed = sign_spec(sample_spec("aluminium"), AGG)
    doc = signed.model_dump(mode="json")
    doc["spec"]["min_participants"] = 2
    with pytest.raises(InvalidSignature):
        rounds.receive_invitation(store, SignedSpec.model_validate(doc))


def test_preview_shows_the_firms_values_and_own_footprint(node: tuple[NodeStore, str]) -> None:
    store, url = node
    round_id = invite(store)
    result = runner.invoke(app, ["node", "preview", round_id, "--process", firm_uuid(store), "--confirm-zeros",
                                 "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["values"]["Alumina"] == 1.921
    assert data["values"]["Electricity, AC, grid and captive"] == 13280.0  # the Yunnan grid flow is an alias
    assert data["weight"] == 600000
    # by hand (AR5): 1.921*1170 + 0.412*510 + 0.016*1980 + 13280*0.1073 + 1498 CO2,
    # CH4 (1.921*1.10 + 0.412*0.36)*28, N2O 0.016*0.02*265, CF4 0.021*6630, C2F6 0.0021*11100
    co2 = 1.921 * 1170 + 0.412 * 510 + 0.016 * 1980 + 13280 * 0.1073 + 1498
    total = co2 + (1.921 * 1.10 + 0.412 * 0.36) * 28 + 0.016 * 0.02 * 265 + 0.021 * 6630 + 0.0021 * 11100
    assert data["footprint_by_gas"]["CO2"] == pytest.approx(co2, rel=1e-12)
    assert data["footprint_total"] == pytest.approx(total, rel=1e-12)
    slots = {r["slot"]: r for r in data["slots"]}
    assert slots["count"]["integer"] == 1 and slots["w"]["integer"] == 600000
    assert slots["wx[Alumina]"]["integer"] == 600_000 * 1_921_000  # w × x at scale 1 × 10**6
    assert "x[Alumina]" not in slots  # the unweighted mean is not a default statistic
    disclosure = data["disclosure"]
    assert disclosure["p_percent"] == 10 and disclosure["node_min_participants"] == 3 and disclosure["refused"] == []
    assert [s.split(":")[0] for s in disclosure["stages"]] == ["screen", "dominance", "values", "cells"]
    assert slots["n[Alumina]"]["integer"] == 1 and slots["n[Electricity, AC, grid and captive]"]["integer"] == 1


def test_a_component_sums_its_flow_and_aliases_each_converted_to_its_unit(node: tuple[NodeStore, str],
                                                                        tmp_path: Path) -> None:
    store, _ = node
    yunnan = "Yunnan\",云南电网交流电,product,,,13280.0,kWh,"
    text = firm_files("aluminium")[0].read_text(encoding="utf-8")
    assert yunnan in text
    captive = ('input,cc2663fd-48a9-5db5-b170-8173b70205bf,"Electricity, captive coal-fired power plant",'
               "燃煤自备电厂电力,product,,,11808.0,MJ,,primary,,,\n")  # 3280 kWh
    edited = tmp_path / "firm.csv"
    edited.write_text(text.replace(yunnan, yunnan.replace("13280.0", "10.0").replace("kWh", "MWh")) + captive,
                      encoding="utf-8")
    import_paths(store, [edited])
    spec = sample_spec("aluminium")
    power = next(c for c in spec.components if c.aliases)

    mapping = map_process(spec, store.bundle(), firm_uuid(store))

    assert mapping.values[power.flow] == pytest.approx(10_000.0 + 3_280.0, rel=1e-12)
    assert power not in mapping.missing
    assert any("aliases of" in note for note in mapping.notes)


def test_missing_components_must_be_confirmed_as_zeros(node: tuple[NodeStore, str], tmp_path: Path) -> None:
    store, url = node
    round_id = invite(store)
    without = [line for line in firm_files("aluminium")[0].read_text(encoding="utf-8").splitlines(keepends=True)
               if "Aluminium fluoride" not in line]
    edited = tmp_path / "firm.csv"
    edited.write_text("".join(without), encoding="utf-8")
    import_paths(store, [edited])
    result = runner.invoke(app, ["node", "preview", round_id, "--process", firm_uuid(store), "--db", url, "--json"])
    assert result.exit_code == 13
    assert "Aluminium fluoride" in json.loads(result.stdout)["error"]


def test_nothing_is_contributed_without_approval(node: tuple[NodeStore, str]) -> None:
    store, _ = node
    round_id = invite(store)
    with pytest.raises(rounds.ConsentError, match="not approved"):
        rounds.approved_contribution(store, round_id)


def test_approved_vector_is_exactly_the_previewed_one(node: tuple[NodeStore, str]) -> None:
    store, url = node
    round_id = invite(store)
    uuid = firm_uuid(store)
    preview = rounds.preview(store, round_id, uuid, confirm_zeros=True)
    result = runner.invoke(app, ["node", "approve", round_id, "--process", uuid, "--confirm-zeros", "--db", url,
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vector_sha256"] == preview.digest
    _spec, contribution = rounds.approved_contribution(store, round_id)
    assert contribution.ints == preview.contribution.ints


def test_a_new_version_after_approval_does_not_change_what_is_contributed(node: tuple[NodeStore, str],
                                                                         tmp_path: Path) -> None:
    store, _ = node
    round_id = invite(store)
    uuid = firm_uuid(store)
    before = rounds.approve(store, round_id, uuid, confirm_zeros=True)
    edited = tmp_path / "firm.csv"
    edited.write_text(firm_files("aluminium")[0].read_text(encoding="utf-8").replace(",1.921,t,", ",1.95,t,"),
                      encoding="utf-8")
    import_paths(store, [edited])
    _spec, contribution = rounds.approved_contribution(store, round_id)
    assert contribution.ints == before.contribution.ints


def test_outbox_lists_size_and_sha256_of_what_left(node: tuple[NodeStore, str]) -> None:
    store, url = node
    rounds.log_outbound(store, "r1", "superlink", "secagg:share-keys", b"hello")
    result = runner.invoke(app, ["node", "outbox", "--db", url, "--json"])
    [row] = json.loads(result.stdout)
    assert row["size"] == 5 and row["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert row["stage"] == "secagg:share-keys" and row["recipient"] == "superlink"


def test_a_round_below_this_firms_floor_is_refused_at_approval_and_at_contribution(
    node: tuple[NodeStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a round that publishes with 3 firms, approved while the firm accepted 3
    store, url = node
    round_id = invite(store)
    rounds.approve(store, round_id, firm_uuid(store), confirm_zeros=True)

    # Execute: the firm now demands 5 (PCF_NODE_MIN_PARTICIPANTS)
    monkeypatch.setenv("PCF_NODE_MIN_PARTICIPANTS", "5")
    result = runner.invoke(app, ["node", "preview", round_id, "--process", firm_uuid(store), "--db", url,
                                 "--confirm-zeros", "--json"])  # fmt: skip

    # Assert: the preview names the refusal; nothing can be contributed, and a new approval is refused
    assert result.exit_code == 0, result.output
    disclosure = json.loads(result.stdout)["disclosure"]
    assert disclosure["node_min_participants"] == 5
    assert any("min_participants 3 is below 5" in p for p in disclosure["refused"])
    with pytest.raises(rounds.ConsentError, match="below 5"):
        rounds.approved_contribution(store, round_id)
    spec = sample_spec("aluminium", round_id="second-round")
    rounds.receive_invitation(store, sign_spec(spec, AGG), sign_roster(AGG, spec.round_id, spec_hash(spec),
                                                                       {"7": public_key_b64(AGG)}))  # fmt: skip
    with pytest.raises(rounds.ConsentError, match="refused by this node's disclosure rules"):
        rounds.approve(store, spec.round_id, firm_uuid(store), confirm_zeros=True)
    # a floor below 3 is not a setting a firm can choose
    monkeypatch.setenv("PCF_NODE_MIN_PARTICIPANTS", "2")
    with pytest.raises(ValueError, match="greater than or equal to 3"):
        rounds.node_floor()


def test_each_later_stage_is_answered_once_after_the_screen_and_in_order(node: tuple[NodeStore, str]) -> None:
    # a server that re-runs or reorders a round's stages gets each stage's bits or sums at most once
    from protocols.disclosure import Stage

    store, _ = node
    round_id = invite(store)
    rounds.approve(store, round_id, firm_uuid(store), confirm_zeros=True)
    with pytest.raises(rounds.ConsentError, match="before the screen stage"):
        rounds.spend_stage(store, round_id, Stage.DOMINANCE, "run-1")
    rounds.spend_stage(store, round_id, Stage.SCREEN, "run-1")
    with pytest.raises(rounds.ConsentError, match="before stage dominance"):
        rounds.spend_stage(store, round_id, Stage.VALUES, "run-1")
    rounds.spend_stage(store, round_id, Stage.DOMINANCE, "run-1")
    with pytest.raises(rounds.ConsentError, match="already answered"):
        rounds.spend_stage(store, round_id, Stage.DOMINANCE, "run-2")
    with pytest.raises(rounds.ConsentError, match="already used"):
        rounds.spend_stage(store, round_id, Stage.SCREEN, "run-2")
