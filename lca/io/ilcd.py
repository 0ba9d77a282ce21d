"""Read and write ILCD 1.1 data (zip or folder) into and from the :mod:`lca.model` bundle.

Reading is tolerant: elements are found by their local names, whatever their namespace and
(mostly) their order, so that real data that fails the XSDs (the TianGong database does) can
still be read. Every deviation the reader copes with becomes a :class:`~lca.errors.Diagnostic`
naming the file, the XPath (local names, 1-based positions), the field and the value; nothing
raises on the first problem.

Mapping rules (ILCD -> model), where ILCD leaves a choice:

* Names: the parts ``baseName``, ``treatmentStandardsRoutes``, ``mixAndLocationTypes`` and
  ``functionalUnitFlowProperties`` (flows: ``flowProperties``) of one language are joined with
  ``"; "``; separators inside a part (TianGong's ``" ; "``) are kept verbatim. The writer puts
  the whole name into ``baseName``, so a name read back is the same string.
* Classifications: ``common:classification/@name`` is the system (``"ILCD"`` when absent), the
  ``common:class`` texts ordered by ``@level`` the path, the deepest class's ``@classId`` the code.
  Elementary flow categorisation becomes :attr:`Flow.compartment`.
* Exchange data source: ``dataSourceType`` Primary / "> 90% primary" -> primary, Secondary /
  "Mixed primary / secondary" -> secondary; without it ``dataDerivationTypeStatus`` Measured /
  Calculated -> primary, Estimated -> secondary, anything else (Unknown derivation, Missing ...)
  -> none. The writer writes ``dataSourceType``.
* Exchange unit: ILCD amounts are in the reference unit of the flow's reference flow property;
  that unit is looked up through the flow property's unit group.
* Uncertainty: ``relativeStandardDeviation95In`` is SDg^2 for log-normal (geosd = its square
  root, geomean = the mean amount) and 2*SD in percent of the mean for normal (sd = |mean| * v /
  200); ``minimumAmount`` / ``maximumAmount`` are kept for any distribution.
* Allocation: ``allocatedFraction`` is in percent (3 decimals in the XSD); the writer also
  stores the exact fraction in the extension namespace and the reader prefers it.
* Data quality indicators: ``Very good`` .. ``Very poor`` -> 1 .. 5.
* GWP set of an LCIA method: the ``pcf:gwpSet`` extension when present, else from the name,
  comments and methodology: "AR6" / "IPCC 2021" / "EF 3.1" -> AR6, "AR5" / "IPCC 2013" /
  "EF 3.0" -> AR5 (EF 3.0 used the IPCC 2013 factors, EF 3.1 the IPCC 2021 ones), "AR4" /
  "IPCC 2007" -> AR4.
* Versions: ILCD requires ``NN.NN.NNN``; a version like TianGong's ``00.01.05`` is read as
  ``00.01.005`` (same number, a warning says so). CAS numbers are read without leading zeros
  (``7440-09-7``) and written zero-padded as the XSD requires (``007440-09-7``).

Fields ILCD lacks go into ``common:other`` in the namespace :data:`PCF_NS` (prefix ``pcf``):
``annualProduction`` (process), exact ``allocation``, ``uncertainty``, ``provider``, non-numeric
``internalId`` and amounts in a non-reference ``unit`` (exchange), ``gwpSet`` / ``indicator``
(LCIA method), ``location`` (life cycle model).
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from lxml.etree import _Element as Element

from lca.errors import Diagnostic, ImportFailed, UnitError
from lca.model import (
    Bundle,
    CharacterisationFactor,
    Classification,
    Contact,
    DataQuality,
    Dataset,
    Exchange,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    I18n,
    LCIAMethod,
    LifeCycleModel,
    ModelLink,
    Process,
    Source,
    Uncertainty,
    Unit,
    UnitGroup,
)
from lca.units import to_reference_amount

__all__ = [
    "COMMON_NS",
    "MODULE_NS",
    "PCF_NS",
    "dataset_xml",
    "detect_gwp_set",
    "read_ilcd",
    "read_locations",
    "write_ilcd",
]

COMMON_NS = "http://lca.jrc.it/ILCD/Common"
PCF_NS = "https://pcf-dataspace.org/ilcd-ext"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

#: The ILCD namespace of each module (life cycle models: the EF 2017 eILCD extension).
MODULE_NS: dict[str, str] = {
    "process": "http://lca.jrc.it/ILCD/Process",
    "flow": "http://lca.jrc.it/ILCD/Flow",
    "flow_property": "http://lca.jrc.it/ILCD/FlowProperty",
    "unit_group": "http://lca.jrc.it/ILCD/UnitGroup",
    "lcia_method": "http://lca.jrc.it/ILCD/LCIAMethod",
    "source": "http://lca.jrc.it/ILCD/Source",
    "contact": "http://lca.jrc.it/ILCD/Contact",
    "model": "http://eplca.jrc.ec.europa.eu/ILCD/LifeCycleModel/2017",
}
_FOLDER: dict[str, str] = {
    "process": "processes",
    "flow": "flows",
    "flow_property": "flowproperties",
    "unit_group": "unitgroups",
    "lcia_method": "lciamethods",
    "source": "sources",
    "contact": "contacts",
    "model": "lifecyclemodels",
}
_KIND_OF_FOLDER = {v: k for k, v in _FOLDER.items()}
_ROOT: dict[str, str] = {
    "process": "processDataSet",
    "flow": "flowDataSet",
    "flow_property": "flowPropertyDataSet",
    "unit_group": "unitGroupDataSet",
    "lcia_method": "LCIAMethodDataSet",
    "source": "sourceDataSet",
    "contact": "contactDataSet",
    "model": "lifeCycleModelDataSet",
}
_REF_TYPE: dict[str, str] = {
    "process": "process data set",
    "flow": "flow data set",
    "flow_property": "flow property data set",
    "unit_group": "unit group data set",
    "lcia_method": "LCIA method data set",
    "source": "source data set",
    "contact": "contact data set",
    "model": "lifeCycleModel data set",
}
#: Modules read in this order: exchanges need units, which need flows, properties and groups.
_READ_ORDER = ["unit_group", "flow_property", "flow", "source", "contact", "lcia_method", "process", "model"]

_FLOW_TYPES = {"Elementary flow": "elementary", "Product flow": "product", "Waste flow": "waste"}
_FLOW_TYPE_ILCD = {v: k for k, v in _FLOW_TYPES.items()}
_DQI_NAMES = {
    "Technological representativeness": "technological",
    "Geographical representativeness": "geographical",
    "Time representativeness": "temporal",
    "Completeness": "completeness",
    "Precision": "precision",
}
_DQI_ILCD = {v: k for k, v in _DQI_NAMES.items()}
_DQI_VALUES = {"Very good": 1, "Good": 2, "Fair": 3, "Poor": 4, "Very poor": 5}
_DQI_VALUE_ILCD = {v: k for k, v in _DQI_VALUES.items()}
_DQI_NOT_RATED = {"Not evaluated / unknown", "Not applicable"}
_SOURCE_TYPE = {
    "Primary": "primary",
    "> 90% primary": "primary",
    "Mixed primary / secondary": "secondary",
    "Secondary": "secondary",
}
_DERIVATION = {"Measured": "primary", "Calculated": "primary", "Estimated": "secondary"}
_DERIVATION_OTHER = {"Unknown derivation", "Missing important", "Missing unimportant"}
_DISTRIBUTIONS = {
    "log-normal": "lognormal",
    "lognormal": "lognormal",
    "normal": "normal",
    "triangular": "triangular",
    "uniform": "uniform",
    "undefined": "undefined",
}
_DISTRIBUTION_ILCD = {"lognormal": "log-normal", "normal": "normal", "triangular": "triangular",
                      "uniform": "uniform", "undefined": "undefined"}
_IMPACT_CATEGORIES = [
    "Climate change", "Ozone depletion", "Terrestrial Eutrophication", "Aquatic Eutrophication",
    "Acidification", "Photochemical ozone creation", "Land use", "Abiotic resource depletion",
    "Biotic resource depletion", "Ionizing radiation", "Cancer human health effects",
    "Non-cancer human health effects", "Respiratory inorganics", "Aquatic eco-toxicity",
    "Terrestrial eco-toxicity",
]

#: ILCD 1.1 child order of the containers whose order the reader checks (local names).
_ORDER: dict[str, list[str]] = {
    "process/dataSetInformation": [
        "UUID", "name", "identifierOfSubDataSet", "synonyms", "complementingProcesses",
        "classificationInformation", "generalComment", "referenceToExternalDocumentation", "other",
    ],
    "process/quantitativeReference": ["referenceToReferenceFlow", "functionalUnitOrOther", "other"],
    "process/time": ["referenceYear", "dataSetValidUntil", "timeRepresentativenessDescription", "other"],
    "process/LCIMethodAndAllocation": [
        "typeOfDataSet", "LCIMethodPrinciple", "deviationsFromLCIMethodPrinciple", "LCIMethodApproaches",
        "deviationsFromLCIMethodApproaches", "modellingConstants", "deviationsFromModellingConstants",
        "referenceToLCAMethodDetails", "other",
    ],
    "process/exchange": [
        "referenceToFlowDataSet", "location", "functionType", "exchangeDirection", "referenceToVariable",
        "meanAmount", "resultingAmount", "minimumAmount", "maximumAmount", "uncertaintyDistributionType",
        "relativeStandardDeviation95In", "allocations", "dataSourceType", "dataDerivationTypeStatus",
        "referencesToDataSource", "generalComment", "other",
    ],
    "flow/dataSetInformation": [
        "UUID", "name", "synonyms", "classificationInformation", "CASNumber", "sumFormula",
        "generalComment", "other",
    ],
    "flow/flowProperty": [
        "referenceToFlowPropertyDataSet", "meanValue", "minimumValue", "maximumValue",
        "uncertaintyDistributionType", "relativeStandardDeviation95In", "dataDerivationTypeStatus",
        "generalComment", "other",
    ],
    "unit_group/unit": ["name", "meanValue", "generalComment", "other"],
}

_PROCESS_NAME_PARTS = ["baseName", "treatmentStandardsRoutes", "mixAndLocationTypes", "functionalUnitFlowProperties"]
_FLOW_NAME_PARTS = ["baseName", "treatmentStandardsRoutes", "mixAndLocationTypes", "flowProperties"]

_VERSION_RE = re.compile(r"^(\d{1,2})\.(\d{1,2})(?:\.(\d{1,3}))?$")
_CAS_RE = re.compile(r"^0*(\d{2,})-(\d{2})-(\d)$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CJK_RE = re.compile(r"[\u3400-\u9fff]")



# --------------------------------------------------------------------------- tree helpers


def _local(el: Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _kids(el: Element | None, name: str) -> list[Element]:
    if el is None:
        return []
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def _kid(el: Element | None, name: str) -> Element | None:
    if el is None:
        return None
    for c in el:
        if isinstance(c.tag, str) and _local(c) == name:
            return c
    return None


def _find(el: Element | None, *path: str) -> Element | None:
    for name in path:
        el = _kid(el, name)
        if el is None:
            return None
    return el


def _findall(el: Element | None, *path: str) -> list[Element]:
    if el is None or not path:
        return []
    parent = _find(el, *path[:-1]) if len(path) > 1 else el
    return _kids(parent, path[-1])


def _text(el: Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    text = el.text.strip()
    return text or None


def _xpath(el: Element) -> str:
    """A namespace-free XPath of ``el``: local names, with a 1-based position among same-named siblings."""
    parts: list[str] = []
    node: Element | None = el
    while node is not None:
        name = _local(node)
        parent = node.getparent()
        if parent is not None:
            same = _kids(parent, name)
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def _i18n(elements: Iterable[Element]) -> I18n:
    """Texts by ``xml:lang`` (``en`` when absent); several texts of one language are joined by a blank line."""
    out: I18n = {}
    for el in elements:
        text = _text(el)
        if text is None:
            continue
        lang = (el.get(XML_LANG) or "en").strip() or "en"
        out[lang] = f"{out[lang]}\n\n{text}" if lang in out else text
    return out


# --------------------------------------------------------------------------- diagnostics


@dataclass
class _Ctx:
    """The diagnostics of one file."""

    file: str
    out: list[Diagnostic]

    def add(
        self,
        severity: str,
        rule: str,
        message: str,
        el: Element | None = None,
        field: str | None = None,
        value: object = None,
        location: str | None = None,
    ) -> None:
        self.out.append(
            Diagnostic(
                severity=severity,  # type: ignore[arg-type]
                rule=rule,
                message=message,
                file=self.file,
                location=location if location is not None else (_xpath(el) if el is not None else None),
                field=field,
                value=None if value is None else str(value),
            )
        )

    def warn(self, rule: str, message: str, el: Element | None = None, field: str | None = None,
             value: object = None) -> None:
        self.add("warning", rule, message, el, field, value)

    def error(self, rule: str, message: str, el: Element | None = None, field: str | None = None,
              value: object = None) -> None:
        self.add("error", rule, message, el, field, value)

    def number(self, el: Element | None, field: str, *, required: bool = False) -> float | None:
        """The float in ``el``; an error when it is not a number (or missing and required)."""
        text = _text(el)
        if text is None:
            if required:
                self.error("missing-value", f"{field} is missing; a number is required", el, field, "")
            return None
        try:
            return float(text)
        except ValueError:
            self.error("unparsable-number", f"{field} {text!r} is not a number (accepted: a decimal like 1.5 or 2e-3)",
                       el, field, text)
            return None

    def integer(self, el: Element | None, field: str) -> int | None:
        text = _text(el)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            self.error("unparsable-number", f"{field} {text!r} is not an integer (accepted: a year like 2020)",
                       el, field, text)
            return None

    def check_order(self, el: Element | None, key: str) -> None:
        """Warn once per container when its children deviate from the ILCD 1.1 order or names."""
        if el is None:
            return
        order = _ORDER[key]
        rank = {name: i for i, name in enumerate(order)}
        last = -1
        last_name = ""
        for child in el:
            if not isinstance(child.tag, str):
                continue
            name = _local(child)
            if name not in rank:
                self.warn("xsd-deviation", f"element {name!r} is not an ILCD 1.1 child of {_local(el)!r} "
                          f"(accepted: {', '.join(order)}); skipped", child, name, _text(child))
                continue
            if rank[name] < last:
                self.warn("xsd-deviation", f"element {name!r} comes after {last_name!r}; ILCD 1.1 order is "
                          f"{', '.join(order)}; read regardless of order", child, name)
                return
            last, last_name = rank[name], name


# --------------------------------------------------------------------------- input sources


@dataclass
class _Entry:
    kind: str
    name: str
    data: bytes


@dataclass
class _Input:
    entries: list[_Entry] = field(default_factory=list)
    locations: bytes | None = None
    locations_name: str | None = None


def _gather(path: Path, diags: list[Diagnostic]) -> _Input:
    """The module files of an ILCD zip or folder (module folders may sit under a top folder)."""
    found = _Input()
    if not path.exists():
        diags.append(Diagnostic(severity="error", rule="missing-file", message="no such file or folder",
                                file=str(path)))
        return found

    def take(parts: list[str], name: str, read: Callable[[], bytes]) -> None:
        if not parts[-1].lower().endswith(".xml"):
            return
        if parts[-1] == "ILCDLocations.xml":
            if found.locations is None:
                found.locations, found.locations_name = read(), name
            return
        if len(parts) >= 2 and parts[-2].lower() in _KIND_OF_FOLDER:
            found.entries.append(_Entry(_KIND_OF_FOLDER[parts[-2].lower()], name, read()))

    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            parts = list(file.relative_to(path).parts)
            take(parts, str(file), file.read_bytes)
        return found
    try:
        with zipfile.ZipFile(path) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
                take(parts, f"{path}!{info.filename}", lambda info=info: zf.read(info))  # type: ignore[misc]
    except (zipfile.BadZipFile, OSError) as exc:
        diags.append(Diagnostic(severity="error", rule="unreadable-file",
                                message=f"not an ILCD zip or folder: {exc}", file=str(path)))
    return found


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers must not be shared between threads. No entities, no network.
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)


def _parse(data: bytes, ctx: _Ctx, parser: etree.XMLParser) -> Element | None:
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else "?"
        ctx.add("error", "unparsable-xml", f"the file is not well-formed XML: {exc.msg}", location=f"line {line}")
        return None


# --------------------------------------------------------------------------- common parts


def _version(admin_root: Element, ctx: _Ctx) -> str:
    el = _find(admin_root, "administrativeInformation", "publicationAndOwnership", "dataSetVersion")
    raw = _text(el)
    if raw is None:
        ctx.warn("missing-value", "common:dataSetVersion is missing; read as 01.00.000",
                 el if el is not None else admin_root, "dataSetVersion", "")
        return "01.00.000"
    m = _VERSION_RE.match(raw)
    if m is None:
        ctx.error("invalid-version", f"version {raw!r} is not an ILCD version (accepted: NN.NN.NNN like 01.00.000)",
                  el, "dataSetVersion", raw)
        return "01.00.000"
    version = _canonical_version(raw)
    if version != raw:
        ctx.warn("xsd-deviation", f"version {raw!r} does not match the ILCD pattern NN.NN[.NNN]; read as {version!r}",
                 el, "dataSetVersion", raw)
    return version


def _canonical_version(raw: str) -> str:
    m = _VERSION_RE.match(raw)
    if m is None:
        return raw
    major, minor, sub = m.groups()
    out = f"{int(major):02d}.{int(minor):02d}"
    return out + (f".{int(sub):03d}" if sub is not None else "")


def _uuid(info: Element | None, root: Element, ctx: _Ctx) -> str | None:
    el = _kid(info, "UUID")
    value = _text(el)
    if value is None:
        ctx.error("missing-uuid", "common:UUID is missing; the data set is skipped",
                  el if el is not None else (info if info is not None else root), "UUID", "")
        return None
    if not _UUID_RE.match(value):
        ctx.warn("xsd-deviation", f"UUID {value!r} is not of the form 8-4-4-4-12 hex digits", el, "UUID", value)
    return value.lower()


def _level(el: Element) -> int:
    try:
        return int(el.get("level", "0"))
    except ValueError:
        return 0


def _classifications(info: Element | None) -> list[Classification]:
    out: list[Classification] = []
    for cl in _findall(info, "classificationInformation", "classification"):
        classes = sorted(_kids(cl, "class"), key=_level)
        path = [t for t in (_text(c) for c in classes) if t]
        code = classes[-1].get("classId") if classes else None
        if cl.get(f"{{{PCF_NS}}}codeOnly") == "true":
            path = []
        out.append(Classification(system=(cl.get("name") or "ILCD").strip(), code=code or None, path=path))
    return out


def _joined_name(name_el: Element | None, parts: list[str]) -> I18n:
    by_lang: dict[str, list[str]] = {}
    for part in parts:
        for lang, text in _i18n(_kids(name_el, part)).items():
            by_lang.setdefault(lang, []).append(text)
    return {lang: "; ".join(texts) for lang, texts in by_lang.items()}


def _refs(elements: Iterable[Element]) -> list[str]:
    out: list[str] = []
    for el in elements:
        ref = (el.get("refObjectId") or "").strip().lower()
        if ref and ref not in out:
            out.append(ref)
    return out


def _check_other_text(root: Element, ctx: _Ctx) -> None:
    for el in root.iter(f"{{{COMMON_NS}}}other"):
        if el.text and el.text.strip():
            ctx.warn("xsd-deviation", "common:other holds text; ILCD allows only elements there; ignored",
                     el, "other", el.text.strip())


def _ext(el: Element | None, name: str) -> Element | None:
    """Our extension element ``pcf:name`` in the ``common:other`` child of ``el``."""
    other = _kid(el, "other")
    if other is None:
        return None
    return other.find(f"{{{PCF_NS}}}{name}")


# --------------------------------------------------------------------------- module readers


def _read_unit_group(root: Element, ctx: _Ctx) -> UnitGroup | None:
    info = _find(root, "unitGroupInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    units: list[Unit] = []
    ref_el = _find(root, "unitGroupInformation", "quantitativeReference", "referenceToReferenceUnit")
    ref_id = _text(ref_el)
    reference: str | None = None
    for u in _findall(root, "units", "unit"):
        ctx.check_order(u, "unit_group/unit")
        name = _text(_kid(u, "name"))
        factor = ctx.number(_kid(u, "meanValue"), "meanValue", required=True)
        if name is None:
            ctx.error("missing-value", "unit has no name; skipped", u, "name", "")
            continue
        if factor is None:
            continue
        units.append(Unit(name=name, factor=factor, description=_i18n(_kids(u, "generalComment"))))
        if ref_id is not None and (u.get("dataSetInternalID") or "").strip() == ref_id:
            reference = name
    if reference is None:
        ctx.error("unresolved-reference",
                  f"referenceToReferenceUnit {ref_id!r} names no unit of the group "
                  f"(accepted: a dataSetInternalID of units/unit); the group is skipped",
                  ref_el if ref_el is not None else root, "referenceToReferenceUnit", ref_id or "")
        return None
    return UnitGroup(uuid=uid, version=_version(root, ctx), name=_i18n(_kids(info, "name")),
                     description=_i18n(_kids(info, "generalComment")),
                     classifications=_classifications(info), units=units, reference_unit=reference)


def _read_flow_property(root: Element, ctx: _Ctx) -> FlowProperty | None:
    info = _find(root, "flowPropertiesInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    ref = _find(root, "flowPropertiesInformation", "quantitativeReference", "referenceToReferenceUnitGroup")
    group = (ref.get("refObjectId") or "").strip().lower() if ref is not None else ""
    if not group:
        ctx.error("missing-value", "referenceToReferenceUnitGroup/@refObjectId is missing; the property is skipped",
                  ref if ref is not None else root, "refObjectId", "")
        return None
    return FlowProperty(uuid=uid, version=_version(root, ctx), name=_i18n(_kids(info, "name")),
                        description=_i18n(_kids(info, "generalComment")),
                        classifications=_classifications(info), unit_group=group)


def _read_flow(root: Element, ctx: _Ctx) -> Flow | None:
    info = _find(root, "flowInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    ctx.check_order(info, "flow/dataSetInformation")
    type_el = _find(root, "modellingAndValidation", "LCIMethod", "typeOfDataSet")
    raw_type = _text(type_el) or ""
    flow_type = _FLOW_TYPES.get(raw_type)
    if flow_type is None:
        ctx.warn("xsd-deviation", f"typeOfDataSet {raw_type!r} is not Elementary / Product / Waste flow; "
                 f"read as a product flow", type_el if type_el is not None else root, "typeOfDataSet", raw_type)
        flow_type = "product"
    cas_el = _kid(info, "CASNumber")
    cas = _text(cas_el)
    if cas is not None:
        m = _CAS_RE.match(cas)
        if m is None:
            ctx.warn("xsd-deviation", f"CASNumber {cas!r} is not a CAS registry number (accepted: digits-NN-N "
                     f"like 124-38-9); dropped", cas_el, "CASNumber", cas)
            cas = None
        else:
            if not re.match(r"^\d{6}-", cas):
                ctx.warn("xsd-deviation", f"CAS number {cas!r} lacks the leading zeros the XSD requires; "
                         f"read as {'-'.join(m.groups())!r}", cas_el, "CASNumber", cas)
            cas = "-".join(m.groups())
    synonyms: dict[str, list[str]] = {}
    for el in _kids(info, "synonyms"):
        text = _text(el)
        if text is None:
            continue
        lang = el.get(XML_LANG) or "en"
        synonyms.setdefault(lang, []).extend(s.strip() for s in text.split(";") if s.strip())
    compartment: list[str] = []
    for cat in _findall(info, "classificationInformation", "elementaryFlowCategorization"):
        cats = sorted(_kids(cat, "category"), key=_level)
        compartment = [t for t in (_text(c) for c in cats) if t]
        break
    ref_prop_id = _text(_find(root, "flowInformation", "quantitativeReference", "referenceToReferenceFlowProperty"))
    props: list[FlowPropertyFactor] = []
    for fp in _findall(root, "flowProperties", "flowProperty"):
        ctx.check_order(fp, "flow/flowProperty")
        ref = _kid(fp, "referenceToFlowPropertyDataSet")
        prop = (ref.get("refObjectId") or "").strip().lower() if ref is not None else ""
        if not prop:
            ctx.error("missing-value", "flowProperty has no referenceToFlowPropertyDataSet/@refObjectId; skipped",
                      fp, "refObjectId", "")
            continue
        factor = ctx.number(_kid(fp, "meanValue"), "meanValue", required=True)
        if factor is None:
            continue
        is_ref = (fp.get("dataSetInternalID") or "").strip() == (ref_prop_id or "")
        existing = next((p for p in props if p.flow_property == prop), None)
        if existing is not None:
            ctx.warn("duplicate-flow-property",
                     f"flow property {prop} is listed twice (factors {existing.factor!r} and {factor!r}); "
                     f"the {'first' if not is_ref else 'reference'} entry is kept", fp, "refObjectId", prop)
            if is_ref:
                props[props.index(existing)] = FlowPropertyFactor(flow_property=prop, factor=factor, reference=True)
            continue
        props.append(FlowPropertyFactor(flow_property=prop, factor=factor, reference=is_ref))
    if props and not any(p.reference for p in props):
        ctx.warn("unresolved-reference", f"referenceToReferenceFlowProperty {ref_prop_id!r} names no flowProperty; "
                 f"the first one is taken as the reference", root, "referenceToReferenceFlowProperty", ref_prop_id)
        props[0] = props[0].model_copy(update={"reference": True})
    supply = _i18n(_findall(root, "flowInformation", "geography", "locationOfSupply"))
    location = supply.get("en") or next(iter(supply.values()), None)
    return Flow(
        uuid=uid, version=_version(root, ctx),
        name=_joined_name(_kid(info, "name"), _FLOW_NAME_PARTS),
        description=_i18n(_kids(info, "generalComment")), classifications=_classifications(info),
        flow_type=flow_type,  # type: ignore[arg-type]
        cas=cas, formula=_text(_kid(info, "sumFormula")), compartment=compartment, synonyms=synonyms,
        properties=props, location=location,
    )


def _read_source(root: Element, ctx: _Ctx) -> Source | None:
    info = _find(root, "sourceInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    files = [f.get("uri") for f in _kids(info, "referenceToDigitalFile") if f.get("uri")]
    return Source(uuid=uid, version=_version(root, ctx), name=_i18n(_kids(info, "shortName")),
                  description=_i18n(_kids(info, "sourceDescriptionOrComment")),
                  classifications=_classifications(info), citation=_text(_kid(info, "sourceCitation")),
                  url=files[0] if files else None)


def _read_contact(root: Element, ctx: _Ctx) -> Contact | None:
    info = _find(root, "contactInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    name = _i18n(_kids(info, "shortName")) or _i18n(_kids(info, "name"))
    return Contact(uuid=uid, version=_version(root, ctx), name=name,
                   description=_i18n(_kids(info, "contactDescriptionOrComment")),
                   classifications=_classifications(info), email=_text(_kid(info, "email")),
                   url=_text(_kid(info, "WWWAddress")), address=_i18n(_kids(info, "contactAddress")))


def detect_gwp_set(*texts: str) -> str | None:
    """The IPCC report (``AR4`` / ``AR5`` / ``AR6``) a climate-change method's texts name, if any."""
    blob = " ".join(texts)
    rules = [
        ("AR6", r"\bAR6\b|IPCC\s*2021|sixth assessment|\bEF\s*(v)?3\.1\b"),
        ("AR5", r"\bAR5\b|IPCC\s*2013|fifth assessment|\bEF\s*(v)?3\.0\b"),
        ("AR4", r"\bAR4\b|IPCC\s*2007|fourth assessment"),
    ]
    for label, pattern in rules:
        if re.search(pattern, blob, re.IGNORECASE):
            return label
    return None


