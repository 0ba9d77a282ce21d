"""Tests of the enterprise template reader (lca.io.template) on derived copies of the shipped example."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from lca.io.template import read_template
from lca.refdata import reference_bundle

TEMPLATES = Path(__file__).resolve().parents[1] / "lca" / "data" / "template"
EXAMPLE = TEMPLATES / "pcf_template_example.csv"
EXAMPLE_XLSX = TEMPLATES / "pcf_template_example.xlsx"
ANODE_ROW = 26
"""The row of the carbon anode input (0.42 t, geometric SD 1.05) in the example."""


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    out = tmp_path / "firm.csv"
    out.write_text(text.replace(old, new), encoding="utf-8")
    return out


def test_the_example_reads_without_findings() -> None:
    result = read_template(EXAMPLE, reference_bundle())

    assert result.diagnostics == []
    assert len(next(iter(result.bundle.processes.values())).exchanges) == 8


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_or_infinite_amount_is_refused_naming_file_row_field_and_value(tmp_path: Path, text: str) -> None:
    path = _edited(tmp_path, ",0.42,t,", f",{text},t,")

    result = read_template(path, reference_bundle())

    [d] = result.diagnostics
    assert (d.severity, d.rule, d.file, d.location, d.field, d.value) == (
        "error", "non-finite-number", "firm.csv", f"row {ANODE_ROW}", "amount", text)
    assert "finite" in d.message
    process = next(iter(result.bundle.processes.values()))
    assert str(ANODE_ROW) not in [e.internal_id for e in process.exchanges]


@pytest.mark.parametrize(("old", "new", "field", "row"), [
    ("annual_production,350000", "annual_production,inf", "annual_production", 13),
    ("reference_year,2024", "reference_year,NaN", "reference_year", 11),
    (",0.42,t,,primary,,1.05,", ",0.42,t,,primary,,inf,", "uncertainty_geosd", ANODE_ROW),
])
def test_nan_or_infinity_in_any_number_field_is_refused(tmp_path: Path, old: str, new: str, field: str,
                                                        row: int) -> None:
    path = _edited(tmp_path, old, new)

    result = read_template(path, reference_bundle())

    [d] = result.diagnostics
    assert (d.rule, d.location, d.field) == ("non-finite-number", f"row {row}", field)


def test_nan_in_an_xlsx_cell_is_refused_naming_sheet_row(tmp_path: Path) -> None:
    wb = openpyxl.load_workbook(EXAMPLE_XLSX)
    sheet = wb["exchanges"]
    header = [c.value for c in sheet[1]]
    row = next(r for r in sheet.iter_rows(min_row=2) if r[header.index("flow_name_en")].value == "Alumina")
    row[header.index("amount")].value = "NaN"
    path = tmp_path / "firm.xlsx"
    wb.save(path)

    result = read_template(path, reference_bundle())

    [d] = result.diagnostics
    assert (d.rule, d.file, d.location, d.field, d.value) == (
        "non-finite-number", "firm.xlsx", f"row {row[0].row}", "amount", "NaN")


def test_unparsable_and_unknown_fields_use_the_shared_rule_names(tmp_path: Path) -> None:
    path = _edited(tmp_path, "dqi_precision,2", "dqi_precision,2\ncolour,blue")
    path.write_text(path.read_text(encoding="utf-8").replace(",0.42,t,", ",zero point four,t,"), encoding="utf-8")

    result = read_template(path, reference_bundle())

    assert sorted((d.rule, d.field) for d in result.diagnostics) == [
        ("unknown-field", "colour"), ("unparsable-number", "amount")]
