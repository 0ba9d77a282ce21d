"""`pcf demo` end to end: real processes, the published factor against a plaintext computation."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lca.gwp import GWPSet

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[1] / "lca" / "data" / "samples"
PCF = Path(sys.executable).parent / "pcf"


def _template(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    header: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    section = None
    columns: list[str] = []
    for row in csv.reader(path.read_text(encoding="utf-8").splitlines()):
        if row and row[0] in ("[process]", "[exchanges]"):
            section = row[0]
            continue
        if not row or not any(row):
            continue
        if section == "[process]" and row[0] != "field":
            header[row[0]] = row[1] if len(row) > 1 else ""
        elif section == "[exchanges]":
            if not columns:
                columns = row
            else:
                rows.append(dict(zip(columns, row, strict=False)))
    return header, rows


GAS_BY_NAME = {"carbon dioxide (fossil)": ("CO2", "fossil"), "carbon dioxide (biogenic)": ("CO2", "biogenic"),
               "methane (fossil)": ("CH4", "fossil"), "nitrous oxide": ("N2O", "fossil"),
               "tetrafluoromethane": ("CF4", "fossil"), "hexafluoroethane": ("C2F6", "fossil")}


def plaintext_factor(industry: str, n: int) -> float:
    """Production-weighted mean footprint of the first ``n`` firms, by direct arithmetic on the CSV files.

    Independent of the solver: each product input times its background process's emissions per
    unit (background files: per 1 unit of product), plus the firm's direct emissions, with AR5.
    """
    gwp = GWPSet.load("AR5")
    per_unit: dict[str, float] = {}
    for path in (SAMPLES / "background").glob("*.csv"):
        _h, rows = _template(path)
        product = next(r for r in rows if r["reference"] == "yes")
        per_unit[product["flow_name_en"]] = sum(
            float(r["amount"]) * gwp.gwp(*GAS_BY_NAME[r["flow_name_en"]]) for r in rows if r["flow_type"] == "elementary")
    total_w = total = 0.0
    for i in range(1, n + 1):
        header, rows = _template(SAMPLES / industry / f"firm_{i}.csv")
        f = 0.0
        for r in rows:
            if r["reference"] == "yes":
                continue
            if r["flow_type"] == "elementary":
                f += float(r["amount"]) * gwp.gwp(*GAS_BY_NAME[r["flow_name_en"]])
            else:
                f += float(r["amount"]) * per_unit[r["flow_name_en"]]
        w = float(header["annual_production"])
        total_w += w
        total += w * f
    return total / total_w


def leftover_processes(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "pytest" not in cmd:
            found.append(f"{pid}: {cmd[:200]}")
    return found


@pytest.mark.parametrize("protocol", ["secagg", "paillier"])
def test_demo_publishes_the_plaintext_weighted_mean_and_leaves_nothing_running(tmp_path: Path, protocol: str) -> None:
    workdir = tmp_path / f"demo-{protocol}"
    out = subprocess.run([str(PCF), "demo", "--nodes", "3", "--protocol", protocol, "--json", "--workdir",
                          str(workdir)], capture_output=True, text=True, timeout=400, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout)
    factor = result["factor"]
    expected = plaintext_factor("aluminium", 3)
    # within the fixed-point resolution of the footprint slots (scale 100: 0.01 kg CO2e/t per firm)
    assert float(factor["value"]) == pytest.approx(expected, abs=0.05)
    assert factor["n_participants"] == 3 and factor["unit"] == "kgCO2e/t"
    assert result["verify"]["ok"] is True
    # HTTPS with the deployment's CA (issue 9, property 6: behaviour changed deliberately from http://)
    assert result["api_url"].startswith("https://127.0.0.1:") and result["pact"]["client_secret"]
    assert result["pact"]["token_url"].startswith("https://") and Path(result["ca_cert"]).is_file()
    assert leftover_processes(str(workdir)) == []
    # one schema per role: the association's database holds only the aggregator's tables, each node's only its own
    assert _tables(workdir / "aggregator" / "aggregator.db") == AGGREGATOR_TABLES
    node_dbs = sorted((workdir / "nodes").glob("node*/node.db"))
    assert len(node_dbs) == 3
    for db in node_dbs:
        assert _tables(db) == NODE_TABLES, db


AGGREGATOR_TABLES = {"member", "round", "contribution", "partial_decryption", "aggregate", "factor", "translog_entry",
                     "delivery", "seen_request", "factor_cohort", "alembic_version_aggregator"}
NODE_TABLES = {"dataset_version", "exchange", "import_record", "invitation", "consent", "outbox", "node_setting",
               "alembic_version_node"}


def _tables(db: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
