"""openLCA JSON-LD vocabulary: folders, classification systems, the ``pcf:`` tags, and the id helpers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import olca_schema as o

from lca.model import Classification, I18n

__all__ = ["CATEGORY_SYSTEM", "DQ_ORDER", "FOLDER_OF_KIND", "IMPACT_METHOD_SYSTEM", "TAG_PREFIX"]


#: Classification system of the openLCA category path.
CATEGORY_SYSTEM = "openLCA category"
#: Classification system naming the openLCA impact method an LCIA category belongs to.
IMPACT_METHOD_SYSTEM = "openLCA impact method"
#: Prefix of the tags this module writes and reads.
TAG_PREFIX = "pcf:"
#: Our names of the indicators of openLCA's default data quality system, in its order
#: (reliability, completeness, temporal, geographical, technological correlation).
DQ_ORDER: tuple[str, ...] = ("precision", "completeness", "temporal", "geographical", "technological")

_FOLDERS = {
    "processes": "Process",
    "flows": "Flow",
    "flow_properties": "FlowProperty",
    "unit_groups": "UnitGroup",
    "lcia_methods": "ImpactMethod",
    "lcia_categories": "ImpactCategory",
    "sources": "Source",
    "actors": "Actor",
    "locations": "Location",
    "product_systems": "ProductSystem",
    "categories": "Category",
    "dq_systems": "DQSystem",
}
_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/pcf-dataspace/lca/io/jsonld")
_DQ_SYSTEM_ID = str(uuid.uuid5(_NS, "dq-system/pedigree"))
_DQ_KEYWORDS = (
    ("reliab", "precision"),
    ("precision", "precision"),
    ("complet", "completeness"),
    ("tempor", "temporal"),
    ("time", "temporal"),
    ("geograph", "geographical"),
    ("techn", "technological"),
)
_FLOW_TYPES = {
    o.FlowType.ELEMENTARY_FLOW: "elementary",
    o.FlowType.PRODUCT_FLOW: "product",
    o.FlowType.WASTE_FLOW: "waste",
}
_CLIMATE_RE = re.compile(r"climate change|global warming|\bgwp|co2[ -]?eq", re.IGNORECASE)
_GWP_SETS = (
    (re.compile(r"\bAR\s?6\b|IPCC[ _]?2021", re.IGNORECASE), "AR6"),
    (re.compile(r"\bAR\s?5\b|IPCC[ _]?2013", re.IGNORECASE), "AR5"),
    (re.compile(r"\bAR\s?4\b|IPCC[ _]?2007", re.IGNORECASE), "AR4"),
)
_YEAR_RE = re.compile(r"^\s*(\d{4})")
_ESCAPES = {"25": "%", "2C": ",", "2c": ","}


#: The folder of each dataset kind of :mod:`lca.model` (LCIA methods are impact categories, models product systems).
FOLDER_OF_KIND: dict[str, str] = {
    "process": "processes",
    "flow": "flows",
    "flow_property": "flow_properties",
    "unit_group": "unit_groups",
    "lcia_method": "lcia_categories",
    "source": "sources",
    "contact": "actors",
    "model": "product_systems",
}


# --------------------------------------------------------------------------- tags


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace(",", "%2C")


def _unescape(text: str) -> str:
    return re.sub(r"%(25|2C|2c)", lambda m: _ESCAPES[m.group(1)], text)


def _json_compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass
class _Tags:
    """What the ``pcf:`` tags of one dataset carry."""

    i18n: dict[str, I18n] = field(default_factory=dict)
    langs: dict[str, str] = field(default_factory=dict)
    classifications: list[Classification] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def text(self, key: str, primary: Any) -> I18n:
        """The texts of field ``key``: the openLCA field in its language plus the tagged ones."""
        out: I18n = {}
        if isinstance(primary, str) and primary != "":
            out[self.langs.get(key, "en")] = primary
        out.update(self.i18n.get(key, {}))
        return out


def _primary(text: I18n) -> tuple[str | None, str | None]:
    """The language and text that go into openLCA's single-language field."""
    if not text:
        return None, None
    if "en" in text:
        return "en", text["en"]
    lang = next(iter(text))
    return lang, text[lang]


class _TagWriter:
    def __init__(self) -> None:
        self.tags: list[str] = []
        self.extras: dict[str, Any] = {}

    def add(self, key: str, value: str) -> None:
        self.tags.append(f"{TAG_PREFIX}{key}={_escape(value)}")

    def text(self, key: str, text: I18n) -> str | None:
        """Tag the other languages of ``text``; return the text for openLCA's field."""
        lang, primary = _primary(text)
        if lang is None:
            return None
        if lang != "en":
            self.add(f"{key}-lang", lang)
        for other, value in text.items():
            if other != lang:
                self.add(f"{key}@{other}", value)
        return primary

    def classifications(self, items: Iterable[Classification]) -> None:
        for c in items:
            self.add("classification", _json_compact(c.model_dump(mode="json")))

    def result(self) -> list[str] | None:
        tags = list(self.tags)
        if self.extras:
            tags.append(f"{TAG_PREFIX}extras={_escape(_json_compact(self.extras))}")
        return tags or None



# --------------------------------------------------------------------------- writer helpers


def _ref(kind: o.RefType, uid: str, name: str | None = None, **extra: Any) -> o.Ref:
    return o.Ref(ref_type=kind, id=uid, name=name, **extra)


def _no_timestamp(entity: Any) -> Any:
    # Without lastChange the export is a pure function of the bundle, so its hash is stable.
    entity.last_change = None
    return entity


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def _int_id(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 10 else None
