"""ILCD 1.1 vocabulary: namespaces, module folders, value tables, and the XML and text helpers both directions share."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from lxml.etree import _Element as Element

from lca.model import I18n

__all__ = ["COMMON_NS", "FOLDER_OF_KIND", "MODULE_NS", "PCF_NS", "XML_LANG"]


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
#: The folder of each module in an ILCD zip.
FOLDER_OF_KIND: dict[str, str] = {
    "process": "processes",
    "flow": "flows",
    "flow_property": "flowproperties",
    "unit_group": "unitgroups",
    "lcia_method": "lciamethods",
    "source": "sources",
    "contact": "contacts",
    "model": "lifecyclemodels",
}
_KIND_OF_FOLDER = {v: k for k, v in FOLDER_OF_KIND.items()}
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



def _canonical_version(raw: str) -> str:
    m = _VERSION_RE.match(raw)
    if m is None:
        return raw
    major, minor, sub = m.groups()
    out = f"{int(major):02d}.{int(minor):02d}"
    return out + (f".{int(sub):03d}" if sub is not None else "")


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



def _cas_ilcd(cas: str) -> str:
    m = _CAS_RE.match(cas)
    return f"{int(m.group(1)):06d}-{m.group(2)}-{m.group(3)}" if m else cas
