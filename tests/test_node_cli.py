"""The node's import, validation, versions and diff, driven through the `pcf` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcf.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "lca" / "data" / "template" / "pcf_template_example.csv"
runner = CliRunner()


def pcf(*args: str) -> tuple[int, dict | list | str]:
    result = runner.invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'node.db'}"


def edit(tmp_path: Path, replace: dict[str, str], name: str = "firm.csv") -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(text, encoding="utf-8")
    return out


def errors_of(payload: dict) -> list[dict]:
    return payload["errors"]


def test_import_template_stores_process_with_bilingual_names(db: str) -> None:
    code, out = pcf("node", "import", str(EXAMPLE), "--db", db, "--json")
    assert code == 0, out
    assert out["ok"] and out["counts"]["process:new"] == 1
    code, shown = pcf("node", "show", "5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f", "--db", db, "--json")
    assert code == 0
    assert shown["name"]["zh"] == "原铝锭（电解铝），示例冶炼公司"
    assert shown["location"] == "CN-YN"
    assert shown["annual_production"] == 350000
    electricity = [e for e in shown["exchanges"] if e["unit"] == "kWh"]
    assert electricity[0]["amount"] == 13450


def test_xlsx_and_csv_templates_read_the_same(tmp_path: Path) -> None:
    from lca.io.template import read_template
    from lca.refdata import reference_bundle

    a = read_template(EXAMPLE, reference_bundle()).bundle
    b = read_template(EXAMPLE.with_suffix(".xlsx"), reference_bundle()).bundle
    # internal ids are row numbers, which differ between the two layouts; all else is equal
    pa, pb = next(iter(a.processes.values())), next(iter(b.processes.values()))
    strip = {"internal_id"}
    assert [e.model_dump(exclude=strip) for e in pa.exchanges] == [e.model_dump(exclude=strip) for e in pb.exchanges]
    assert pa.model_dump(exclude={"exchanges", "reference_exchanges"}) == pb.model_dump(
        exclude={"exchanges", "reference_exchanges"})
    assert a.flows == b.flows


def test_dry_run_reports_and_writes_nothing(db: str) -> None:
    code, out = pcf("node", "import", str(EXAMPLE), "--dry-run", "--db", db, "--json")
    assert code == 0 and out["dry_run"] and out["import_id"] is None
    code, listed = pcf("node", "list", "--db", db, "--json")
    assert listed == []


def test_unknown_unit_is_refused_naming_file_row_field_value(tmp_path: Path, db: str) -> None:
    bad = edit(tmp_path, {"13450,kWh": "13450,kWhh"})
    code, out = pcf("node", "import", str(bad), "--db", db, "--json")
    assert code == 10
    [e] = errors_of(out)
    assert (e["rule"], e["file"], e["location"], e["field"], e["value"]) == ("unknown-unit", "firm.csv", "row 28",
                                                                           "unit", "kWhh")
    assert "accepted: " in e["message"] and "kWh" in e["message"]
    assert pcf("node", "list", "--db", db, "--json")[1] == []


def test_missing_flow_reference_is_refused(tmp_path: Path, db: str) -> None:
    bad = edit(tmp_path, {"08a91e70-3ddc-11dd-923d-0050c2490048": "00000000-0000-0000-0000-000000000001"})
    code, out = pcf("node", "import", str(bad), "--db", db, "--json")
    assert code == 10
    [e] = errors_of(out)
    assert e["rule"] == "missing-flow" and e["value"] == "00000000-0000-0000-0000-000000000001"
    assert e["location"] == "row 29"


@pytest.mark.parametrize("amount,rule", [("-0.42", "negative-amount"), ("nan", "non-finite-number"),
                                         ("inf", "non-finite-number")])
def test_negative_or_non_finite_amounts_are_refused(tmp_path: Path, db: str, amount: str, rule: str) -> None:
    bad = edit(tmp_path, {",0.42,t,": f",{amount},t,"})
    code, out = pcf("node", "import", str(bad), "--db", db, "--json")
    assert code == 10
    [e] = errors_of(out)
    assert e["rule"] == rule and e["field"] == "amount" and e["location"] == "row 26"


def test_unparsable_amount_is_refused(tmp_path: Path, db: str) -> None:
    bad = edit(tmp_path, {",0.42,t,": ",zero point four,t,"})
    code, out = pcf("node", "import", str(bad), "--db", db, "--json")
    [e] = errors_of(out)
    assert code == 10 and e["value"] == "zero point four" and e["location"] == "row 26"


def test_missing_reference_flow_is_refused(tmp_path: Path, db: str) -> None:
    bad = edit(tmp_path, {",1,t,yes,": ",1,t,,"})
    code, out = pcf("node", "import", str(bad), "--db", db, "--json")
    assert code == 10
    [e] = errors_of(out)
    assert e["rule"] == "missing-reference-flow" and e["file"] == "firm.csv"


def test_duplicate_uuid_with_different_content_is_refused(tmp_path: Path, db: str) -> None:
    a = edit(tmp_path, {}, "a.csv")
    b = edit(tmp_path, {"1.925,t": "1.95,t"}, "b.csv")
    code, out = pcf("node", "import", str(a), str(b), "--db", db, "--json")
    assert code == 10
    [e] = errors_of(out)
    assert e["rule"] == "duplicate-uuid" and e["value"] == "5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f"
    assert "a.csv" in e["message"] and e["file"] == "b.csv"


def test_mass_balance_imbalance_is_a_warning_with_its_size(db: str) -> None:
    code, out = pcf("node", "import", str(EXAMPLE), "--db", db, "--json")
    assert code == 0
    [w] = [d for d in out["diagnostics"] if d["rule"] == "mass-balance"]
    # inputs 1925 + 420 + 18 kg = 2363 kg (electricity carries no mass); outputs 1000 + 1520 + 0.0374 kg
    assert w["severity"] == "warning"
    assert w["value"] == f"{2363 - 2520.0374:.6g} kg"
    assert "2363" in w["message"] and "2520.04" in w["message"]


def test_new_version_on_change_history_diff_and_anomaly_warning(tmp_path: Path, db: str) -> None:
    assert pcf("node", "import", str(EXAMPLE), "--db", db, "--json")[0] == 0
    changed = edit(tmp_path, {"13450,kWh": "13600,kWh", ",0.42,t,": ",0.60,t,"})
    code, out = pcf("node", "import", str(changed), "--db", db, "--json")
    assert code == 0
    anomalies = [d for d in out["diagnostics"] if d["rule"] == "anomaly"]
    # anode 0.42 -> 0.60 t/t is +42.9 % (> 30 %); electricity +1.1 % is not reported
    assert len(anomalies) == 1 and "+42.9%" in anomalies[0]["message"] and anomalies[0]["location"] == "row 26"
    uuid = "5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f"
    code, hist = pcf("node", "history", uuid, "--db", db, "--json")
    assert [h["version"] for h in hist] == ["01.00.000", "01.00.001"]
    code, diff = pcf("node", "diff", uuid, "01.00.000", "01.00.001", "--db", db, "--json")
    assert code == 0
    got = {(c["flow_name"], c["old"], c["new"]) for c in diff["changes"]}
    assert got == {("Prebaked carbon anode", 0.42, 0.6), ("Electricity, AC, grid, Yunnan", 13450.0, 13600.0)}
    # the first version is still there, unchanged
    code, v1 = pcf("node", "show", uuid, "--version", "01.00.000", "--db", db, "--json")
    assert [e["amount"] for e in v1["exchanges"] if e["unit"] == "kWh"] == [13450.0]


def test_reimporting_identical_data_creates_no_version(db: str) -> None:
    pcf("node", "import", str(EXAMPLE), "--db", db, "--json")
    code, out = pcf("node", "import", str(EXAMPLE), "--db", db, "--json")
    assert code == 0 and out["counts"].get("process:unchanged") == 1
    assert len(pcf("node", "history", "5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f", "--db", db, "--json")[1]) == 1


def test_diff_of_unknown_version_names_the_stored_ones(db: str) -> None:
    pcf("node", "import", str(EXAMPLE), "--db", db, "--json")
    code, out = pcf("node", "diff", "5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f", "01.00.000", "09.00.000", "--db", db,
                    "--json")
    assert code == 11 and "stored versions: 01.00.000" in out["error"]


def test_template_command_writes_blank_and_example(tmp_path: Path) -> None:
    code, out = pcf("node", "template", str(tmp_path / "t"), "--json")
    assert code == 0
    names = sorted(Path(p).name for p in out["written"])
    assert "pcf_template_blank.xlsx" in names and "pcf_template_example.csv" in names
    shutil.rmtree(tmp_path / "t")


SAMPLES = Path(__file__).resolve().parents[1] / "lca" / "data" / "samples"


def _import_firm(db: str) -> str:
    files = [str(p) for p in sorted((SAMPLES / "background").glob("*.csv"))] + [str(SAMPLES / "aluminium" /
                                                                                   "firm_1.csv")]
    code, out = pcf("node", "import", *files, "--db", db, "--json")
    assert code == 0, out
    code, listed = pcf("node", "list", "--db", db, "--json")
    return next(p["uuid"] for p in listed if "Dianxi" in p["name_en"])


def test_footprint_cli_matches_hand_computation_with_tree(db: str) -> None:
    uuid = _import_firm(db)
    code, out = pcf("node", "footprint", uuid, "--tree", "2", "--db", db, "--json")
    assert code == 0, out
    # per kg of aluminium (the flow's reference unit); by hand per t (AR5):
    co2 = 1.921 * 1170 + 0.412 * 510 + 0.016 * 1980 + 13280 * 0.1073 + 1498
    ch4 = (1.921 * 1.10 + 0.412 * 0.36) * 28
    total = co2 + ch4 + 0.016 * 0.02 * 265 + 0.021 * 6630 + 0.0021 * 11100
    assert out["process"] == uuid and out["unit"] == "kg CO2e" and out["gwp_set"] == "AR5"
    assert out["total"] * 1000 == pytest.approx(total, rel=1e-12)
    assert out["by_gas"]["CO2"] * 1000 == pytest.approx(co2, rel=1e-12)
    assert out["by_gas"]["CH4"] * 1000 == pytest.approx(ch4, rel=1e-12)
    children = {c["name"]["en"]: c for c in out["tree"]["children"]}
    grid = children["Electricity, AC, grid, Yunnan (background)"]
    assert grid["cumulative"] * 1000 == pytest.approx(13280 * 0.1073, rel=1e-12)
    assert sum(c["cumulative"] for c in children.values()) + out["tree"]["direct"] == pytest.approx(out["total"])
    code, ar6 = pcf("node", "footprint", uuid, "--method", "AR6", "--db", db, "--json")
    assert ar6["gwp_set"] == "AR6" and ar6["by_gas"]["CF4"] * 1000 == pytest.approx(0.021 * 7380, rel=1e-12)


def test_footprint_of_unknown_process_is_an_error(db: str) -> None:
    _import_firm(db)
    code, out = pcf("node", "footprint", "00000000-0000-0000-0000-00000000dead", "--db", db, "--json")
    assert code in (11, 12) and "error" in out


@pytest.mark.parametrize("fmt", ["ilcd", "jsonld"])
def test_export_then_import_elsewhere_keeps_uuids_amounts_and_both_languages(tmp_path: Path, db: str,
                                                                             fmt: str) -> None:
    uuid = _import_firm(db)
    out_zip = tmp_path / f"export-{fmt}.zip"
    code, out = pcf("node", "export", str(out_zip), "--format", fmt, "--process", uuid, "--db", db, "--json")
    assert code == 0, out
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, out = pcf("node", "import", str(out_zip), "--db", other, "--json")
    assert code == 0, out
    code, a = pcf("node", "show", uuid, "--db", db, "--json")
    code, b = pcf("node", "show", uuid, "--db", other, "--json")
    assert b["name"] == a["name"] and b["name"]["zh"] == "原铝锭（电解），滇西水电铝业"
    assert [(e["flow"], e["amount"], e["unit"], e["direction"]) for e in b["exchanges"]] == [
        (e["flow"], e["amount"], e["unit"], e["direction"]) for e in a["exchanges"]]