def _read_method(root: Element, ctx: _Ctx) -> LCIAMethod | None:
    info = _find(root, "LCIAMethodInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    name = _i18n(_kids(info, "name"))
    description = _i18n(_kids(info, "generalComment"))
    methodology = [t for t in (_text(m) for m in _kids(info, "methodology")) if t]
    gwp_el = _ext(info, "gwpSet")
    gwp = _text(gwp_el) if gwp_el is not None else detect_gwp_set(
        *name.values(), *description.values(), *methodology)
    ind_el = _ext(info, "indicator")
    indicator = _text(ind_el) or _text(_kid(info, "impactCategory"))
    ref = _find(root, "LCIAMethodInformation", "quantitativeReference", "referenceQuantity")
    ref_unit = None
    ref_prop = None
    if ref is not None:
        descr = _i18n(_kids(ref, "shortDescription"))
        ref_unit = descr.get("en") or next(iter(descr.values()), None)
        ref_prop = (ref.get("refObjectId") or "").strip().lower() or None
        if ref.get(f"{{{PCF_NS}}}derived") == "true":
            ref_prop = None
    factors: list[CharacterisationFactor] = []
    for f in _findall(root, "characterisationFactors", "factor"):
        fref = _kid(f, "referenceToFlowDataSet")
        flow = (fref.get("refObjectId") or "").strip().lower() if fref is not None else ""
        if not flow:
            ctx.error("missing-value", "factor has no referenceToFlowDataSet/@refObjectId; skipped", f, "refObjectId", "")
            continue
        value = ctx.number(_kid(f, "meanValue"), "meanValue", required=True)
        if value is None:
            continue
        dir_el = _kid(f, "exchangeDirection")
        direction = {"Input": "input", "Output": "output"}.get(_text(dir_el) or "")
        if dir_el is not None and direction is None:
            ctx.warn("xsd-deviation", f"exchangeDirection {_text(dir_el)!r} is not Input or Output; ignored",
                     dir_el, "exchangeDirection", _text(dir_el))
        cf = CharacterisationFactor(flow=flow, value=value, direction=direction)  # type: ignore[arg-type]
        for key, tag in (("species", "species"), ("origin", "origin"), ("flow_property", "flowProperty"),
                         ("unit", "unit")):
            ext = _text(_ext(f, tag))
            if ext is not None:
                setattr(cf, key, ext)
        try:
            factors.append(CharacterisationFactor.model_validate(cf.model_dump()))
        except ValueError as exc:
            ctx.error("invalid-value", f"factor extension is invalid: {exc}", f, "other")
    method = LCIAMethod(uuid=uid, version=_version(root, ctx), name=name, description=description,
                        classifications=_classifications(info), gwp_set=gwp, factors=factors,
                        reference_property=ref_prop)
    if indicator:
        method.indicator = indicator
    if ref_unit:
        method.reference_unit = ref_unit
    return method


def _reference_unit(bundle: Bundle, flow_uuid: str, prop_uuid: str | None) -> str | None:
    flow = bundle.flows.get(flow_uuid)
    prop = prop_uuid or (flow.reference_property() if flow is not None else None)
    fp = bundle.flow_properties.get(prop) if prop else None
    group = bundle.unit_groups.get(fp.unit_group) if fp is not None else None
    return group.reference_unit if group is not None else None


def _read_uncertainty(ex: Element, amount: float, ctx: _Ctx) -> Uncertainty | None:
    ext = _ext(ex, "uncertainty")
    if ext is not None:
        values: dict[str, object] = {"distribution": ext.get("distribution", "undefined")}
        for attr, key in [("geomean", "geomean"), ("geosd", "geosd"), ("sd", "sd"), ("minimum", "minimum"),
                          ("mode", "mode"), ("maximum", "maximum"), ("relativeSdPercent", "relative_sd_percent")]:
            if ext.get(attr) is not None:
                try:
                    values[key] = float(ext.get(attr, ""))
                except ValueError:
                    ctx.error("unparsable-number", f"pcf:uncertainty/@{attr} is not a number", ext, attr, ext.get(attr))
        try:
            return Uncertainty.model_validate(values)
        except ValueError as exc:
            ctx.error("invalid-value", f"pcf:uncertainty is invalid: {exc}", ext, "uncertainty", dict(ext.attrib))
            return None
    dist_el = _kid(ex, "uncertaintyDistributionType")
    raw = _text(dist_el)
    minimum = ctx.number(_kid(ex, "minimumAmount"), "minimumAmount")
    maximum = ctx.number(_kid(ex, "maximumAmount"), "maximumAmount")
    rsd = ctx.number(_kid(ex, "relativeStandardDeviation95In"), "relativeStandardDeviation95In")
    if raw is None:
        if minimum is None and maximum is None and rsd is None:
            return None
        raw = "undefined"
    dist = _DISTRIBUTIONS.get(raw)
    if dist is None:
        ctx.warn("xsd-deviation", f"uncertaintyDistributionType {raw!r} is unknown "
                 f"(accepted: {', '.join(_DISTRIBUTION_ILCD.values())}); no uncertainty read",
                 dist_el, "uncertaintyDistributionType", raw)
        return None
    unc = Uncertainty(distribution=dist, minimum=minimum, maximum=maximum)  # type: ignore[arg-type]
    if rsd is not None:
        if dist == "lognormal":
            unc.geomean = amount
            unc.geosd = math.sqrt(rsd) if rsd >= 0 else None
        elif dist == "normal":
            unc.relative_sd_percent = rsd
            unc.sd = abs(amount) * rsd / 200.0
        else:
            unc.relative_sd_percent = rsd
    return unc


def _read_exchanges(root: Element, bundle: Bundle, ctx: _Ctx) -> tuple[list[Exchange], dict[str, str]]:
    exchanges: list[Exchange] = []
    ids: dict[str, str] = {}
    for pos, ex in enumerate(_findall(root, "exchanges", "exchange")):
        ctx.check_order(ex, "process/exchange")
        raw_id = (ex.get("dataSetInternalID") or "").strip()
        if not raw_id:
            ctx.error("missing-value", f"exchange has no @dataSetInternalID; numbered {pos} by position",
                      ex, "dataSetInternalID", "")
            raw_id = str(pos)
        internal_id = _text(_ext(ex, "internalId")) or raw_id
        ids[raw_id] = internal_id
        fref = _kid(ex, "referenceToFlowDataSet")
        flow = (fref.get("refObjectId") or "").strip().lower() if fref is not None else ""
        if not flow:
            ctx.error("missing-value", "exchange has no referenceToFlowDataSet/@refObjectId; skipped",
                      fref if fref is not None else ex, "refObjectId", "")
            continue
        dir_el = _kid(ex, "exchangeDirection")
        direction = {"Input": "input", "Output": "output"}.get(_text(dir_el) or "")
        if direction is None:
            ctx.error("invalid-value", f"exchangeDirection {_text(dir_el)!r} is not Input or Output; exchange skipped",
                      dir_el if dir_el is not None else ex, "exchangeDirection", _text(dir_el) or "")
            continue
        amount_el = _kid(ex, "meanAmount")
        if amount_el is None:
            amount_el = _kid(ex, "resultingAmount")
        amount = ctx.number(amount_el if amount_el is not None else ex, "meanAmount", required=True)
        if amount is None:
            continue
        flow_property: str | None = None
        prop_ref = _kid(ex, "referenceToFlowPropertyDataSet")
        if prop_ref is not None and prop_ref.get("refObjectId"):
            flow_property = (prop_ref.get("refObjectId") or "").strip().lower()
        prop_ext = _text(_ext(ex, "flowProperty"))
        if prop_ext:
            flow_property = prop_ext.lower()
        if flow not in bundle.flows:
            ctx.error("unresolved-reference", f"flow {flow} is not in the data (accepted: a flow data set of "
                      f"the same import)", fref, "refObjectId", flow)
        unit: str | None = None
        unit_ext = _ext(ex, "unit")
        if unit_ext is not None:
            # Written by write_ilcd for amounts in a non-reference unit: meanAmount is converted,
            # pcf:amount / pcf:unit are the amount as the model had it.
            unit = _text(unit_ext)
            amount_ext = _ext(ex, "amount")
            if amount_ext is not None:
                exact = ctx.number(amount_ext, "pcf:amount", required=True)
                amount = amount if exact is None else exact
        if unit is None:
            unit = _reference_unit(bundle, flow, flow_property)
            if unit is None and flow in bundle.flows:
                ctx.error("unresolved-reference",
                          f"the reference unit of flow {flow} cannot be found (flow property or unit group missing)",
                          fref, "refObjectId", flow)
        data_source = None
        src_el = _kid(ex, "dataSourceType")
        der_el = _kid(ex, "dataDerivationTypeStatus")
        if _text(src_el) is not None:
            data_source = _SOURCE_TYPE.get(_text(src_el) or "")
            if data_source is None:
                ctx.warn("xsd-deviation", f"dataSourceType {_text(src_el)!r} is unknown "
                         f"(accepted: {', '.join(_SOURCE_TYPE)})", src_el, "dataSourceType", _text(src_el))
        elif der_el is not None:
            status = _text(der_el)
            data_source = _DERIVATION.get(status or "")
            if status is None:
                ctx.warn("xsd-deviation", "dataDerivationTypeStatus is empty; no data source type read",
                         der_el, "dataDerivationTypeStatus", "")
            elif data_source is None and status not in _DERIVATION_OTHER:
                ctx.warn("xsd-deviation", f"dataDerivationTypeStatus {status!r} is unknown", der_el,
                         "dataDerivationTypeStatus", status)
        allocation: dict[str, float] = {}
        other = _kid(ex, "other")
        exact_allocations = other.findall(f"{{{PCF_NS}}}allocation") if other is not None else []
        if exact_allocations:
            for a in exact_allocations:
                try:
                    allocation[a.get("coProduct", "")] = float(a.get("fraction", ""))
                except ValueError:
                    ctx.error("unparsable-number", "pcf:allocation/@fraction is not a number", a, "fraction",
                              a.get("fraction"))
        else:
            for a in _findall(ex, "allocations", "allocation"):
                co = (a.get("internalReferenceToCoProduct") or "").strip()
                pct = a.get("allocatedFraction")
                try:
                    allocation[co] = float(pct or "") / 100.0
                except ValueError:
                    ctx.error("unparsable-number", f"allocatedFraction {pct!r} is not a percentage", a,
                              "allocatedFraction", pct)
        provider = _text(_ext(ex, "provider"))
        dq_el = _ext(ex, "dataQuality")
        exchanges.append(Exchange(
            internal_id=internal_id, flow=flow, direction=direction,  # type: ignore[arg-type]
            amount=amount, unit=unit or "", flow_property=flow_property,
            data_source=data_source,  # type: ignore[arg-type]
            uncertainty=_read_uncertainty(ex, amount, ctx), allocation=allocation,
            provider=provider.lower() if provider else None,
            comment=_i18n(_kids(ex, "generalComment")), location=_text(_kid(ex, "location")),
            data_quality=_read_dq_ext(dq_el, ctx) if dq_el is not None else None,
        ))
    # Allocation keys name co-products by their raw ILCD id; translate like the reference ids.
    if any(ids[k] != k for k in ids):
        for e in exchanges:
            e.allocation = {ids.get(k, k): v for k, v in e.allocation.items()}
    return exchanges, ids


def _read_dq_ext(el: Element, ctx: _Ctx) -> DataQuality | None:
    values: dict[str, int] = {}
    for key in DataQuality.model_fields:
        raw = el.get(key)
        if raw is None:
            continue
        if raw not in {"1", "2", "3", "4", "5"}:
            ctx.error("invalid-value", f"pcf:dataQuality/@{key} {raw!r} is not 1..5", el, key, raw)
            continue
        values[key] = int(raw)
    return DataQuality(**values)


def _read_process(root: Element, bundle: Bundle, ctx: _Ctx, locations: set[str] | None) -> Process | None:
    pinfo = _kid(root, "processInformation")
    info = _kid(pinfo, "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    ctx.check_order(info, "process/dataSetInformation")
    qref = _kid(pinfo, "quantitativeReference")
    ctx.check_order(qref, "process/quantitativeReference")
    time_el = _kid(pinfo, "time")
    ctx.check_order(time_el, "process/time")
    ctx.check_order(_find(root, "modellingAndValidation", "LCIMethodAndAllocation"), "process/LCIMethodAndAllocation")
    exchanges, ids = _read_exchanges(root, bundle, ctx)
    known = {e.internal_id for e in exchanges}
    reference: list[str] = []
    for r in _kids(qref, "referenceToReferenceFlow"):
        raw = _text(r)
        if raw is None:
            continue
        rid = ids.get(raw, raw)
        if rid not in known:
            ctx.error("unresolved-reference", f"referenceToReferenceFlow {raw!r} names no exchange "
                      f"(accepted: a dataSetInternalID of exchanges/exchange)", r, "referenceToReferenceFlow", raw)
        reference.append(rid)
    geo = _kid(pinfo, "geography")
    loc_el = _kid(geo, "locationOfOperationSupplyOrProduction")
    sub_el = _kid(geo, "subLocationOfOperationSupplyOrProduction")
    for el, attr in ((loc_el, "location"), (sub_el, "subLocation")):
        code = (el.get(attr) or "").strip() if el is not None else ""
        if code and locations is not None and code not in locations:
            ctx.warn("unknown-location", f"location code {code!r} is not in ILCDLocations.xml; kept as is",
                     el, attr, code)
    type_raw = _text(_find(root, "modellingAndValidation", "LCIMethodAndAllocation", "typeOfDataSet")) or ""
    dq: dict[str, int] = {}
    for review in _findall(root, "modellingAndValidation", "validation", "review"):
        for ind in _findall(review, "dataQualityIndicators", "dataQualityIndicator"):
            key = _DQI_NAMES.get((ind.get("name") or "").strip())
            value = (ind.get("value") or "").strip()
            if key is None or key in dq or value in _DQI_NOT_RATED:
                continue
            if value not in _DQI_VALUES:
                ctx.warn("xsd-deviation", f"data quality value {value!r} is unknown "
                         f"(accepted: {', '.join(_DQI_VALUES)}); ignored", ind, "value", value)
                continue
            dq[key] = _DQI_VALUES[value]
    admin = _kid(root, "administrativeInformation")
    contacts = _refs([
        *_findall(admin, "dataGenerator", "referenceToPersonOrEntityGeneratingTheDataSet"),
        *_findall(admin, "dataEntryBy", "referenceToPersonOrEntityEnteringTheData"),
        *_findall(admin, "publicationAndOwnership", "referenceToOwnershipOfDataSet"),
    ])
    sources = _refs(_findall(root, "modellingAndValidation", "dataSourcesTreatmentAndRepresentativeness",
                             "referenceToDataSource"))
    annual_el = _ext(info, "annualProduction")
    process = Process(
        uuid=uid, version=_version(root, ctx),
        name=_joined_name(_kid(info, "name"), _PROCESS_NAME_PARTS),
        description=_i18n(_kids(info, "generalComment")), classifications=_classifications(info),
        process_type="lci_result" if type_raw == "LCI result" else "unit",
        location=(loc_el.get("location") or "").strip() or None if loc_el is not None else None,
        sub_location=(sub_el.get("subLocation") or "").strip() or None if sub_el is not None else None,
        reference_year=ctx.integer(_kid(time_el, "referenceYear"), "referenceYear"),
        valid_until=ctx.integer(_kid(time_el, "dataSetValidUntil"), "dataSetValidUntil"),
        reference_exchanges=reference, exchanges=exchanges, data_quality=DataQuality(**dq),
        sources=sources, contacts=contacts,
        technology=_i18n(_findall(pinfo, "technology", "technologyDescriptionAndIncludedProcesses")),
        annual_production=ctx.number(annual_el, "pcf:annualProduction") if annual_el is not None else None,
    )
    return process


def _read_model(root: Element, ctx: _Ctx) -> LifeCycleModel | None:
    minfo = _kid(root, "lifeCycleModelInformation")
    info = _kid(minfo, "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    instances: dict[str, str] = {}
    elements = _findall(minfo, "technology", "processes", "processInstance")
    for inst in elements:
        ref = _kid(inst, "referenceToProcess")
        proc = (ref.get("refObjectId") or "").strip().lower() if ref is not None else ""
        if not proc:
            ctx.error("missing-value", "processInstance has no referenceToProcess/@refObjectId; skipped",
                      inst, "refObjectId", "")
            continue
        instances[(inst.get("dataSetInternalID") or "").strip()] = proc
    links: list[ModelLink] = []
    for inst in elements:
        provider = instances.get((inst.get("dataSetInternalID") or "").strip())
        if provider is None:
            continue
        for out in _findall(inst, "connections", "outputExchange"):
            flow = (out.get("flowUUID") or "").strip().lower()
            for down in _kids(out, "downstreamProcess"):
                recipient = instances.get((down.get("id") or "").strip())
                if recipient is None:
                    ctx.error("unresolved-reference", f"downstreamProcess id {down.get('id')!r} names no processInstance",
                              down, "id", down.get("id"))
                    continue
                links.append(ModelLink(provider=provider, flow=(down.get("flowUUID") or flow).strip().lower(),
                                       recipient=recipient))
    ref_el = _find(minfo, "quantitativeReference", "referenceToReferenceProcess")
    ref = instances.get(_text(ref_el) or "")
    if ref is None:
        ctx.error("unresolved-reference", f"referenceToReferenceProcess {_text(ref_el)!r} names no processInstance; "
                  f"the model is skipped", ref_el if ref_el is not None else root, "referenceToReferenceProcess",
                  _text(ref_el) or "")
        return None
    return LifeCycleModel(
        uuid=uid, version=_version(root, ctx), name=_joined_name(_kid(info, "name"), _PROCESS_NAME_PARTS),
        description=_i18n(_kids(info, "generalComment")), classifications=_classifications(info),
        reference_process=ref, processes=list(dict.fromkeys(instances.values())), links=links,
        location=_text(_ext(info, "location")),
    )


# --------------------------------------------------------------------------- locations


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "(（"
        depth -= ch in ")）"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _location_names(text: str) -> I18n:
    """``"Suzhou (苏州), Jiangsu (江苏), China (中国)"`` -> en ``Suzhou, Jiangsu, China``, zh ``中国江苏苏州``."""
    if not _CJK_RE.search(text):
        return {"en": text}
    en: list[str] = []
    zh: list[str] = []
    for part in _split_top(text):
        m = re.match(r"^(.*?)\s*[(（]([^()（）]*)[)）]$", part)
        if m is None or not _CJK_RE.search(m.group(2)) or _CJK_RE.search(m.group(1)):
            return {"en": text}
        en.append(m.group(1).strip())
        zh.append(m.group(2).strip())
    return {"en": ", ".join(en), "zh": "".join(reversed(zh))}


def _parse_locations(data: bytes) -> dict[str, I18n]:
    root = etree.fromstring(data, _parser())
    out: dict[str, I18n] = {}
    for el in root.iter():
        if _local(el) != "location" or not el.get("value"):
            continue
        code = el.get("value", "").strip()
        text = (el.text or "").strip()
        if not text:
            out.setdefault(code, {})
            continue
        lang = el.get(XML_LANG)
        names = {lang: text} if lang else _location_names(text)
        out.setdefault(code, {}).update(names)
    return out


def read_locations(path: Path) -> dict[str, I18n]:
    """The location codes of an ``ILCDLocations.xml`` and their names per language.

    TianGong's sub-national codes (``SZ-JS-CN``) carry names like
    ``"Suzhou (苏州), Jiangsu (江苏), China (中国)"``: they are split into English
    (``"Suzhou, Jiangsu, China"``) and Chinese (``"中国江苏苏州"``, largest unit first). A
    ``location`` element with ``xml:lang`` gives that language directly. Process and flow
    locations stay the codes as imported; this table names them.

    Parameters
    ----------
    path
        The ``ILCDLocations.xml`` file.

    Returns
    -------
    dict
        Code -> {language: name}.
    """
    return _parse_locations(Path(path).read_bytes())


# --------------------------------------------------------------------------- read_ilcd


def read_ilcd(path: Path, *, strict: bool = False) -> tuple[Bundle, list[Diagnostic]]:
    """Read an ILCD zip or unzipped folder into a :class:`~lca.model.Bundle`.

    All eight modules are read (``processes/``, ``flows/``, ``flowproperties/``,
    ``unitgroups/``, ``lciamethods/``, ``sources/``, ``contacts/``, ``lifecyclemodels/``),
    wherever the module folders sit in the archive. See the module docstring for the
    mapping rules.

    Parameters
    ----------
    path
        An ILCD ``.zip`` or a folder holding the module folders (directly or below).
    strict
        When true, raise :class:`~lca.errors.ImportFailed` if any diagnostic is an error.

    Returns
    -------
    tuple
        The bundle (what could be read) and every diagnostic. Location codes are kept as
        imported; with an ``ILCDLocations.xml`` in the data, codes it lacks are warned about.
    """
    path = Path(path)
    diags: list[Diagnostic] = []
    bundle = Bundle()
    found = _gather(path, diags)
    locations = _known_locations(found, diags)
    parser = _parser()
    trees: dict[str, list[tuple[Element, _Ctx]]] = {kind: [] for kind in _READ_ORDER}
    for entry in found.entries:
        ctx = _Ctx(entry.name, diags)
        root = _parse(entry.data, ctx, parser)
        if root is None:
            continue
        expected = _ROOT[entry.kind]
        if _local(root) != expected:
            ctx.error("unexpected-root", f"root element {_local(root)!r} is not {expected!r}; file skipped",
                      root, "root", _local(root))
            continue
        ns = etree.QName(root).namespace
        if ns != MODULE_NS[entry.kind]:
            ctx.warn("xsd-deviation", f"root namespace {ns!r} is not {MODULE_NS[entry.kind]!r}; read by local names",
                     root, "xmlns", ns)
        _check_other_text(root, ctx)
        trees[entry.kind].append((root, ctx))
    readers: dict[str, Callable[[Element, _Ctx], Dataset | None]] = {
        "unit_group": _read_unit_group,
        "flow_property": _read_flow_property,
        "flow": _read_flow,
        "source": _read_source,
        "contact": _read_contact,
        "lcia_method": _read_method,
        "process": lambda root, ctx: _read_process(root, bundle, ctx, locations),
        "model": _read_model,
    }
    for kind in _READ_ORDER:
        for root, ctx in trees[kind]:
            try:
                ds = readers[kind](root, ctx)
            except ValueError as exc:  # pydantic validation of a value the checks above let through
                ctx.error("invalid-value", f"the data set cannot be read: {exc}", root)
                continue
            if ds is None:
                continue
            if ds.uuid in bundle.collection(kind):
                ctx.warn("duplicate-dataset", f"a {kind} with UUID {ds.uuid} was read before; this one replaces it",
                         root, "UUID", ds.uuid)
            bundle.add(ds)
    if strict and any(d.severity == "error" for d in diags):
        raise ImportFailed(diags)
    return bundle, diags


def _known_locations(found: _Input, diags: list[Diagnostic]) -> set[str] | None:
    if found.locations is None:
        return None
    try:
        return set(_parse_locations(found.locations))
    except etree.XMLSyntaxError as exc:
        diags.append(Diagnostic(severity="error", rule="unparsable-xml", message=f"not well-formed XML: {exc.msg}",
                                file=found.locations_name))
        return None


# --------------------------------------------------------------------------- writer


def _num(value: float) -> str:
    """A float as lossless text (``repr``), with the XSD spellings of the special values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(float(value))


def _perc(value: float) -> str:
    """A number as the XSD type ``Perc`` wants it: at most 5 digits, at most 3 after the point.

    Lossy by design; the exact value travels in the ``pcf`` extension next to it.
    """
    digits = len(str(int(abs(value)))) if math.isfinite(value) else 5
    text = f"{value:.{max(0, min(3, 5 - digits))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class _W:
    """Element builders for one module namespace."""

    def __init__(self, kind: str):
        self.kind = kind
        self.ns = MODULE_NS[kind]

    def root(self, name: str, extra_ns: dict[str, str] | None = None) -> Element:
        nsmap: dict[str | None, str] = {None: self.ns, "common": COMMON_NS, "pcf": PCF_NS}
        if extra_ns:
            nsmap.update(extra_ns)
        return etree.Element(f"{{{self.ns}}}{name}", nsmap=nsmap, version="1.1")

    def el(self, parent: Element, tag: str, text: str | None = None, ns: str | None = None, /,
           **attrs: str) -> Element:
        child = etree.SubElement(parent, f"{{{ns or self.ns}}}{tag}", attrs)
        if text is not None:
            child.text = text
        return child

    def c(self, parent: Element, tag: str, text: str | None = None, /, **attrs: str) -> Element:
        return self.el(parent, tag, text, COMMON_NS, **attrs)

    def langs(self, parent: Element, name: str, texts: I18n, ns: str | None = None) -> None:
        for lang, text in texts.items():
            child = etree.SubElement(parent, f"{{{ns or self.ns}}}{name}", {XML_LANG: lang})
            child.text = text

    def ref(self, parent: Element, name: str, kind: str, uid: str, bundle: Bundle, ns: str | None = None,
            short: I18n | None = None) -> Element:
        target = bundle.collection(kind).get(uid) if kind in _FOLDER else None
        attrs = {"type": _REF_TYPE[kind], "refObjectId": uid, "uri": f"../{_FOLDER[kind]}/{uid}.xml"}
        if target is not None:
            attrs["version"] = _canonical_version(target.version)
        child = etree.SubElement(parent, f"{{{ns or self.ns}}}{name}", attrs)
        names = short if short is not None else (target.name if target is not None else {})
        self.langs(child, "shortDescription", names, COMMON_NS)
        return child

    def info(self, parent: Element, ds: Dataset, name_el: str | None, *, name_in_common: bool = False) -> Element:
        """``dataSetInformation`` up to the classifications (UUID, name, classifications)."""
        info = self.el(parent, "dataSetInformation")
        self.c(info, "UUID", ds.uuid)
        if name_in_common:
            self.langs(info, "name", ds.name, COMMON_NS)
        elif name_el and ds.name:
            name = self.el(info, name_el)
            self.langs(name, "baseName", ds.name)
        self.classifications(info, ds.classifications)
        return info

    def classifications(self, info: Element, items: list[Classification],
                        compartment: list[str] | None = None) -> None:
        if not items and not compartment:
            return
        ci = self.el(info, "classificationInformation")
        if compartment:
            cat = self.c(ci, "elementaryFlowCategorization")
            for level, name in enumerate(compartment):
                self.c(cat, "category", name, level=str(level))
        for item in items:
            cl = self.c(ci, "classification", name=item.system)
            path = item.path
            if not path and item.code:
                # A code without a path (e.g. GB/T 4754 "3216"): ILCD needs a class text.
                path = [item.code]
                cl.set(f"{{{PCF_NS}}}codeOnly", "true")
            for level, name in enumerate(path):
                attrs = {"level": str(level)}
                if item.code and level == len(path) - 1:
                    attrs["classId"] = item.code
                self.c(cl, "class", name, **attrs)

    def publication(self, parent: Element, ds: Dataset, before: Callable[[Element], None] | None = None) -> None:
        admin = self.el(parent, "administrativeInformation")
        if before is not None:
            before(admin)
        pub = self.el(admin, "publicationAndOwnership")
        self.c(pub, "dataSetVersion", _canonical_version(ds.version))


def _other(w: _W, parent: Element) -> Element:
    return w.c(parent, "other")


def _pcf(parent: Element, tag: str, text: str | None = None, /, **attrs: str) -> Element:
    child = etree.SubElement(parent, f"{{{PCF_NS}}}{tag}", attrs)
    if text is not None:
        child.text = text
    return child


def _write_unit_group(ug: UnitGroup, bundle: Bundle) -> Element:
    w = _W("unit_group")
    root = w.root("unitGroupDataSet")
    ginfo = w.el(root, "unitGroupInformation")
    info = w.info(ginfo, ug, None, name_in_common=True)
    w.langs(info, "generalComment", ug.description, COMMON_NS)
    ref_index = next((i for i, u in enumerate(ug.units) if u.name == ug.reference_unit), 0)
    w.el(w.el(ginfo, "quantitativeReference"), "referenceToReferenceUnit", str(ref_index))
    w.publication(root, ug)
    units = w.el(root, "units")
    for i, u in enumerate(ug.units):
        unit = w.el(units, "unit", dataSetInternalID=str(i))
        w.el(unit, "name", u.name)
        w.el(unit, "meanValue", _num(u.factor))
        w.langs(unit, "generalComment", u.description)
    return root


def _write_flow_property(fp: FlowProperty, bundle: Bundle) -> Element:
    w = _W("flow_property")
    root = w.root("flowPropertyDataSet")
    pinfo = w.el(root, "flowPropertiesInformation")
    info = w.info(pinfo, fp, None, name_in_common=True)
    w.langs(info, "generalComment", fp.description, COMMON_NS)
    w.ref(w.el(pinfo, "quantitativeReference"), "referenceToReferenceUnitGroup", "unit_group", fp.unit_group, bundle)
    w.publication(root, fp)
    return root


def _cas_ilcd(cas: str) -> str:
    m = _CAS_RE.match(cas)
    return f"{int(m.group(1)):06d}-{m.group(2)}-{m.group(3)}" if m else cas


def _write_flow(flow: Flow, bundle: Bundle) -> Element:
    w = _W("flow")
    root = w.root("flowDataSet")
    finfo = w.el(root, "flowInformation")
    info = w.el(finfo, "dataSetInformation")
    w.c(info, "UUID", flow.uuid)
    if flow.name:
        w.langs(w.el(info, "name"), "baseName", flow.name)
    for lang, words in flow.synonyms.items():
        if words:
            w.c(info, "synonyms", "; ".join(words), **{XML_LANG: lang})
    w.classifications(info, flow.classifications, flow.compartment)
    if flow.cas:
        w.el(info, "CASNumber", _cas_ilcd(flow.cas))
    if flow.formula:
        w.el(info, "sumFormula", flow.formula)
    w.langs(info, "generalComment", flow.description, COMMON_NS)
    ref_index = next((i for i, p in enumerate(flow.properties) if p.reference), 0)
    w.el(w.el(finfo, "quantitativeReference"), "referenceToReferenceFlowProperty", str(ref_index))
    if flow.location:
        # A multi-language string in ILCD 1.1; the code goes in as English text.
        w.el(w.el(finfo, "geography"), "locationOfSupply", flow.location, None, **{XML_LANG: "en"})
    w.el(w.el(w.el(root, "modellingAndValidation"), "LCIMethod"), "typeOfDataSet", _FLOW_TYPE_ILCD[flow.flow_type])
    w.publication(root, flow)
    if flow.properties:
        props = w.el(root, "flowProperties")
        for i, p in enumerate(flow.properties):
            prop = w.el(props, "flowProperty", dataSetInternalID=str(i))
            w.ref(prop, "referenceToFlowPropertyDataSet", "flow_property", p.flow_property, bundle)
            w.el(prop, "meanValue", _num(p.factor))
    return root


def _write_source(src: Source, bundle: Bundle) -> Element:
    w = _W("source")
    root = w.root("sourceDataSet")
    sinfo = w.el(root, "sourceInformation")
    info = w.el(sinfo, "dataSetInformation")
    w.c(info, "UUID", src.uuid)
    w.langs(info, "shortName", src.name, COMMON_NS)
    w.classifications(info, src.classifications)
    if src.citation:
        w.el(info, "sourceCitation", src.citation)
    w.langs(info, "sourceDescriptionOrComment", src.description)
    if src.url:
        w.el(info, "referenceToDigitalFile", uri=src.url)
    w.publication(root, src)
    return root


def _write_contact(contact: Contact, bundle: Bundle) -> Element:
    w = _W("contact")
    root = w.root("contactDataSet")
    cinfo = w.el(root, "contactInformation")
    info = w.el(cinfo, "dataSetInformation")
    w.c(info, "UUID", contact.uuid)
    w.langs(info, "shortName", contact.name, COMMON_NS)
    w.langs(info, "name", contact.name, COMMON_NS)
    w.classifications(info, contact.classifications)
    w.langs(info, "contactAddress", contact.address)
    if contact.email:
        w.el(info, "email", contact.email)
    if contact.url:
        w.el(info, "WWWAddress", contact.url)
    w.langs(info, "contactDescriptionOrComment", contact.description)
    w.publication(root, contact)
    return root


def _impact_category(indicator: str) -> str:
    for value in _IMPACT_CATEGORIES:
        if value.lower() == indicator.strip().lower():
            return value
    return "other"


def _write_method(method: LCIAMethod, bundle: Bundle) -> Element:
    w = _W("lcia_method")
    root = w.root("LCIAMethodDataSet")
    minfo = w.el(root, "LCIAMethodInformation")
    info = w.el(minfo, "dataSetInformation")
    w.c(info, "UUID", method.uuid)
    w.langs(info, "name", method.name, COMMON_NS)
    w.classifications(info, method.classifications)
    category = _impact_category(method.indicator)
    w.el(info, "impactCategory", category)
    w.langs(info, "generalComment", method.description, COMMON_NS)
    if method.gwp_set or category != method.indicator:
        other = _other(w, info)
        if method.gwp_set:
            _pcf(other, "gwpSet", method.gwp_set)
        if category != method.indicator:
            _pcf(other, "indicator", method.indicator)
    # ILCD requires a reference quantity; without one in the model, a name-based UUID stands in
    # and pcf:derived tells the reader that the model had none.
    ref_prop = method.reference_property or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"{PCF_NS}#{method.reference_unit}"))
    ref_el = w.ref(w.el(minfo, "quantitativeReference"), "referenceQuantity", "flow_property", ref_prop, bundle,
                   short={"en": method.reference_unit})
    if method.reference_property is None:
        ref_el.set(f"{{{PCF_NS}}}derived", "true")
    w.el(minfo, "geography")
    w.el(root, "modellingAndValidation")
    admin = w.el(root, "administrativeInformation")
    w.el(admin, "dataGenerator")
    w.el(admin, "dataEntryBy")
    w.c(w.el(admin, "publicationAndOwnership"), "dataSetVersion", _canonical_version(method.version))
    if method.factors:
        factors = w.el(root, "characterisationFactors")
        for f in method.factors:
            factor = w.el(factors, "factor")
            w.ref(factor, "referenceToFlowDataSet", "flow", f.flow, bundle)
            direction = f.direction or _default_direction(bundle, f.flow)
            w.el(factor, "exchangeDirection", "Input" if direction == "input" else "Output")
            w.el(factor, "meanValue", _num(f.value))
            extras = [("species", f.species), ("origin", f.origin), ("flowProperty", f.flow_property),
                      ("unit", f.unit)]
            if any(v is not None for _, v in extras):
                other = _other(w, factor)
                for tag, value in extras:
                    if value is not None:
                        _pcf(other, tag, value)
    return root


def _default_direction(bundle: Bundle, flow_uuid: str) -> str:
    """Resources are inputs, everything else an output (for factors that name no direction)."""
    flow = bundle.flows.get(flow_uuid)
    if flow is not None and flow.compartment and flow.compartment[0].lower().startswith("resource"):
        return "input"
    return "output"


def _ilcd_ids(process: Process) -> dict[str, str]:
    """ILCD ``dataSetInternalID`` per exchange: the model id when it is a small integer, else the position."""
    ids = [e.internal_id for e in process.exchanges]
    if all(i.isdigit() and len(i) <= 6 for i in ids) and len(set(ids)) == len(ids):
        return {i: i for i in ids}
    return {e.internal_id: str(n) for n, e in enumerate(process.exchanges)}


def _write_uncertainty(w: _W, ex_el: Element, e: Exchange) -> None:
    unc = e.uncertainty
    if unc is None:
        return
    if unc.minimum is not None:
        w.el(ex_el, "minimumAmount", _num(unc.minimum))
    if unc.maximum is not None:
        w.el(ex_el, "maximumAmount", _num(unc.maximum))
    w.el(ex_el, "uncertaintyDistributionType", _DISTRIBUTION_ILCD[unc.distribution])
    rsd: float | None = None
    if unc.distribution == "lognormal" and unc.geosd is not None:
        rsd = unc.geosd * unc.geosd
    elif unc.relative_sd_percent is not None:
        rsd = unc.relative_sd_percent
    elif unc.distribution == "normal" and unc.sd is not None and e.amount:
        rsd = unc.sd * 200.0 / abs(e.amount)
    if rsd is not None:
        w.el(ex_el, "relativeStandardDeviation95In", _perc(rsd))


def _write_exchange(w: _W, parent: Element, e: Exchange, ids: dict[str, str], bundle: Bundle) -> None:
    ex = w.el(parent, "exchange", dataSetInternalID=ids[e.internal_id])
    w.ref(ex, "referenceToFlowDataSet", "flow", e.flow, bundle)
    if e.location:
        w.el(ex, "location", e.location)
    w.el(ex, "exchangeDirection", "Input" if e.direction == "input" else "Output")
    amount = e.amount
    flow = bundle.flows.get(e.flow)
    plain = e.unit == _reference_unit(bundle, e.flow, None) and (
        e.flow_property is None or (flow is not None and e.flow_property == flow.reference_property()))
    if not plain:
        try:
            amount = to_reference_amount(bundle, e)
        except UnitError:
            amount = e.amount  # written as is; pcf:amount / pcf:unit say what it is
    w.el(ex, "meanAmount", _num(amount))
    w.el(ex, "resultingAmount", _num(amount))
    _write_uncertainty(w, ex, e)
    if e.allocation:
        allocs = w.el(ex, "allocations")
        for co, fraction in e.allocation.items():
            w.el(allocs, "allocation", internalReferenceToCoProduct=ids.get(co, co),
                 allocatedFraction=_perc(fraction * 100.0))
    if e.data_source:
        w.el(ex, "dataSourceType", "Primary" if e.data_source == "primary" else "Secondary")
    w.langs(ex, "generalComment", e.comment)
    renumbered = ids[e.internal_id] != e.internal_id
    if not (renumbered or not plain or e.flow_property or e.allocation or e.uncertainty or e.provider
            or e.data_quality):
        return
    other = _other(w, ex)
    if renumbered:
        _pcf(other, "internalId", e.internal_id)
    if not plain:
        _pcf(other, "amount", _num(e.amount))
        _pcf(other, "unit", e.unit)
    if e.flow_property:
        _pcf(other, "flowProperty", e.flow_property)
    for co, fraction in e.allocation.items():
        _pcf(other, "allocation", coProduct=co, fraction=_num(fraction))
    if e.uncertainty is not None:
        attrs: dict[str, str] = {"distribution": e.uncertainty.distribution}
        for key, attr in [("geomean", "geomean"), ("geosd", "geosd"), ("sd", "sd"), ("minimum", "minimum"),
                          ("mode", "mode"), ("maximum", "maximum"), ("relative_sd_percent", "relativeSdPercent")]:
            value = getattr(e.uncertainty, key)
            if value is not None:
                attrs[attr] = _num(value)
        _pcf(other, "uncertainty", **attrs)
    if e.provider:
        _pcf(other, "provider", e.provider)
    if e.data_quality is not None:
        _pcf(other, "dataQuality", **{k: str(v) for k, v in e.data_quality.indicators().items()})


def _write_process(p: Process, bundle: Bundle) -> Element:
    w = _W("process")
    root = w.root("processDataSet")
    pinfo = w.el(root, "processInformation")
    info = w.info(pinfo, p, "name")
    w.langs(info, "generalComment", p.description, COMMON_NS)
    if p.annual_production is not None:
        _pcf(_other(w, info), "annualProduction", _num(p.annual_production))
    ids = _ilcd_ids(p)
    qref = w.el(pinfo, "quantitativeReference", type="Reference flow(s)")
    for rid in p.reference_exchanges:
        w.el(qref, "referenceToReferenceFlow", ids.get(rid, rid))
    if p.reference_year is not None or p.valid_until is not None:
        time_el = w.el(pinfo, "time")
        if p.reference_year is not None:
            w.c(time_el, "referenceYear", str(p.reference_year))
        if p.valid_until is not None:
            w.c(time_el, "dataSetValidUntil", str(p.valid_until))
    if p.location or p.sub_location:
        geo = w.el(pinfo, "geography")
        if p.location:
            w.el(geo, "locationOfOperationSupplyOrProduction", location=p.location)
        if p.sub_location:
            w.el(geo, "subLocationOfOperationSupplyOrProduction", subLocation=p.sub_location)
    if p.technology:
        w.langs(w.el(pinfo, "technology"), "technologyDescriptionAndIncludedProcesses", p.technology)
    mv = w.el(root, "modellingAndValidation")
    w.el(w.el(mv, "LCIMethodAndAllocation"), "typeOfDataSet",
         "LCI result" if p.process_type == "lci_result" else "Unit process, black box")
    if p.sources:
        rep = w.el(mv, "dataSourcesTreatmentAndRepresentativeness")
        for s in p.sources:
            w.ref(rep, "referenceToDataSource", "source", s, bundle)
    indicators = p.data_quality.indicators()
    if indicators:
        review = w.el(w.el(mv, "validation"), "review", type="Not reviewed")
        dqis = w.c(review, "dataQualityIndicators")
        for key, value in indicators.items():
            w.c(dqis, "dataQualityIndicator", name=_DQI_ILCD[key], value=_DQI_VALUE_ILCD[value])

    def generators(admin: Element) -> None:
        if p.contacts:
            gen = w.el(admin, "dataGenerator")
            for c in p.contacts:
                w.ref(gen, "referenceToPersonOrEntityGeneratingTheDataSet", "contact", c, bundle, COMMON_NS)

    w.publication(root, p, generators)
    if p.exchanges:
        exchanges = w.el(root, "exchanges")
        for e in p.exchanges:
            _write_exchange(w, exchanges, e, ids, bundle)
    return root


def _write_model(m: LifeCycleModel, bundle: Bundle) -> Element:
    w = _W("model")
    root = w.root("lifeCycleModelDataSet", {"process": MODULE_NS["process"]})
    minfo = w.el(root, "lifeCycleModelInformation")
    info = w.info(minfo, m, "name")
    w.langs(info, "generalComment", m.description, COMMON_NS)
    if m.location:
        _pcf(_other(w, info), "location", m.location)
    processes = list(dict.fromkeys([*m.processes, m.reference_process,
                                    *(x for link in m.links for x in (link.provider, link.recipient))]))
    index = {uid: str(i) for i, uid in enumerate(processes)}
    w.el(w.el(minfo, "quantitativeReference"), "referenceToReferenceProcess", index[m.reference_process])
    procs = w.el(w.el(minfo, "technology"), "processes")
    for uid in processes:
        inst = w.el(procs, "processInstance", dataSetInternalID=index[uid], multiplicationFactor="1.0")
        w.ref(inst, "referenceToProcess", "process", uid, bundle)
        links = [link for link in m.links if link.provider == uid]
        if links:
            conns = w.el(inst, "connections")
            for flow in dict.fromkeys(link.flow for link in links):
                out = w.el(conns, "outputExchange", flowUUID=flow)
                for link in links:
                    if link.flow == flow:
                        w.el(out, "downstreamProcess", flowUUID=flow, id=index[link.recipient])
    w.publication(root, m)
    return root


_WRITERS: dict[str, Callable[[Dataset, Bundle], Element]] = {
    "unit_group": _write_unit_group,  # type: ignore[dict-item]
    "flow_property": _write_flow_property,  # type: ignore[dict-item]
    "flow": _write_flow,  # type: ignore[dict-item]
    "source": _write_source,  # type: ignore[dict-item]
    "contact": _write_contact,  # type: ignore[dict-item]
    "lcia_method": _write_method,  # type: ignore[dict-item]
    "process": _write_process,  # type: ignore[dict-item]
    "model": _write_model,  # type: ignore[dict-item]
}


def dataset_xml(ds: Dataset, bundle: Bundle) -> bytes:
    """One data set as ILCD 1.1 XML (references to other data sets are described from ``bundle``)."""
    from lca.model import dataset_kind

    root = _WRITERS[dataset_kind(ds)](ds, bundle)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def write_ilcd(bundle: Bundle, out: Path) -> None:
    """Write ``bundle`` as an ILCD zip: ``ILCD/<module folder>/<uuid>.xml``, ILCD 1.1 element order.

    Numbers are written as Python ``repr`` (the shortest text that reads back to the same
    float), names and comments in every language, versions in the ILCD form ``NN.NN.NNN``.
    The zip is deterministic (fixed timestamps, sorted entries) and replaced atomically.

    Parameters
    ----------
    bundle
        The data sets to write.
    out
        The zip file to create or replace.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for kind, folder in _FOLDER.items():
            for uid in sorted(bundle.collection(kind)):
                ds = bundle.collection(kind)[uid]
                info = zipfile.ZipInfo(f"ILCD/{folder}/{uid}.xml", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, dataset_xml(ds, bundle))
    tmp.replace(out)
