"""Tests of the one reader interface (lca.io.readers): format detection and read_any over the three formats."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from lca.errors import ImportFailed
from lca.io.diagnostics import Rule
from lca.io.readers import READERS, detect_format, read_any
from lca.refdata import reference_bundle

DATA = Path(__file__).resolve().parent / "data"
TIANGONG = DATA / "tiangong_sample" / "ILCD"
TIANGONG_ZIP = DATA / "tiangong_sample" / "tiangong_sample_ilcd.zip"
USLCI = DATA / "uslci_jsonld_v1_sample"
TEMPLATES = Path(__file__).resolve().parents[1] / "lca" / "data" / "template"
AVIATION_FUEL = "0092e030-a689-412a-9636-18dd5e427e4e"
RULES = {r.value for r in Rule}


def _zip_of(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return out


@pytest.mark.parametrize(("name", "fmt"), [
    ("template.csv", "template"), ("template.xlsx", "template"), ("ilcd-folder", "ilcd"), ("ilcd.zip", "ilcd"),
    ("jsonld-folder", "jsonld"), ("jsonld.zip", "jsonld"),
])
def test_read_any_detects_each_format_and_reads_it(tmp_path: Path, name: str, fmt: str) -> None:
    path = {
        "template.csv": TEMPLATES / "pcf_template_example.csv",
        "template.xlsx": TEMPLATES / "pcf_template_example.xlsx",
        "ilcd-folder": TIANGONG,
        "ilcd.zip": TIANGONG_ZIP,
        "jsonld-folder": USLCI,
        "jsonld.zip": USLCI.parent / "jsonld.zip",
    }[name]
    if name == "jsonld.zip":
        path = _zip_of(USLCI, tmp_path / "jsonld.zip")

    result = read_any(path, reference_bundle())

    assert result.format == fmt == detect_format(path).format
    assert result.bundle.processes
    assert not [d for d in result.diagnostics if d.severity == "error"]
    assert {d.rule for d in result.diagnostics} <= RULES
    # every dataset points back to where it came from
    assert set(result.sources.datasets) >= set(result.bundle.processes)


def test_archive_datasets_point_back_to_their_file_in_the_source() -> None:
    result = read_any(TIANGONG_ZIP)

    assert result.sources.datasets[AVIATION_FUEL] == (f"{TIANGONG_ZIP.name}:processes/{AVIATION_FUEL}.xml", "/")


def test_a_folder_holding_xml_and_json_is_read_as_ilcd(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(TIANGONG, folder)
    (folder / "notes.json").write_text(json.dumps({"note": "not JSON-LD"}))

    assert detect_format(folder).format == "ilcd"
    assert [r.format for r in READERS] == ["template", "ilcd", "jsonld"]


def _unreadable(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / {"missing": "nothing.zip", "text": "notes.txt", "fake-zip": "fake.zip", "empty": "empty"}[kind]
    if kind == "text":
        path.write_text("hello")
    elif kind == "fake-zip":
        path.write_bytes(b"not a zip")
    elif kind == "empty":
        path.mkdir()
    return path


@pytest.mark.parametrize(("kind", "rule"), [
    ("missing", "missing-file"), ("text", "unknown-format"), ("fake-zip", "unreadable-file"),
    ("empty", "unknown-format"),
])
def test_what_no_reader_reads_fails_naming_the_file_and_what_is_accepted(tmp_path: Path, kind: str,
                                                                         rule: str) -> None:
    path = _unreadable(tmp_path, kind)

    with pytest.raises(ImportFailed) as raised:
        read_any(path)

    [d] = raised.value.diagnostics
    assert (d.severity, d.rule, d.file) == ("error", rule, str(path))
    assert "ILCD" in d.message and "JSON-LD" in d.message and ".csv" in d.message


def test_broken_sources_report_only_shared_rule_names(tmp_path: Path) -> None:
    folder = tmp_path / "ILCD"
    shutil.copytree(TIANGONG, folder)
    target = folder / "processes" / f"{AVIATION_FUEL}.xml"
    target.write_text(target.read_text(encoding="utf-8").replace("<meanAmount>", "<meanAmount>x", 1),
                      encoding="utf-8")
    (folder / "sources" / "04b619f5-3b6a-4cce-9bca-09783c55d2f9.xml").write_text("<broken")

    result = read_any(folder)

    rules = {d.rule for d in result.diagnostics if d.severity == "error"}
    assert rules and rules <= RULES


def test_every_rule_is_reported_through_the_shared_constants() -> None:
    import ast

    root = Path(__file__).resolve().parents[1]
    files = [*sorted((root / "lca" / "io").rglob("*.py")), root / "lca" / "validate.py", root / "node" / "service.py"]
    spelled: list[str] = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            # Diagnostic(rule="...") or report("error", "some-rule", ...) with a literal name
            if isinstance(node, ast.keyword) and node.arg == "rule" and isinstance(node.value, ast.Constant):
                spelled.append(f"{file.name}: rule={node.value.value!r}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("report", "error", "warn", "info") and node.args):
                first = node.args[1] if node.func.attr == "report" and len(node.args) > 1 else node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    spelled.append(f"{file.name}:{node.lineno}: {first.value!r}")
    assert spelled == []
