"""The standard enterprise template (CSV and XLSX): one process header and its exchanges.

Layout (the same in both formats; documented in ``docs/template.md``):

* Section ``process`` (XLSX: sheet ``process``; CSV: the rows after a line ``[process]``):
  two columns ``field,value``, one row per field of :data:`PROCESS_FIELDS`.
* Section ``exchanges`` (XLSX: sheet ``exchanges``; CSV: the rows after a line ``[exchanges]``):
  a header row with the columns of :data:`EXCHANGE_COLUMNS`, then one row per exchange.

A flow is referenced by ``flow_uuid`` when it is already known (reference data, an earlier
import), or defined inline by its names, type and unit; a flow without ``flow_uuid`` gets a
stable name-based UUID (:func:`lca.refdata.stable_uuid`), so that two firms naming the same
product the same way share the flow. Exchange ``internal_id`` is the row number in the file,
so every message can point back to the row.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from lca.io.diagnostics import Diagnostic, Reporter, Rule, SourceMap
from lca.model import (
    DEFAULT_VERSION,
    Bundle,
    Classification,
    DataQuality,
    Exchange,
    Flow,
    FlowPropertyFactor,
    Process,
    Uncertainty,
)
from lca.refdata import flow_property_for_unit, stable_uuid

__all__ = [
    "EXCHANGE_COLUMNS",
    "PROCESS_FIELDS",
    "SourceMap",
    "TemplateResult",
    "read_template",
    "write_template",
]

#: field -> description, in the order the template lists them.
PROCESS_FIELDS: dict[str, str] = {
    "uuid": "UUID of the process (leave empty for a new one: derived from the names and location)",
    "version": "ILCD version, e.g. 01.00.000 (a changed process gets a new version automatically)",
    "name_en": "process name in English",
    "name_zh": "process name in Chinese (名称)",
    "description_en": "description in English",
    "description_zh": "description in Chinese",
    "classification_gbt4754": "GB/T 4754-2017 industry code, e.g. 3216 (aluminium smelting)",
    "location": "ISO 3166 / 3166-2 code, e.g. CN or CN-YN",
    "reference_year": "year the data represent, e.g. 2024",
    "valid_until": "last year the data are valid for, e.g. 2025",
    "annual_production": "annual production, in reference-flow units (weight in aggregation rounds)",
    "technology_en": "technology description in English",
    "technology_zh": "technology description in Chinese",
    "dqi_technological": "technological representativeness, 1 (very good) .. 5 (very poor)",
    "dqi_geographical": "geographical representativeness, 1..5",
    "dqi_temporal": "temporal representativeness, 1..5",
    "dqi_completeness": "completeness, 1..5",
    "dqi_precision": "precision, 1..5",
}

EXCHANGE_COLUMNS: dict[str, str] = {
    "direction": "input or output",
    "flow_uuid": "UUID of a known flow (optional when the flow is defined by the next columns)",
    "flow_name_en": "flow name in English",
    "flow_name_zh": "flow name in Chinese",
    "flow_type": "product, waste or elementary",
    "compartment": "for elementary flows: air, water, soil or resource",
    "cas": "CAS number of an elementary flow, e.g. 124-38-9",
    "amount": "amount for the stated amount of the reference product (any basis; results are per reference unit), finite, >= 0",
    "unit": "unit, e.g. t, kg, kWh, MJ, m3, t*km",
    "reference": "yes on the one reference product row",
    "data_source": "primary (measured at the firm) or secondary (literature, databases)",
    "provider_uuid": "UUID of the process that provides this input (optional)",
    "uncertainty_geosd": "geometric standard deviation of a lognormal distribution (optional, > 1)",
    "comment": "free text",
}

_COMPARTMENTS = {
    "air": ["Emissions", "Emissions to air", "Emissions to air, unspecified"],
    "water": ["Emissions", "Emissions to water", "Emissions to water, unspecified"],
    "soil": ["Emissions", "Emissions to soil", "Emissions to soil, unspecified"],
    "resource": ["Resources", "Resources from ground"],
}


@dataclass
class TemplateResult:
    bundle: Bundle
    diagnostics: list[Diagnostic]
    sources: SourceMap


def _rows_csv(path: Path) -> tuple[list[tuple[int, list[str]]], list[tuple[int, list[str]]]]:
    text = path.read_text(encoding="utf-8-sig")
    header: list[tuple[int, list[str]]] = []
    exchanges: list[tuple[int, list[str]]] = []
    section: list[tuple[int, list[str]]] | None = None
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        first = row[0].strip().lower() if row else ""
        if first == "[process]":
            section = header
            continue
        if first == "[exchanges]":
            section = exchanges
            continue
        if section is None or not any(c.strip() for c in row) or first.startswith("#"):
            continue
        section.append((lineno, row))
    return header, exchanges


def _rows_xlsx(path: Path) -> tuple[list[tuple[int, list[str]]], list[tuple[int, list[str]]]]:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        out: list[list[tuple[int, list[str]]]] = []
        for sheet in ("process", "exchanges"):
            if sheet not in wb.sheetnames:
                raise KeyError(sheet)
            rows: list[tuple[int, list[str]]] = []
            for lineno, values in enumerate(wb[sheet].iter_rows(values_only=True), start=1):
                cells = ["" if v is None else (repr(v) if isinstance(v, float) else str(v)) for v in values]
                if any(c.strip() for c in cells) and not cells[0].strip().startswith("#"):
                    rows.append((lineno, cells))
            out.append(rows)
        return out[0], out[1]
    finally:
        wb.close()


def known_units() -> list[str]:
    """Units a template may use for a flow it defines (those of the reference unit groups)."""
    from lca.refdata import reference_bundle

    return [u.name for g in reference_bundle().unit_groups.values() for u in g.units]


def _parse_float(text: str) -> float:
    return float(text.replace(",", "").strip())


def read_template(path: Path, known: Bundle | None = None) -> TemplateResult:
    """Read one filled template (``.csv`` or ``.xlsx``) into a bundle of one process and its new flows.

    Parameters
    ----------
    path:
        The template file.
    known:
        Datasets already known (reference data, the node's store); a ``flow_uuid`` found
        there needs no inline definition.

    Returns
    -------
    TemplateResult
        The bundle, every finding as a :class:`Diagnostic` naming file, row, field and value,
        and where each exchange came from.
    """
    known = known or Bundle()
    name = path.name
    diags: list[Diagnostic] = []
    sources = SourceMap()
    bundle = Bundle()

    report = Reporter(name, diags)

    def err(row: int, fld: str, value: object, message: str, rule: Rule = Rule.INVALID_VALUE) -> None:
        report.error(rule, message, f"row {row}", fld, None if value is None else str(value))

    try:
        if path.suffix.lower() == ".xlsx":
            header, rows = _rows_xlsx(path)
        elif path.suffix.lower() == ".csv":
            header, rows = _rows_csv(path)
        else:
            report.error(Rule.UNKNOWN_FORMAT, f"unknown template format {path.suffix!r}; accepted: .csv, .xlsx",
                         field="suffix", value=path.suffix)
            return TemplateResult(bundle, diags, sources)
    except KeyError as exc:
        report.error(Rule.MISSING_SECTION, "the workbook lacks this sheet; accepted: sheets 'process' and 'exchanges'",
                     field="sheet", value=str(exc.args[0]))
        return TemplateResult(bundle, diags, sources)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        report.error(Rule.UNREADABLE_FILE, f"cannot read the file: {exc}")
        return TemplateResult(bundle, diags, sources)

    fields: dict[str, tuple[int, str]] = {}
    for lineno, row in header:
        key = row[0].strip()
        if key.lower() == "field":
            continue
        if key not in PROCESS_FIELDS:
            err(lineno, key, row[1] if len(row) > 1 else "", "unknown process field; accepted: "
                + ", ".join(PROCESS_FIELDS), Rule.UNKNOWN_FIELD)
            continue
        fields[key] = (lineno, row[1].strip() if len(row) > 1 else "")

    def get(key: str) -> str:
        return fields.get(key, (0, ""))[1]

    def row_of(key: str) -> int:
        return fields.get(key, (0, ""))[0]

    if not get("name_en") and not get("name_zh"):
        err(row_of("name_en"), "name_en", "", "a process needs a name in English or Chinese", Rule.MISSING_FIELD)
    location = get("location") or "CN"
    process_uuid = get("uuid") or stable_uuid("process", get("name_en") or get("name_zh"), location)

    def number(row: int, key: str, text: str, accepted: str) -> float | None:
        """``text`` as a finite float; an error diagnostic (unparsable, NaN, infinite) otherwise."""
        try:
            value = _parse_float(text)
        except ValueError:
            err(row, key, text, f"not a number; accepted: {accepted}", Rule.UNPARSABLE_NUMBER)
            return None
        if not math.isfinite(value):
            report.non_finite(f"row {row}", key, text)
            return None
        return value

    def int_field(key: str, lo: int | None = None, hi: int | None = None) -> int | None:
        text = get(key)
        if not text:
            return None
        number_value = number(row_of(key), key, text, "a whole number")
        if number_value is None:
            return None
        value = int(number_value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            err(row_of(key), key, text, f"out of range; accepted: {lo}..{hi}")
            return None
        return value

    dq = DataQuality(**{k: int_field(f"dqi_{k}", 1, 5) for k in
                        ("technological", "geographical", "temporal", "completeness", "precision")})
    production: float | None = None
    if get("annual_production"):
        production = number(row_of("annual_production"), "annual_production", get("annual_production"),
                            "a finite number > 0")
        if production is not None and production <= 0:
            err(row_of("annual_production"), "annual_production", get("annual_production"),
                "annual production must be a finite number > 0")
            production = None

    classifications = []
    if get("classification_gbt4754"):
        classifications.append(Classification(system="GB/T 4754-2017", code=get("classification_gbt4754")))

    exchanges: list[Exchange] = []
    reference: list[str] = []
    columns: list[str] = []
    for lineno, row in rows:
        if not columns:
            columns = [c.strip() for c in row]
            unknown = [c for c in columns if c and c not in EXCHANGE_COLUMNS]
            for c in unknown:
                err(lineno, c, c, "unknown exchange column; accepted: " + ", ".join(EXCHANGE_COLUMNS), Rule.UNKNOWN_FIELD)
            for required in ("direction", "amount", "unit"):
                if required not in columns:
                    err(lineno, required, None, "required exchange column is missing", Rule.MISSING_FIELD)
            continue
        cell = {c: (row[i].strip() if i < len(row) else "") for i, c in enumerate(columns) if c}
        iid = str(lineno)
        direction = cell.get("direction", "").lower()
        if direction not in ("input", "output"):
            err(lineno, "direction", cell.get("direction"), "accepted: input, output")
            continue
        amount_text = cell.get("amount", "")
        amount_value = number(lineno, "amount", amount_text, "a decimal like 0.42 or 1.5e3")
        if amount_value is None:
            continue
        amount = amount_value
        unit = cell.get("unit", "")
        flow_uuid = cell.get("flow_uuid", "").lower()
        flow_type = cell.get("flow_type", "").lower() or None
        name_en, name_zh = cell.get("flow_name_en", ""), cell.get("flow_name_zh", "")
        compartment = cell.get("compartment", "").lower()
        if flow_type is not None and flow_type not in ("product", "waste", "elementary"):
            err(lineno, "flow_type", flow_type, "accepted: product, waste, elementary")
            continue
        if compartment and compartment not in _COMPARTMENTS:
            err(lineno, "compartment", compartment, "accepted: " + ", ".join(_COMPARTMENTS))
            continue
        if not flow_uuid and not (name_en or name_zh):
            err(lineno, "flow_uuid", "", "an exchange needs flow_uuid or a flow name", Rule.MISSING_FIELD)
            continue
        if not flow_uuid:
            flow_uuid = stable_uuid(flow_type or "product", name_en or name_zh, compartment)
        if flow_uuid not in known.flows and (name_en or name_zh):
            prop = flow_property_for_unit(unit)
            if prop is None:
                err(lineno, "unit", unit, "unknown unit for a new flow; accepted: " + ", ".join(known_units()),
                    Rule.UNKNOWN_UNIT)
                continue
            flow = Flow(
                uuid=flow_uuid,
                name={k: v for k, v in (("en", name_en), ("zh", name_zh)) if v},
                flow_type=flow_type or "product",  # type: ignore[arg-type]
                cas=cell.get("cas") or None,
                compartment=_COMPARTMENTS.get(compartment, []),
                properties=[FlowPropertyFactor(flow_property=prop, factor=1.0, reference=True)],
            )
            previous = bundle.flows.get(flow_uuid)
            if previous is not None and previous.content_hash() != flow.content_hash():
                err(lineno, "flow_uuid", flow_uuid, "this UUID is already defined above with different content",
                    Rule.DUPLICATE_UUID)
                continue
            bundle.add(flow)
            sources.datasets.setdefault(flow_uuid, (name, f"row {lineno}"))
        geosd_text = cell.get("uncertainty_geosd", "")
        uncertainty = None
        if geosd_text:
            geosd = number(lineno, "uncertainty_geosd", geosd_text, "a number > 1")
            if geosd is not None and geosd > 1:
                uncertainty = Uncertainty(distribution="lognormal", geomean=amount, geosd=geosd)
            elif geosd is not None:
                err(lineno, "uncertainty_geosd", geosd_text, "a geometric SD must be a number > 1")
        data_source = cell.get("data_source", "").lower() or None
        if data_source not in (None, "primary", "secondary"):
            err(lineno, "data_source", data_source, "accepted: primary, secondary")
            data_source = None
        exchange = Exchange(
            internal_id=iid,
            flow=flow_uuid,
            direction=direction,  # type: ignore[arg-type]
            amount=amount,
            unit=unit,
            data_source=data_source,  # type: ignore[arg-type]
            uncertainty=uncertainty,
            provider=cell.get("provider_uuid", "").lower() or None,
            comment={"en": cell["comment"]} if cell.get("comment") else {},
        )
        exchanges.append(exchange)
        sources.exchanges[(process_uuid, iid)] = (name, f"row {lineno}")
        if cell.get("reference", "").lower() in ("yes", "y", "true", "1", "x", "是"):
            reference.append(iid)

    if not columns:
        report.error(Rule.MISSING_SECTION, "the template has no exchanges section; accepted: a line [exchanges] "
                     "(CSV) or a sheet 'exchanges' (XLSX) with a header row", "[exchanges]")
    version = get("version") or DEFAULT_VERSION
    try:
        process = Process(
            uuid=process_uuid,
            version=version,
            name={k: v for k, v in (("en", get("name_en")), ("zh", get("name_zh"))) if v},
            description={k: v for k, v in (("en", get("description_en")), ("zh", get("description_zh"))) if v},
            classifications=classifications,
            location=location,
            reference_year=int_field("reference_year"),
            valid_until=int_field("valid_until"),
            reference_exchanges=reference,
            exchanges=exchanges,
            data_quality=dq,
            technology={k: v for k, v in (("en", get("technology_en")), ("zh", get("technology_zh"))) if v},
            annual_production=production,
        )
    except ValueError as exc:
        err(row_of("version"), "version", version, f"invalid process header: {exc}", Rule.INVALID_DATASET)
        return TemplateResult(bundle, diags, sources)
    bundle.add(process)
    sources.datasets[process.uuid] = (name, "[process]")
    return TemplateResult(bundle, diags, sources)


def _process_rows(process: Process | None) -> list[list[str]]:
    rows = [["field", "value"]]
    values: dict[str, str] = {k: "" for k in PROCESS_FIELDS}
    if process is not None:
        values.update(
            uuid=process.uuid,
            version=process.version,
            name_en=process.name.get("en", ""),
            name_zh=process.name.get("zh", ""),
            description_en=process.description.get("en", ""),
            description_zh=process.description.get("zh", ""),
            classification_gbt4754=next(
                (c.code or "" for c in process.classifications if c.system.startswith("GB/T 4754")), ""),
            location=process.location or "",
            reference_year="" if process.reference_year is None else str(process.reference_year),
            valid_until="" if process.valid_until is None else str(process.valid_until),
            annual_production="" if process.annual_production is None else repr(process.annual_production),
            technology_en=process.technology.get("en", ""),
            technology_zh=process.technology.get("zh", ""),
        )
        for k, v in process.data_quality.indicators().items():
            values[f"dqi_{k}"] = str(v)
    else:
        values["version"] = DEFAULT_VERSION
    rows.extend([k, values[k]] for k in PROCESS_FIELDS)
    return rows


def _exchange_rows(process: Process | None, bundle: Bundle) -> list[list[str]]:
    rows = [list(EXCHANGE_COLUMNS)]
    if process is None:
        return rows
    for ex in process.exchanges:
        flow = bundle.flows.get(ex.flow)
        compartment = ""
        if flow is not None and flow.flow_type == "elementary":
            compartment = next((k for k, v in _COMPARTMENTS.items() if v == flow.compartment), "")
        rows.append([
            ex.direction,
            ex.flow,
            flow.name.get("en", "") if flow else "",
            flow.name.get("zh", "") if flow else "",
            flow.flow_type if flow else "",
            compartment,
            (flow.cas or "") if flow else "",
            repr(ex.amount),
            ex.unit,
            "yes" if ex.internal_id in process.reference_exchanges else "",
            ex.data_source or "",
            ex.provider or "",
            repr(ex.uncertainty.geosd) if ex.uncertainty and ex.uncertainty.geosd else "",
            ex.comment.get("en", ""),
        ])
    return rows


def write_template(path: Path, process: Process | None = None, bundle: Bundle | None = None) -> None:
    """Write a template file (``.csv`` or ``.xlsx``): blank when ``process`` is None."""
    bundle = bundle or Bundle()
    header, exchanges = _process_rows(process), _exchange_rows(process, bundle)
    if path.suffix.lower() == ".xlsx":
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        assert ws is not None
        ws.title = "process"
        for row in header:
            ws.append(row)
        ws2 = wb.create_sheet("exchanges")
        for row in exchanges:
            ws2.append(row)
        ws3 = wb.create_sheet("help")
        ws3.append(["section", "field", "meaning"])
        for k, v in PROCESS_FIELDS.items():
            ws3.append(["process", k, v])
        for k, v in EXCHANGE_COLUMNS.items():
            ws3.append(["exchanges", k, v])
        wb.save(path)
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["[process]"])
    writer.writerows(header)
    writer.writerow([])
    writer.writerow(["[exchanges]"])
    writer.writerows(exchanges)
    path.write_text(buf.getvalue(), encoding="utf-8")
