"""openLCA JSON-LD (v1 and v2 layouts) reader and v2 writer, mapped to and from :mod:`lca.model`."""

# How the two models meet (the choices a reader of this file needs to know):
#
# * Layout. A zip or folder with ``olca-schema.json`` saying ``{"version": 2}`` is the v2
#   layout (openLCA 2). Without it, it is the v1 layout of openLCA 1.x: exchanges say
#   ``input`` / ``quantitativeReference`` instead of ``isInput`` / ``isQuantitativeReference``,
#   flow property factors ``referenceFlowProperty``, units ``referenceUnit``, categories are
#   ``Category`` refs (with the full path only when ``categories/`` is present) and exchanges
#   have no ``internalId``. The ``olca_schema`` classes drop the v1 keys without a word, so the
#   reader works on the raw JSON (which also lets every diagnostic name its JSON path) and
#   accepts both spellings of each key; the ``olca_schema`` enums decide which vocabulary
#   values are accepted. The writer builds ``olca_schema`` objects and writes them with
#   ``olca_schema.zipio.ZipWriter``.
# * Languages and everything openLCA has no field for travel in the dataset's ``tags`` (a
#   list of strings that survives ``olca_schema``'s from_dict/to_dict and openLCA itself):
#   ``pcf:name@zh=...``, ``pcf:description@zh=...``, ``pcf:technology@zh=...``,
#   ``pcf:address@zh=...``; ``pcf:name-lang=zh`` when the ``name`` field holds a language
#   other than English (a dataset without an English name); ``pcf:classification={json}``
#   for classifications other than the openLCA category; ``pcf:extras={json}`` for the rest
#   (sub-location, annual production, more than one reference exchange, non-numeric
#   internal ids, exchange comments in other languages, uncertainty openLCA cannot express,
#   ...). ``%`` and ``,`` are percent-encoded in tags because openLCA stores tags joined by
#   commas. Tags that do not start with ``pcf:`` are ignored.
# * Category path -> ``Classification(system="openLCA category", path=[...])``; for
#   elementary flows the path is the ``compartment`` instead.
# * Data quality: openLCA's default system (the ecoinvent pedigree matrix) orders its
#   indicators reliability, completeness, temporal, geographical, (further) technological
#   correlation. They map to precision, completeness, temporal, geographical, technological
#   (reliability of the source is what ILCD calls precision). When the dqSystem is in the
#   data, its indicator names decide the order; otherwise the default order is assumed.
# * Allocation: of the factors in ``allocationFactors`` only those of the process's
#   ``defaultAllocationMethod`` are kept. A physical or economic factor of product P
#   becomes ``allocation[P's internal id]`` on every exchange that is not an allocated
#   product; a causal factor goes on the exchange it names. The writer writes physical
#   factors when every non-product exchange carries the same factors, causal ones otherwise.
# * Exchange internal ids are numbered 1..n in file order when the data has none (v1).
# * LCIA: each climate-change impact category is one ``LCIAMethod`` (its uuid is the
#   category's); the openLCA methods that list it become ``Classification(system="openLCA
#   impact method", code=method uuid, path=[method name])``. Other categories are skipped.
# * Not carried (no place in lca.model): parameters and formulas (the computed amounts are
#   read), costs, unit synonyms, documentation texts other than technology / validity /
#   sources / actors, allocation factors of other than the default method, avoided-product
#   flags (an avoided product reads as a product input, which is what it computes as).

from __future__ import annotations

import json
import math
import os
import re
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import olca_schema as o
from olca_schema import units as olca_units
from olca_schema import zipio
from pydantic import ValidationError

from lca.errors import Diagnostic
from lca.model import (
    DEFAULT_VERSION,
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

__all__ = [
    "CATEGORY_SYSTEM",
    "DQ_ORDER",
    "IMPACT_METHOD_SYSTEM",
    "TAG_PREFIX",
    "read_jsonld",
    "write_jsonld",
]

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
_Severity = Literal["error", "warning", "info"]
_ESCAPES = {"25": "%", "2C": ",", "2c": ","}


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


# --------------------------------------------------------------------------- files


class _Files:
    """The JSON files of a JSON-LD zip or folder, by their path inside it."""

    def __init__(self, path: Path):
        self._zip: zipfile.ZipFile | None = None
        self._dir: Path | None = None
        if path.is_dir():
            self._dir = path
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.json") if p.is_file())
        else:
            self._zip = zipfile.ZipFile(path)
            self.names = sorted(i.filename for i in self._zip.infolist() if not i.is_dir())

    def folder(self, name: str) -> list[str]:
        out = []
        for n in self.names:
            parts = n.split("/")
            if len(parts) >= 2 and parts[-2] == name and n.endswith(".json"):
                out.append(n)
        return out

    def find(self, basename: str) -> str | None:
        found = [n for n in self.names if n.split("/")[-1] == basename]
        return min(found, key=len) if found else None

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        assert self._dir is not None
        return (self._dir / name).read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


# --------------------------------------------------------------------------- reader


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)[:200]
    except (TypeError, ValueError):
        return repr(value)[:200]


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


@dataclass
class _Ctx:
    """One file being read: where diagnostics point."""

    file: str
    diags: list[Diagnostic]

    def report(
        self,
        severity: _Severity,
        rule: str,
        message: str,
        location: str | None = None,
        field: str | None = None,
        value: Any = None,
    ) -> None:
        self.diags.append(
            Diagnostic(
                severity=severity,
                rule=rule,
                message=message,
                file=self.file,
                location=location or None,
                field=field,
                value=None if value is None else _show(value),
            )
        )

    def number(
        self,
        obj: dict[str, Any],
        key: str,
        base: str,
        *,
        required: bool = True,
        severity: _Severity = "error",
    ) -> float | None:
        """``obj[key]`` as a finite float, or None with a diagnostic saying why."""
        loc = _join(base, key)
        if key not in obj or obj[key] is None:
            if required:
                self.report(severity, "missing-field", f"{key!r} is missing; a number is required", loc, key)
            return None
        raw = obj[key]
        if isinstance(raw, bool):
            self.report(severity, "not-a-number", f"{key!r} is a boolean; a number is required", loc, key, raw)
            return None
        if isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                self.report(
                    severity,
                    "not-a-number",
                    f"{key!r} is not a number; a JSON number like 1.5 is accepted",
                    loc,
                    key,
                    raw,
                )
                return None
            if math.isfinite(value):
                self.report(
                    "warning", "number-as-string", f"{key!r} is a string; read as the number {value!r}", loc, key, raw
                )
        elif isinstance(raw, (int, float)):
            value = float(raw)
        else:
            self.report(severity, "not-a-number", f"{key!r} is not a number", loc, key, raw)
            return None
        if not math.isfinite(value):
            self.report(severity, "not-finite", f"{key!r} is {value}; a finite number is required", loc, key, raw)
            return None
        return value

    def flag(self, obj: dict[str, Any], v2_key: str, v1_key: str, base: str, seen_v1: list[int]) -> bool:
        """A boolean that v2 spells ``v2_key`` and v1 ``v1_key``; absent means false."""
        if v2_key in obj:
            key = v2_key
        elif v1_key in obj:
            key = v1_key
            seen_v1[0] += 1
        else:
            return False
        value = obj[key]
        if not isinstance(value, bool):
            self.report(
                "warning", "not-a-boolean", f"{key!r} is not true or false; read as false", _join(base, key), key, value
            )
            return False
        return value

    def ref(self, obj: Any, key: str | int, base: str, *, required: bool = False) -> str | None:
        """The lower-cased ``@id`` of the reference ``obj[key]`` (``obj`` a dict, or a list and ``key`` an index)."""
        loc = _join(base, key)
        name = key if isinstance(key, str) else base.rsplit(".", 1)[-1]
        if isinstance(obj, list):
            raw = obj[key] if isinstance(key, int) and 0 <= key < len(obj) else None
        else:
            raw = obj.get(key) if isinstance(obj, dict) else None
        if raw is None:
            if required:
                self.report("error", "missing-field", f"reference {name!r} is missing", loc, name)
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("@id"), str) or not raw["@id"].strip():
            self.report(
                "error" if required else "warning",
                "bad-reference",
                f"{name!r} is not a reference with an '@id'",
                loc,
                name,
                raw,
            )
            return None
        return str(raw["@id"]).strip().lower()

    def refs(self, obj: dict[str, Any], key: str, base: str) -> list[str]:
        """The ``@id`` of each reference in the list ``obj[key]``, in order, without repeats."""
        items = obj.get(key)
        if items is None:
            return []
        loc = _join(base, key)
        if not isinstance(items, list):
            self.report("warning", "bad-value", f"{key!r} is not a list; ignored", loc, key, items)
            return []
        out: list[str] = []
        for i in range(len(items)):
            uid = self.ref(items, i, loc)
            if uid is not None and uid not in out:
                out.append(uid)
        return out

    def text(self, obj: dict[str, Any], key: str, base: str = "") -> str | None:
        raw = obj.get(key)
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            self.report("warning", "not-a-string", f"{key!r} is not a string; ignored", _join(base, key), key, raw)
            return None
        return raw


def _read_uncertainty(ctx: _Ctx, obj: dict[str, Any], base: str) -> Uncertainty | None:
    """The uncertainty of an exchange, in our vocabulary (None when absent or unusable)."""
    raw = obj.get("uncertainty")
    if raw is None:
        return None
    loc = _join(base, "uncertainty")
    if not isinstance(raw, dict):
        ctx.report("warning", "bad-uncertainty", "'uncertainty' is not an object; ignored", loc, "uncertainty", raw)
        return None
    kind = o.UncertaintyType.get(raw.get("distributionType", ""))
    if kind is None:
        ctx.report(
            "warning",
            "unknown-value",
            "unknown distributionType; accepted: " + ", ".join(t.value for t in o.UncertaintyType),
            _join(loc, "distributionType"),
            "distributionType",
            raw.get("distributionType"),
        )
        return None
    needs = {
        o.UncertaintyType.LOG_NORMAL_DISTRIBUTION: ("lognormal", {"geomean": "geomMean", "geosd": "geomSd"}),
        o.UncertaintyType.NORMAL_DISTRIBUTION: ("normal", {"sd": "sd"}),
        o.UncertaintyType.TRIANGLE_DISTRIBUTION: (
            "triangular",
            {"minimum": "minimum", "mode": "mode", "maximum": "maximum"},
        ),
        o.UncertaintyType.UNIFORM_DISTRIBUTION: ("uniform", {"minimum": "minimum", "maximum": "maximum"}),
    }[kind]
    values: dict[str, Any] = {"distribution": needs[0]}
    for ours, theirs in needs[1].items():
        value = ctx.number(raw, theirs, loc, required=False, severity="warning")
        if value is None and raw.get(theirs) is not None:
            return None
        values[ours] = value
    return Uncertainty(**values)


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.diags: list[Diagnostic] = []
        self.bundle = Bundle()
        self.raw: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {f: {} for f in _FOLDERS}
        self.version = 1
        self.v1_keys = [0]
        self.v1_numbered = 0
        self.units_by_id: dict[str, str] = {}
        self.locations: dict[str, str] = {}
        self.dq_orders: dict[str, tuple[str, ...]] = {}
        self.dq_assumed = False
        self.shallow_categories = 0
        self.missing: set[tuple[str, str]] = set()

    # ---- driver

    def run(self) -> tuple[Bundle, list[Diagnostic]]:
        top = _Ctx(str(self.path), self.diags)
        if not self.path.exists():
            top.report("error", "not-found", "no such file or folder; a JSON-LD zip or unzipped folder is accepted")
            return self.bundle, self.diags
        try:
            files = _Files(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            top.report("error", "not-a-zip", f"cannot open as a zip ({exc}); a JSON-LD zip or folder is accepted")
            return self.bundle, self.diags
        try:
            self._detect_version(files)
            self._load(files)
        finally:
            files.close()
        self._index()
        self._unit_groups()
        self._flow_properties()
        self._flows()
        self._sources()
        self._actors()
        self._processes()
        self._lcia()
        self._product_systems()
        self._summaries()
        return self.bundle, self.diags

    def _detect_version(self, files: _Files) -> None:
        name = files.find("olca-schema.json")
        if name is None:
            self.version = 1
            return
        ctx = _Ctx(name, self.diags)
        try:
            meta = json.loads(files.read(name))
        except (ValueError, UnicodeDecodeError) as exc:
            ctx.report("warning", "invalid-json", f"not JSON ({exc}); assuming the v2 layout")
            self.version = 2
            return
        version = meta.get("version") if isinstance(meta, dict) else None
        if version != 2:
            ctx.report(
                "warning",
                "jsonld-version",
                "unknown schema version; read as v2 (v1 keys are also accepted)",
                "version",
                "version",
                version,
            )
        self.version = 2

    def _load(self, files: _Files) -> None:
        for folder, type_name in _FOLDERS.items():
            for name in files.folder(folder):
                ctx = _Ctx(name, self.diags)
                try:
                    data = json.loads(files.read(name))
                except (ValueError, UnicodeDecodeError) as exc:
                    ctx.report("error", "invalid-json", f"not valid JSON: {exc}")
                    continue
                if not isinstance(data, dict):
                    ctx.report("error", "invalid-json", "the file is not a JSON object")
                    continue
                stem = name.split("/")[-1][: -len(".json")]
                uid = data.get("@id")
                if not isinstance(uid, str) or not uid.strip():
                    ctx.report("warning", "missing-field", "'@id' is missing; the file name is used", "@id", "@id")
                    uid = stem
                uid = uid.strip().lower()
                if uid != stem.lower():
                    ctx.report(
                        "warning", "id-mismatch", f"'@id' differs from the file name {stem!r}", "@id", "@id", uid
                    )
                kind = data.get("@type")
                if kind is not None and kind != type_name:
                    ctx.report(
                        "warning",
                        "unexpected-type",
                        f"'@type' in folder {folder}/ should be {type_name!r}",
                        "@type",
                        "@type",
                        kind,
                    )
                if uid in self.raw[folder]:
                    ctx.report("warning", "duplicate-id", f"{uid} is also in {self.raw[folder][uid][0]}; this one wins")
                self.raw[folder][uid] = (name, data)

    def _index(self) -> None:
        for uid, (name, data) in self.raw["unit_groups"].items():
            for u in data.get("units") or []:
                if isinstance(u, dict) and isinstance(u.get("@id"), str) and isinstance(u.get("name"), str):
                    self.units_by_id[u["@id"].lower()] = u["name"]
        for uid, (name, data) in self.raw["locations"].items():
            code = data.get("code") or data.get("name")
            if isinstance(code, str) and code:
                self.locations[uid] = code
        for uid, (name, data) in self.raw["dq_systems"].items():
            order = self._dq_order(_Ctx(name, self.diags), data)
            if order is not None:
                self.dq_orders[uid] = order

    def _dq_order(self, ctx: _Ctx, data: dict[str, Any]) -> tuple[str, ...] | None:
        indicators = [i for i in data.get("indicators") or [] if isinstance(i, dict)]
        indicators.sort(key=lambda i: i["position"] if isinstance(i.get("position"), int) else 0)
        order = []
        for i, ind in enumerate(indicators):
            name = str(ind.get("name") or "").lower()
            ours = next((v for k, v in _DQ_KEYWORDS if k in name), None)
            if ours is None:
                ctx.report(
                    "warning",
                    "unknown-dq-indicator",
                    "indicator name not recognised (reliability, completeness, temporal, geographical, "
                    "technological are); the default openLCA order is used for this system",
                    f"indicators[{i}].name",
                    "name",
                    ind.get("name"),
                )
                return None
            order.append(ours)
        return tuple(order) or None

    def _summaries(self) -> None:
        top = _Ctx(str(self.path), self.diags)
        if self.version == 1:
            top.report(
                "info",
                "jsonld-v1-layout",
                "openLCA JSON-LD v1 layout (openLCA 1.x) detected: no olca-schema.json. Read the v1 keys "
                f"input / quantitativeReference / referenceFlowProperty / referenceUnit ({self.v1_keys[0]} values) "
                "that the v2 olca_schema reader drops; "
                f"{self.v1_numbered} exchanges without internalId numbered 1..n in file order",
            )
        elif self.v1_keys[0]:
            top.report(
                "warning",
                "jsonld-v1-keys",
                f"{self.v1_keys[0]} v1 keys (input, quantitativeReference, ...) in a v2 layout; read as v1",
            )
        if self.shallow_categories:
            top.report(
                "info",
                "category-path-shallow",
                f"{self.shallow_categories} v1 category references resolved to their last segment only "
                "(no categories/ folder with the parent chain)",
            )
        if self.dq_assumed:
            top.report(
                "info",
                "dq-order-assumed",
                "dqEntry read in openLCA's default order (reliability->precision, completeness, temporal, "
                "geographical, technological): the data quality system is not in the data",
            )

    # ---- shared pieces

    def _missing(self, ctx: _Ctx, severity: _Severity, kind: str, uid: str, loc: str, key: str) -> None:
        if (kind, uid) in self.missing:
            return
        self.missing.add((kind, uid))
        ctx.report(severity, "missing-reference", f"the referenced {kind} {uid} is not in the data", loc, key, uid)

    def _tags(self, ctx: _Ctx, data: dict[str, Any]) -> _Tags:
        tags = _Tags()
        raw = data.get("tags")
        if raw is None:
            return tags
        if not isinstance(raw, list):
            ctx.report("warning", "bad-tag", "'tags' is not a list; ignored", "tags", "tags", raw)
            return tags
        for i, tag in enumerate(raw):
            if not isinstance(tag, str) or not tag.startswith(TAG_PREFIX):
                continue
            key, sep, value = tag[len(TAG_PREFIX) :].partition("=")
            value = _unescape(value)
            loc = f"tags[{i}]"
            try:
                if not sep:
                    raise ValueError("no '='")
                if "@" in key:
                    name, _, lang = key.partition("@")
                    tags.i18n.setdefault(name, {})[lang] = value
                elif key.endswith("-lang"):
                    tags.langs[key[: -len("-lang")]] = value
                elif key == "classification":
                    tags.classifications.append(Classification.model_validate(json.loads(value)))
                elif key == "extras":
                    extras = json.loads(value)
                    if not isinstance(extras, dict):
                        raise ValueError("extras is not a JSON object")
                    tags.extras.update(extras)
                else:
                    raise ValueError(f"unknown key {key!r}")
            except (ValueError, ValidationError) as exc:
                ctx.report("warning", "bad-tag", f"tag not understood ({exc}); ignored", loc, "tags", tag)
        return tags

    def _category(self, ctx: _Ctx, data: dict[str, Any]) -> list[str]:
        cat = data.get("category")
        if cat is None or cat == "":
            return []
        if isinstance(cat, str):
            return [p for p in cat.split("/") if p]
        if isinstance(cat, dict):
            path: list[str] = []
            uid = cat.get("@id")
            seen: set[str] = set()
            node: dict[str, Any] | None = cat
            while isinstance(uid, str) and uid.lower() in self.raw["categories"] and uid.lower() not in seen:
                seen.add(uid.lower())
                node = self.raw["categories"][uid.lower()][1]
                if isinstance(node.get("name"), str):
                    path.insert(0, node["name"])
                parent = node.get("category")
                uid = parent.get("@id") if isinstance(parent, dict) else None
            if path:
                return path
            if isinstance(cat.get("name"), str) and cat["name"]:
                self.shallow_categories += 1
                return [cat["name"]]
        ctx.report(
            "warning",
            "bad-category",
            "'category' is neither a path nor a category reference; ignored",
            "category",
            "category",
            cat,
        )
        return []

    def _common(self, ctx: _Ctx, uid: str, data: dict[str, Any]) -> tuple[dict[str, Any], _Tags, list[str]]:
        tags = self._tags(ctx, data)
        version = data.get("version")
        if not isinstance(version, str):
            version = DEFAULT_VERSION
        else:
            try:
                Dataset(uuid=uid, version=version)
            except ValidationError:
                ctx.report(
                    "warning",
                    "invalid-version",
                    f"not a version like '01.00.000'; {DEFAULT_VERSION} is used",
                    "version",
                    "version",
                    version,
                )
                version = DEFAULT_VERSION
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            ctx.report("warning", "not-a-string", "'name' is not a string; ignored", "name", "name", name)
            name = None
        if not name and not tags.i18n.get("name"):
            ctx.report("warning", "missing-field", "the dataset has no name", "name", "name")
        common = {
            "uuid": uid,
            "version": version,
            "name": tags.text("name", name),
            "description": tags.text("description", ctx.text(data, "description")),
        }
        return common, tags, self._category(ctx, data)

    def _classifications(self, path: list[str], tags: _Tags) -> list[Classification]:
        out = [Classification(system=CATEGORY_SYSTEM, path=path)] if path else []
        return out + tags.classifications

    def _add(self, ctx: _Ctx, cls: type[Dataset], kwargs: dict[str, Any]) -> Dataset | None:
        try:
            ds = cls(**kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            ctx.report(
                "error",
                "invalid-dataset",
                f"not a valid {cls.__name__}: {first['msg']}; the dataset is skipped",
                loc,
                loc,
                first.get("input"),
            )
            return None
        self.bundle.add(ds)
        return ds

    def _location(self, ctx: _Ctx, obj: dict[str, Any], key: str, base: str) -> str | None:
        uid = ctx.ref(obj, key, base)
        if uid is None:
            return None
        if uid in self.locations:
            return self.locations[uid]
        self._missing(ctx, "warning", "location", uid, _join(base, key), key)
        name = obj[key].get("code") or obj[key].get("name")
        return name if isinstance(name, str) and name else None

    def _unit_name(self, ctx: _Ctx, obj: dict[str, Any], key: str, base: str) -> str | None:
        loc = _join(base, key)
        raw = obj.get(key)
        if not isinstance(raw, dict):
            ctx.report(
                "error",
                "missing-field" if raw is None else "bad-reference",
                f"{key!r} must be a unit reference with '@id' and 'name'",
                loc,
                key,
                raw,
            )
            return None
        uid = raw.get("@id")
        if isinstance(uid, str) and uid.lower() in self.units_by_id:
            return self.units_by_id[uid.lower()]
        name = raw.get("name")
        if isinstance(name, str) and name:
            return name
        ctx.report("error", "unknown-unit", "the unit reference has neither a known '@id' nor a name", loc, key, raw)
        return None

    def _dq(self, ctx: _Ctx, obj: dict[str, Any], key: str, base: str, system: str | None) -> DataQuality | None:
        raw = obj.get(key)
        if raw is None or raw == "":
            return None
        loc = _join(base, key)
        match = re.fullmatch(r"\s*\((.*)\)\s*", raw) if isinstance(raw, str) else None
        if match is None:
            ctx.report("warning", "bad-dq-entry", "not a data quality entry like '(1;2;3;4;5)'; ignored", loc, key, raw)
            return None
        if system is not None and system in self.dq_orders:
            order = self.dq_orders[system]
        else:
            order = DQ_ORDER
            self.dq_assumed = True
        parts = [p.strip() for p in match.group(1).split(";")]
        if len(parts) != len(order):
            ctx.report(
                "warning",
                "bad-dq-entry",
                f"{len(parts)} scores for a system of {len(order)} indicators; ignored",
                loc,
                key,
                raw,
            )
            return None
        values: dict[str, int] = {}
        for name, part in zip(order, parts):
            if part in ("", "n.a.", "na", "0", "-"):
                continue
            if not part.isdigit() or not 1 <= int(part) <= 5:
                ctx.report("warning", "bad-dq-entry", f"score {part!r} is not 1..5 or 'n.a.'; ignored", loc, key, raw)
                return None
            values[name] = int(part)
        return DataQuality(**values)

    # ---- datasets

    def _unit_groups(self) -> None:
        for uid, (name, data) in self.raw["unit_groups"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            units: list[Unit] = []
            ref_unit: str | None = None
            unit_desc = tags.extras.get("unit_descriptions", {})
            raw_units = data.get("units")
            if not isinstance(raw_units, list):
                raw_units = []
            for i, u in enumerate(raw_units):
                loc = f"units[{i}]"
                if not isinstance(u, dict) or not isinstance(u.get("name"), str) or not u["name"]:
                    ctx.report(
                        "error",
                        "missing-field",
                        "a unit needs a name; skipped",
                        _join(loc, "name"),
                        "name",
                        u.get("name") if isinstance(u, dict) else u,
                    )
                    continue
                factor = ctx.number(u, "conversionFactor", loc)
                if factor is None:
                    continue
                if factor <= 0:
                    ctx.report(
                        "error",
                        "bad-factor",
                        "a conversion factor must be positive; unit skipped",
                        _join(loc, "conversionFactor"),
                        "conversionFactor",
                        factor,
                    )
                    continue
                desc = {"en": u["description"]} if isinstance(u.get("description"), str) and u["description"] else {}
                desc.update(unit_desc.get(u["name"], {}))
                units.append(Unit(name=u["name"], factor=factor, description=desc))
                if ctx.flag(u, "isRefUnit", "referenceUnit", loc, self.v1_keys):
                    if ref_unit is not None:
                        ctx.report(
                            "warning",
                            "several-reference-units",
                            f"{ref_unit!r} is kept as reference unit",
                            _join(loc, "isRefUnit"),
                            "isRefUnit",
                            u["name"],
                        )
                    else:
                        ref_unit = u["name"]
            if not units:
                ctx.report("error", "no-units", "the unit group has no usable unit; skipped", "units", "units")
                continue
            if ref_unit is None:
                ref_unit = next((u.name for u in units if u.factor == 1.0), units[0].name)
                ctx.report(
                    "warning",
                    "no-reference-unit",
                    f"no unit is marked as reference; {ref_unit!r} is used",
                    "units",
                    "isRefUnit",
                    ref_unit,
                )
            self._add(
                ctx,
                UnitGroup,
                {
                    **common,
                    "classifications": self._classifications(path, tags),
                    "units": units,
                    "reference_unit": ref_unit,
                },
            )

    def _flow_properties(self) -> None:
        for uid, (name, data) in self.raw["flow_properties"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            group = ctx.ref(data, "unitGroup", "", required=True)
            if group is None:
                continue
            if group not in self.raw["unit_groups"]:
                self._missing(ctx, "error", "unit group", group, "unitGroup", "unitGroup")
            self._add(
                ctx, FlowProperty, {**common, "classifications": self._classifications(path, tags), "unit_group": group}
            )

    def _flows(self) -> None:
        for uid, (name, data) in self.raw["flows"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            kind = o.FlowType.get(data.get("flowType", ""))
            if kind not in _FLOW_TYPES:
                ctx.report(
                    "error",
                    "unknown-value",
                    "flowType must be ELEMENTARY_FLOW, PRODUCT_FLOW or WASTE_FLOW; flow skipped",
                    "flowType",
                    "flowType",
                    data.get("flowType"),
                )
                continue
            flow_type = _FLOW_TYPES[kind]
            props: list[FlowPropertyFactor] = []
            raw_props = data.get("flowProperties")
            if not isinstance(raw_props, list):
                raw_props = []
            for i, fp in enumerate(raw_props):
                loc = f"flowProperties[{i}]"
                if not isinstance(fp, dict):
                    ctx.report("error", "bad-value", "not a flow property factor; skipped", loc, "flowProperties", fp)
                    continue
                prop = ctx.ref(fp, "flowProperty", loc, required=True)
                factor = ctx.number(fp, "conversionFactor", loc)
                if prop is None or factor is None:
                    continue
                if prop not in self.raw["flow_properties"]:
                    self._missing(ctx, "error", "flow property", prop, _join(loc, "flowProperty"), "flowProperty")
                ref = ctx.flag(fp, "isRefFlowProperty", "referenceFlowProperty", loc, self.v1_keys)
                props.append(FlowPropertyFactor(flow_property=prop, factor=factor, reference=ref))
            if not props:
                ctx.report(
                    "error",
                    "no-flow-property",
                    "the flow has no usable flow property",
                    "flowProperties",
                    "flowProperties",
                )
            elif sum(p.reference for p in props) != 1:
                ctx.report(
                    "warning",
                    "reference-flow-property",
                    f"{sum(p.reference for p in props)} flow properties are marked as reference; 1 is expected",
                    "flowProperties",
                    "isRefFlowProperty",
                )
            synonyms: dict[str, list[str]] = {}
            raw_syn = data.get("synonyms")
            if isinstance(raw_syn, str) and raw_syn.strip():
                synonyms["en"] = [s.strip() for s in raw_syn.split(";") if s.strip()]
            elif isinstance(raw_syn, list):
                synonyms["en"] = [s for s in raw_syn if isinstance(s, str) and s]
            synonyms.update(tags.extras.get("synonyms", {}))
            kwargs: dict[str, Any] = {
                **common,
                "flow_type": flow_type,
                "cas": ctx.text(data, "cas"),
                "formula": ctx.text(data, "formula"),
                "synonyms": synonyms,
                "properties": props,
                "location": self._location(ctx, data, "location", ""),
            }
            if flow_type == "elementary":
                kwargs["compartment"] = path
                kwargs["classifications"] = list(tags.classifications)
            else:
                kwargs["classifications"] = self._classifications(path, tags)
            self._add(ctx, Flow, kwargs)

    def _sources(self) -> None:
        for uid, (name, data) in self.raw["sources"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            self._add(
                ctx,
                Source,
                {
                    **common,
                    "classifications": self._classifications(path, tags),
                    "citation": ctx.text(data, "textReference"),
                    "url": ctx.text(data, "url"),
                },
            )

    def _actors(self) -> None:
        for uid, (name, data) in self.raw["actors"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            self._add(
                ctx,
                Contact,
                {
                    **common,
                    "classifications": self._classifications(path, tags),
                    "email": ctx.text(data, "email"),
                    "url": ctx.text(data, "website"),
                    "address": tags.text("address", ctx.text(data, "address")),
                },
            )

    def _processes(self) -> None:
        for uid, (name, data) in self.raw["processes"].items():
            self._process(_Ctx(name, self.diags), uid, data)

    def _process(self, ctx: _Ctx, uid: str, data: dict[str, Any]) -> None:
        common, tags, path = self._common(ctx, uid, data)
        extras = tags.extras
        doc = data.get("processDocumentation")
        if not isinstance(doc, dict):
            doc = {}
        ptype = data.get("processType")
        process_type = "unit"
        if ptype == "LCI_RESULT":
            process_type = "lci_result"
        elif ptype not in (None, "UNIT_PROCESS"):
            ctx.report(
                "warning",
                "unknown-value",
                "processType must be UNIT_PROCESS or LCI_RESULT; read as unit",
                "processType",
                "processType",
                ptype,
            )
        years: dict[str, int | None] = {}
        for key in ("validFrom", "validUntil"):
            raw = doc.get(key)
            years[key] = None
            if raw is None:
                continue
            match = _YEAR_RE.match(raw) if isinstance(raw, str) else None
            if match is None:
                ctx.report(
                    "warning",
                    "bad-date",
                    "not a date like '2020-01-01'; ignored",
                    f"processDocumentation.{key}",
                    key,
                    raw,
                )
            else:
                years[key] = int(match.group(1))
        sources = ctx.refs(doc, "sources", "processDocumentation")
        pub = ctx.ref(doc, "publication", "processDocumentation")
        if pub and pub not in sources:
            sources.append(pub)
        for sid in sources:
            if sid not in self.raw["sources"]:
                self._missing(ctx, "info", "source", sid, "processDocumentation.sources", "sources")
        contacts: list[str] = []
        for key in ("dataGenerator", "dataDocumentor", "dataSetOwner"):
            cid = ctx.ref(doc, key, "processDocumentation")
            if cid and cid not in contacts:
                contacts.append(cid)
        if isinstance(extras.get("contacts"), list):
            contacts = [str(c) for c in extras["contacts"]]
        for cid in contacts:
            if cid not in self.raw["actors"]:
                self._missing(ctx, "info", "actor", cid, "processDocumentation", "dataGenerator")

        exchanges, refs, ours = self._exchanges(ctx, data, extras)
        if isinstance(extras.get("reference_exchanges"), list):
            refs = [str(r) for r in extras["reference_exchanges"]]
        elif not refs:
            ctx.report(
                "warning",
                "no-reference-exchange",
                "no exchange is marked as quantitative reference (isQuantitativeReference / quantitativeReference)",
                "exchanges",
                "isQuantitativeReference",
            )
        self._allocation(ctx, data, exchanges, ours)
        system = ctx.ref(data, "dqSystem", "")
        kwargs: dict[str, Any] = {
            **common,
            "classifications": self._classifications(path, tags),
            "process_type": process_type,
            "location": self._location(ctx, data, "location", ""),
            "sub_location": extras.get("sub_location"),
            "reference_year": years["validFrom"],
            "valid_until": years["validUntil"],
            "reference_exchanges": refs,
            "exchanges": [],
            "data_quality": self._dq(ctx, data, "dqEntry", "", system) or DataQuality(),
            "sources": sources,
            "contacts": contacts,
            "technology": tags.text("technology", ctx.text(doc, "technologyDescription", "processDocumentation")),
            "annual_production": extras.get("annual_production"),
        }
        built: list[Exchange] = []
        for loc, ex in exchanges:
            try:
                built.append(Exchange(**ex))
            except ValidationError as exc:
                first = exc.errors()[0]
                ctx.report(
                    "error",
                    "invalid-exchange",
                    f"not a valid exchange: {first['msg']}; skipped",
                    loc,
                    ".".join(str(p) for p in first["loc"]),
                    first.get("input"),
                )
        kwargs["exchanges"] = built
        self._add(ctx, Process, kwargs)

    def _exchanges(
        self, ctx: _Ctx, data: dict[str, Any], extras: dict[str, Any]
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[str], dict[int, str]]:
        """The exchanges (JSON path, Exchange arguments), the reference ids and our id of each internalId."""
        raw = data.get("exchanges")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            ctx.report("error", "bad-value", "'exchanges' is not a list", "exchanges", "exchanges", raw)
            raw = []
        system = ctx.ref(data, "exchangeDqSystem", "")
        ex_extras: dict[str, Any] = extras.get("exchanges", {}) if isinstance(extras.get("exchanges"), dict) else {}
        id_map: dict[str, Any] = extras.get("internal_ids", {}) if isinstance(extras.get("internal_ids"), dict) else {}
        pending: list[tuple[int, int | None, dict[str, Any], bool]] = []
        used: set[int] = set()
        for i, ex in enumerate(raw):
            loc = f"exchanges[{i}]"
            if not isinstance(ex, dict):
                ctx.report("error", "bad-value", "an exchange must be an object; skipped", loc, "exchanges", ex)
                continue
            iid = ex.get("internalId")
            if iid is not None and (isinstance(iid, bool) or not isinstance(iid, int)):
                ctx.report(
                    "warning",
                    "bad-internal-id",
                    "internalId is not an integer; a new one is assigned",
                    _join(loc, "internalId"),
                    "internalId",
                    iid,
                )
                iid = None
            if iid is not None and iid in used:
                ctx.report(
                    "warning",
                    "duplicate-internal-id",
                    "internalId is used twice; a new one is assigned",
                    _join(loc, "internalId"),
                    "internalId",
                    iid,
                )
                iid = None
            if iid is not None:
                used.add(iid)
            flow = ctx.ref(ex, "flow", loc, required=True)
            amount = ctx.number(ex, "amount", loc)
            is_input = ctx.flag(ex, "isInput", "input", loc, self.v1_keys)
            is_ref = ctx.flag(ex, "isQuantitativeReference", "quantitativeReference", loc, self.v1_keys)
            if flow is None or amount is None:
                continue
            if flow not in self.bundle.flows:
                self._missing(ctx, "error", "flow", flow, _join(loc, "flow"), "flow")
            unit = self._unit_name(ctx, ex, "unit", loc)
            if unit is None:
                continue
            prop = ctx.ref(ex, "flowProperty", loc)
            self._check_unit(ctx, flow, prop, unit, loc)
            provider = ctx.ref(ex, "defaultProvider", loc)
            if provider and provider not in self.raw["processes"]:
                self._missing(
                    ctx, "info", "provider process", provider, _join(loc, "defaultProvider"), "defaultProvider"
                )
            comment = {"en": ex["description"]} if isinstance(ex.get("description"), str) and ex["description"] else {}
            kwargs: dict[str, Any] = {
                "flow": flow,
                "direction": "input" if is_input else "output",
                "amount": amount,
                "unit": unit,
                "flow_property": prop,
                "uncertainty": _read_uncertainty(ctx, ex, loc),
                "provider": provider,
                "comment": comment,
                "location": self._location(ctx, ex, "location", loc),
                "data_quality": self._dq(ctx, ex, "dqEntry", loc, system),
            }
            pending.append((i, iid, kwargs, is_ref))
        if pending and all(p[1] is None for p in pending):
            self.v1_numbered += len(pending) if self.version == 1 else 0
            if self.version != 1:
                ctx.report(
                    "warning",
                    "no-internal-ids",
                    "exchanges have no internalId; numbered 1..n in file order",
                    "exchanges",
                    "internalId",
                )
        out: list[tuple[str, dict[str, Any]]] = []
        refs: list[str] = []
        ours: dict[int, str] = {}
        for i, iid, kwargs, is_ref in pending:
            if iid is None:
                iid = i + 1
                while iid in used:
                    iid = max(used) + 1
                used.add(iid)
            key = str(iid)
            extra = ex_extras.get(key, {})
            internal = str(id_map.get(key, key))
            kwargs["internal_id"] = internal
            ours[iid] = internal
            if isinstance(extra, dict):
                self._exchange_extras(ctx, kwargs, extra, f"exchanges[{i}]")
            out.append((f"exchanges[{i}]", kwargs))
            if is_ref:
                refs.append(internal)
        return out, refs, ours

    def _exchange_extras(self, ctx: _Ctx, kwargs: dict[str, Any], extra: dict[str, Any], loc: str) -> None:
        if extra.get("no_flow_property"):
            kwargs["flow_property"] = None
        if "data_source" in extra:
            kwargs["data_source"] = extra["data_source"]
        if isinstance(extra.get("comment"), dict):
            comment: I18n = {}
            text = kwargs["comment"].get("en")
            if text is not None:
                comment[str(extra.get("comment_lang", "en"))] = text
            comment.update(extra["comment"])
            kwargs["comment"] = comment
        if "uncertainty" in extra:
            try:
                kwargs["uncertainty"] = (
                    None if extra["uncertainty"] is None else Uncertainty.model_validate(extra["uncertainty"])
                )
            except ValidationError:
                ctx.report(
                    "warning",
                    "bad-tag",
                    "uncertainty in the extras tag not understood",
                    loc,
                    "uncertainty",
                    extra["uncertainty"],
                )

    def _check_unit(self, ctx: _Ctx, flow_id: str, prop: str | None, unit: str, loc: str) -> None:
        flow = self.bundle.flows.get(flow_id)
        if prop is None:
            prop = flow.reference_property() if flow else None
        elif flow is not None and flow.properties and prop not in {p.flow_property for p in flow.properties}:
            ctx.report(
                "warning",
                "flow-property-not-on-flow",
                f"flow {flow.display_name()!r} has no flow property {prop}",
                _join(loc, "flowProperty"),
                "flowProperty",
                prop,
            )
        fp = self.bundle.flow_properties.get(prop) if prop else None
        group = self.bundle.unit_groups.get(fp.unit_group) if fp else None
        if fp is None or group is None or group.factor(unit) is not None:
            return
        accepted = ", ".join(u.name for u in group.units)
        ctx.report(
            "error",
            "unknown-unit",
            f"unit {unit!r} is not in unit group {group.display_name()!r} of flow property "
            f"{fp.display_name()!r}; accepted: {accepted}",
            _join(loc, "unit"),
            "unit",
            unit,
        )

    def _allocation(
        self, ctx: _Ctx, data: dict[str, Any], exchanges: list[tuple[str, dict[str, Any]]], ours: dict[int, str]
    ) -> None:
        raw = data.get("allocationFactors")
        if not raw:
            return
        if not isinstance(raw, list):
            ctx.report(
                "warning",
                "bad-value",
                "'allocationFactors' is not a list; ignored",
                "allocationFactors",
                "allocationFactors",
                raw,
            )
            return
        kinds = {o.AllocationType.get(f.get("allocationType", "")) for f in raw if isinstance(f, dict)}
        kinds.discard(None)
        method = o.AllocationType.get(data.get("defaultAllocationMethod") or "")
        usable = (
            o.AllocationType.PHYSICAL_ALLOCATION,
            o.AllocationType.ECONOMIC_ALLOCATION,
            o.AllocationType.CAUSAL_ALLOCATION,
        )
        if method not in usable:
            if len(kinds) != 1:
                ctx.report(
                    "warning",
                    "allocation-method",
                    "allocation factors of several types but no default allocation method; none kept",
                    "defaultAllocationMethod",
                    "defaultAllocationMethod",
                    data.get("defaultAllocationMethod"),
                )
                return
            method = next(iter(kinds))
        if kinds - {method}:
            ctx.report(
                "info",
                "allocation-method",
                f"only the {method.value} factors (the default method) are kept; "
                f"{', '.join(sorted(k.value for k in kinds - {method}))} factors are dropped",
                "allocationFactors",
                "allocationType",
            )
        by_iid = {ex["internal_id"]: ex for _, ex in exchanges}
        factors: list[tuple[str, str | None, float]] = []
        for j, f in enumerate(raw):
            loc = f"allocationFactors[{j}]"
            if not isinstance(f, dict) or o.AllocationType.get(f.get("allocationType", "")) != method:
                continue
            product_flow = ctx.ref(f, "product", loc, required=True)
            value = ctx.number(f, "value", loc)
            if product_flow is None or value is None:
                continue
            candidates = [ex for _, ex in exchanges if ex["flow"] == product_flow]
            if not candidates:
                ctx.report(
                    "warning",
                    "allocation-product",
                    "no exchange of this product flow; factor ignored",
                    _join(loc, "product"),
                    "product",
                    product_flow,
                )
                continue
            product = next(
                (
                    ex
                    for ex in candidates
                    if (ex["direction"] == "output")
                    != (
                        self.bundle.flows.get(product_flow) is not None
                        and self.bundle.flows[product_flow].flow_type == "waste"
                    )
                ),
                candidates[0],
            )
            target: str | None = None
            if method == o.AllocationType.CAUSAL_ALLOCATION:
                ref = f.get("exchange")
                iid = ref.get("internalId") if isinstance(ref, dict) else None
                target = ours.get(iid) if isinstance(iid, int) and not isinstance(iid, bool) else None
                if target is None:
                    ctx.report(
                        "warning",
                        "allocation-exchange",
                        "causal factor names no exchange of this process by internalId; ignored",
                        _join(loc, "exchange"),
                        "exchange",
                        ref,
                    )
                    continue
            factors.append((product["internal_id"], target, value))
        products = {p for p, _, _ in factors}
        for product_id, target, value in factors:
            if target is not None:
                by_iid[target].setdefault("allocation", {})[product_id] = value
                continue
            for iid, ex in by_iid.items():
                if iid not in products:
                    ex.setdefault("allocation", {})[product_id] = value

    def _lcia(self) -> None:
        methods_of: dict[str, list[tuple[str, str, bool]]] = {}
        for mid, (name, data) in self.raw["lcia_methods"].items():
            ctx = _Ctx(name, self.diags)
            tags = self._tags(ctx, data)
            wrapper = bool(tags.extras.get("wrapper"))
            mname = str(data["name"]) if isinstance(data.get("name"), str) else mid
            for cid in ctx.refs(data, "impactCategories", ""):
                methods_of.setdefault(cid, []).append((mid, mname, wrapper))
                if cid not in self.raw["lcia_categories"]:
                    self._missing(ctx, "warning", "impact category", cid, "impactCategories", "impactCategories")
        skipped: list[str] = []
        for uid, (name, data) in self.raw["lcia_categories"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            ref_unit = ctx.text(data, "refUnit") or ctx.text(data, "referenceUnitName")
            parents = methods_of.get(uid, [])
            texts = [str(data.get("name") or ""), str(data.get("description") or ""), ref_unit or ""]
            for mid, mname, _ in parents:
                mdata = self.raw["lcia_methods"][mid][1]
                texts += [mname, str(mdata.get("description") or "")]
            if "indicator" not in tags.extras and not _CLIMATE_RE.search(" ".join(texts[:3])):
                skipped.append(str(data.get("name") or uid))
                continue
            gwp_set = (
                tags.extras.get("gwp_set")
                if "gwp_set" in tags.extras
                else next((label for rx, label in _GWP_SETS if any(rx.search(t) for t in texts)), None)
            )
            if ref_unit is None:
                ctx.report(
                    "warning", "missing-field", "no reference unit; 'kg CO2 eq' is assumed", "refUnit", "refUnit"
                )
                ref_unit = "kg CO2 eq"
            factors: list[CharacterisationFactor] = []
            missing_flows = 0
            for i, f in enumerate(data.get("impactFactors") or []):
                loc = f"impactFactors[{i}]"
                if not isinstance(f, dict):
                    ctx.report("error", "bad-value", "not an impact factor; skipped", loc, "impactFactors", f)
                    continue
                flow = ctx.ref(f, "flow", loc, required=True)
                value = ctx.number(f, "value", loc)
                if flow is None or value is None:
                    continue
                missing_flows += flow not in self.raw["flows"]
                unit = self._unit_name(ctx, f, "unit", loc) if f.get("unit") is not None else None
                factors.append(
                    CharacterisationFactor(
                        flow=flow, value=value, flow_property=ctx.ref(f, "flowProperty", loc), unit=unit
                    )
                )
            if missing_flows:
                ctx.report(
                    "warning",
                    "missing-reference",
                    f"{missing_flows} factors name flows that are not in the data",
                    "impactFactors",
                    "flow",
                )
            classes = [Classification(system=CATEGORY_SYSTEM, path=path)] if path else []
            classes += [
                Classification(system=IMPACT_METHOD_SYSTEM, code=mid, path=[mname])
                for mid, mname, wrapper in parents
                if not wrapper
            ]
            self._add(
                ctx,
                LCIAMethod,
                {
                    **common,
                    "classifications": classes + tags.classifications,
                    "indicator": tags.extras.get("indicator", "climate change"),
                    "reference_unit": ref_unit,
                    "gwp_set": gwp_set,
                    "factors": factors,
                },
            )
        if skipped:
            _Ctx(str(self.path), self.diags).report(
                "info",
                "lcia-skipped",
                f"{len(skipped)} impact categories that are not climate change are not read: "
                + "; ".join(skipped[:10])
                + (" ..." if len(skipped) > 10 else ""),
            )

    def _product_systems(self) -> None:
        for uid, (name, data) in self.raw["product_systems"].items():
            ctx = _Ctx(name, self.diags)
            common, tags, path = self._common(ctx, uid, data)
            ref = ctx.ref(data, "refProcess", "", required=True)
            if ref is None:
                continue
            processes = ctx.refs(data, "processes", "")
            for pid in processes:
                if pid not in self.raw["processes"]:
                    self._missing(ctx, "warning", "process", pid, "processes", "processes")
            links: list[ModelLink] = []
            for i, link in enumerate(data.get("processLinks") or []):
                loc = f"processLinks[{i}]"
                if not isinstance(link, dict):
                    ctx.report("warning", "bad-value", "not a process link; skipped", loc, "processLinks", link)
                    continue
                provider, flow, recipient = (
                    ctx.ref(link, k, loc, required=True) for k in ("provider", "flow", "process")
                )
                if provider is None or flow is None or recipient is None:
                    continue
                links.append(ModelLink(provider=provider, flow=flow, recipient=recipient))
            self._add(
                ctx,
                LifeCycleModel,
                {
                    **common,
                    "classifications": self._classifications(path, tags),
                    "reference_process": ref,
                    "processes": processes,
                    "links": links,
                    "location": tags.extras.get("location"),
                },
            )


def read_jsonld(path: Path) -> tuple[Bundle, list[Diagnostic]]:
    """Read an openLCA JSON-LD zip or unzipped folder, v1 (openLCA 1.x) or v2 layout.

    Parameters
    ----------
    path
        A ``.zip`` or a folder holding ``processes/``, ``flows/``, ``flow_properties/``,
        ``unit_groups/``, ``lcia_methods/``, ``lcia_categories/``, ``sources/``, ``actors/``,
        ``locations/``, ``product_systems/`` (any may be absent).

    Returns
    -------
    tuple[Bundle, list[Diagnostic]]
        The datasets that could be read and every finding, each naming the file inside the
        zip or folder, the JSON path (``exchanges[3].amount``), the field and the value. An
        exchange whose amount is not a finite number is left out (error); one whose unit is
        not in its flow property's unit group is kept with the unit as written (error); a
        missing flow, flow property or unit group is an error, a missing source, actor or
        provider an info. The v1 layout is reported as an info.
    """
    return _Reader(Path(path)).run()


# --------------------------------------------------------------------------- writer


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


class _Writer:
    def __init__(self, bundle: Bundle, zw: zipio.ZipWriter):
        self.b = bundle
        self.zw = zw
        self.locations: set[str] = set()
        self.unit_ids: dict[str, str] = {}
        """openLCA reference unit id -> the unit name written with it."""
        self.dq_used = False

    def run(self) -> None:
        for group in self.b.unit_groups.values():
            self.zw.write(self._unit_group(group))
        for fp in self.b.flow_properties.values():
            self.zw.write(self._flow_property(fp))
        for flow in self.b.flows.values():
            self.zw.write(self._flow(flow))
        for src in self.b.sources.values():
            self.zw.write(self._source(src))
        for contact in self.b.contacts.values():
            self.zw.write(self._actor(contact))
        for process in self.b.processes.values():
            self.zw.write(self._process(process))
        self._lcia()
        for model in self.b.models.values():
            self.zw.write(self._product_system(model))
        for code in sorted(self.locations):
            self.zw.write(
                _no_timestamp(o.Location(id=_derived("location", code), name=code, code=code, version=DEFAULT_VERSION))
            )
        if self.dq_used:
            self.zw.write(self._dq_system())

    # ---- shared

    def _common(self, ds: Dataset, tw: _TagWriter, *, category: bool = True) -> dict[str, Any]:
        path: list[str] = []
        others: list[Classification] = []
        for c in ds.classifications:
            if category and not path and c.system == CATEGORY_SYSTEM and c.path and c.code is None:
                path = c.path
            else:
                others.append(c)
        tw.classifications(others)
        return {
            "id": ds.uuid,
            "name": tw.text("name", ds.name),
            "description": tw.text("description", ds.description),
            "category": "/".join(path) if path else None,
            "version": ds.version,
        }

    def _location(self, code: str | None) -> o.Ref | None:
        if code is None:
            return None
        self.locations.add(code)
        return _ref(o.RefType.Location, _derived("location", code), code)

    def _unit_ref(self, prop: str | None, unit: str) -> o.Ref:
        fp = self.b.flow_properties.get(prop) if prop else None
        group = fp.unit_group if fp else None
        return _ref(o.RefType.Unit, self._unit_id(group, unit), unit)

    def _unit_id(self, group: str | None, unit: str) -> str:
        # openLCA matches units by id, so the ids of its reference data are kept where they apply.
        known = olca_units.unit_ref(unit)
        known_group = olca_units.group_ref(unit)
        # openLCA gives synonyms one id ("t" and "Mg"); a second name of the same id gets its own
        if (known is not None and known_group is not None and (group is None or known_group.id == group)
                and self.unit_ids.setdefault(str(known.id), unit) == unit):
            return str(known.id)
        return _derived("unit", group or "", unit)

    def _flow_ref(self, uid: str) -> o.Ref:
        flow = self.b.flows.get(uid)
        if flow is None:
            return _ref(o.RefType.Flow, uid)
        kind = {v: k for k, v in _FLOW_TYPES.items()}[flow.flow_type]
        return _ref(o.RefType.Flow, uid, flow.display_name(), flow_type=kind)

    def _named_ref(self, kind: o.RefType, collection: dict[str, Any], uid: str) -> o.Ref:
        ds = collection.get(uid)
        return _ref(kind, uid, ds.display_name() if ds else None)

    # ---- datasets

    def _unit_group(self, group: UnitGroup) -> o.UnitGroup:
        tw = _TagWriter()
        common = self._common(group, tw)
        units = []
        descriptions: dict[str, I18n] = {}
        for u in group.units:
            lang, text = _primary(u.description)
            if lang is not None and (lang != "en" or len(u.description) > 1):
                descriptions[u.name] = {k: v for k, v in u.description.items() if k != "en"}
                if lang != "en":
                    text = None
            units.append(
                o.Unit(
                    id=self._unit_id(group.uuid, u.name),
                    name=u.name,
                    conversion_factor=u.factor,
                    is_ref_unit=u.name == group.reference_unit,
                    description=text,
                )
            )
        if descriptions:
            tw.extras["unit_descriptions"] = descriptions
        default = next((fp.uuid for fp in self.b.flow_properties.values() if fp.unit_group == group.uuid), None)
        return _no_timestamp(
            o.UnitGroup(
                **common,
                units=units,
                tags=tw.result(),
                default_flow_property=self._named_ref(o.RefType.FlowProperty, self.b.flow_properties, default)
                if default
                else None,
            )
        )

    def _flow_property(self, fp: FlowProperty) -> o.FlowProperty:
        tw = _TagWriter()
        common = self._common(fp, tw)
        return _no_timestamp(
            o.FlowProperty(
                **common,
                tags=tw.result(),
                flow_property_type=o.FlowPropertyType.PHYSICAL_QUANTITY,
                unit_group=self._named_ref(o.RefType.UnitGroup, self.b.unit_groups, fp.unit_group),
            )
        )

    def _flow(self, flow: Flow) -> o.Flow:
        tw = _TagWriter()
        elementary = flow.flow_type == "elementary"
        common = self._common(flow, tw, category=not elementary)
        if elementary:
            common["category"] = "/".join(flow.compartment) if flow.compartment else None
        en = flow.synonyms.get("en", [])
        others = {k: v for k, v in flow.synonyms.items() if k != "en"}
        if any(";" in s or s != s.strip() or not s for s in en):
            others["en"] = en
        if others:
            tw.extras["synonyms"] = others
        props = [
            o.FlowPropertyFactor(
                flow_property=self._named_ref(o.RefType.FlowProperty, self.b.flow_properties, p.flow_property),
                conversion_factor=p.factor,
                is_ref_flow_property=p.reference,
            )
            for p in flow.properties
        ]
        kind = {v: k for k, v in _FLOW_TYPES.items()}[flow.flow_type]
        return _no_timestamp(
            o.Flow(
                **common,
                tags=tw.result(),
                flow_type=kind,
                cas=flow.cas,
                formula=flow.formula,
                synonyms="; ".join(en) if en else None,
                flow_properties=props,
                location=self._location(flow.location),
            )
        )

    def _source(self, src: Source) -> o.Source:
        tw = _TagWriter()
        common = self._common(src, tw)
        return _no_timestamp(o.Source(**common, tags=tw.result(), text_reference=src.citation, url=src.url))

    def _actor(self, contact: Contact) -> o.Actor:
        tw = _TagWriter()
        common = self._common(contact, tw)
        address = tw.text("address", contact.address)
        return _no_timestamp(
            o.Actor(**common, email=contact.email, website=contact.url, address=address, tags=tw.result())
        )

    def _dq_entry(self, dq: DataQuality | None) -> str | None:
        if dq is None or not dq.indicators():
            return None
        self.dq_used = True
        values = dq.model_dump()
        return "(" + ";".join(str(values[k]) if values[k] is not None else "n.a." for k in DQ_ORDER) + ")"

    def _dq_system(self) -> o.DQSystem:
        labels = (
            "reliability",
            "completeness",
            "temporal correlation",
            "geographical correlation",
            "further technological correlation",
        )
        indicators = [
            o.DQIndicator(
                name=label.capitalize(),
                position=i + 1,
                scores=[o.DQScore(position=s, label=str(s)) for s in range(1, 6)],
            )
            for i, label in enumerate(labels)
        ]
        return _no_timestamp(
            o.DQSystem(
                id=_DQ_SYSTEM_ID,
                name="Pedigree matrix (pcf-dataspace)",
                has_uncertainties=False,
                indicators=indicators,
                version=DEFAULT_VERSION,
                description="Written by pcf-dataspace: reliability (our 'precision'), completeness, temporal, "
                "geographical, technological; 1 best .. 5 worst.",
            )
        )

    def _uncertainty(self, ex: Exchange) -> tuple[o.Uncertainty | None, bool]:
        """The openLCA uncertainty and whether it reads back as ``ex.uncertainty`` exactly."""
        u = ex.uncertainty
        if u is None:
            return None, True
        native: o.Uncertainty | None = None
        if u.distribution == "lognormal":
            native = o.Uncertainty(
                distribution_type=o.UncertaintyType.LOG_NORMAL_DISTRIBUTION,
                geom_mean=u.geomean if u.geomean is not None else abs(ex.amount),
                geom_sd=u.geosd,
            )
        elif u.distribution == "normal":
            native = o.Uncertainty(distribution_type=o.UncertaintyType.NORMAL_DISTRIBUTION, mean=ex.amount, sd=u.sd)
        elif u.distribution == "triangular":
            native = o.Uncertainty(
                distribution_type=o.UncertaintyType.TRIANGLE_DISTRIBUTION,
                minimum=u.minimum,
                mode=u.mode,
                maximum=u.maximum,
            )
        elif u.distribution == "uniform":
            native = o.Uncertainty(
                distribution_type=o.UncertaintyType.UNIFORM_DISTRIBUTION, minimum=u.minimum, maximum=u.maximum
            )
        if native is None:
            return None, False
        back = _read_uncertainty(_Ctx("", []), {"uncertainty": native.to_dict()}, "")
        return native, back == u

    def _process(self, p: Process) -> o.Process:
        tw = _TagWriter()
        common = self._common(p, tw)
        extras = tw.extras
        # openLCA's internalId is an integer; other ids are renumbered and mapped back in the extras.
        ints: dict[str, int] = {}
        taken = {n for e in p.exchanges if (n := _int_id(e.internal_id)) is not None}
        nxt = max(taken, default=0) + 1
        for e in p.exchanges:
            n = _int_id(e.internal_id)
            if n is None or n in ints.values():
                n = nxt
                nxt += 1
                extras.setdefault("internal_ids", {})[str(n)] = e.internal_id
            ints[e.internal_id] = n
        ex_extras: dict[str, dict[str, Any]] = {}
        exchanges = []
        first_ref = p.reference_exchanges[0] if p.reference_exchanges else None
        for e in p.exchanges:
            extra: dict[str, Any] = {}
            prop = e.flow_property
            if prop is None:
                flow = self.b.flows.get(e.flow)
                prop = flow.reference_property() if flow else None
                if prop is not None:
                    extra["no_flow_property"] = True
            uncertainty, exact = self._uncertainty(e)
            if not exact:
                extra["uncertainty"] = None if e.uncertainty is None else e.uncertainty.model_dump(mode="json")
            if e.data_source is not None:
                extra["data_source"] = e.data_source
            lang, comment = _primary(e.comment)
            if lang is not None and (lang != "en" or len(e.comment) > 1):
                extra["comment"] = {k: v for k, v in e.comment.items() if k != lang}
                if lang != "en":
                    extra["comment_lang"] = lang
            if extra:
                ex_extras[str(ints[e.internal_id])] = extra
            exchanges.append(
                o.Exchange(
                    internal_id=ints[e.internal_id],
                    flow=self._flow_ref(e.flow),
                    is_input=e.direction == "input",
                    is_quantitative_reference=e.internal_id == first_ref,
                    is_avoided_product=False,
                    amount=e.amount,
                    unit=self._unit_ref(prop, e.unit),
                    flow_property=self._named_ref(o.RefType.FlowProperty, self.b.flow_properties, prop)
                    if prop
                    else None,
                    default_provider=self._named_ref(o.RefType.Process, self.b.processes, e.provider)
                    if e.provider
                    else None,
                    description=comment,
                    location=self._location(e.location),
                    uncertainty=uncertainty,
                    dq_entry=self._dq_entry(e.data_quality),
                )
            )
        if ex_extras:
            extras["exchanges"] = ex_extras
        if len(p.reference_exchanges) != 1 or first_ref not in ints:
            extras["reference_exchanges"] = p.reference_exchanges
        if len(p.contacts) > 3:
            extras["contacts"] = p.contacts
        contacts = [self._named_ref(o.RefType.Actor, self.b.contacts, c) for c in p.contacts[:3]]
        if p.sub_location is not None:
            extras["sub_location"] = p.sub_location
        if p.annual_production is not None:
            extras["annual_production"] = p.annual_production
        doc = o.ProcessDocumentation(
            valid_from=f"{p.reference_year:04d}-01-01" if p.reference_year is not None else None,
            valid_until=f"{p.valid_until:04d}-12-31" if p.valid_until is not None else None,
            technology_description=tw.text("technology", p.technology),
            sources=[self._named_ref(o.RefType.Source, self.b.sources, s) for s in p.sources] or None,
            data_generator=contacts[0] if contacts else None,
            data_documentor=contacts[1] if len(contacts) > 1 else None,
            data_set_owner=contacts[2] if len(contacts) > 2 else None,
        )
        method, factors = self._allocation(p, ints)
        dq_entry = self._dq_entry(p.data_quality)
        return _no_timestamp(
            o.Process(
                **common,
                process_type=o.ProcessType.LCI_RESULT if p.process_type == "lci_result" else o.ProcessType.UNIT_PROCESS,
                location=self._location(p.location),
                process_documentation=doc,
                exchanges=exchanges,
                last_internal_id=max(ints.values(), default=0),
                default_allocation_method=method,
                allocation_factors=factors,
                dq_entry=dq_entry,
                dq_system=_ref(o.RefType.DQSystem, _DQ_SYSTEM_ID) if dq_entry else None,
                exchange_dq_system=_ref(o.RefType.DQSystem, _DQ_SYSTEM_ID)
                if any(e.data_quality is not None and e.data_quality.indicators() for e in p.exchanges)
                else None,
                tags=tw.result(),
            )
        )

    def _allocation(
        self, p: Process, ints: dict[str, int]
    ) -> tuple[o.AllocationType | None, list[o.AllocationFactor] | None]:
        products: list[str] = []
        for e in p.exchanges:
            for key in e.allocation:
                if key not in products:
                    products.append(key)
        by_iid = {e.internal_id: e for e in p.exchanges}
        products = [k for k in products if k in by_iid]
        if not products:
            return None, None
        others = [e for e in p.exchanges if e.internal_id not in products]
        uniform = (
            bool(others)
            and all(e.allocation == others[0].allocation for e in others)
            and set(others[0].allocation) == set(products)
            and all(not by_iid[k].allocation for k in products)
            # the product flows must tell the products apart, as openLCA names them by flow
            and len({by_iid[k].flow for k in products}) == len(products)
        )
        if uniform:
            t = o.AllocationType.PHYSICAL_ALLOCATION
            return t, [
                o.AllocationFactor(
                    allocation_type=t, product=self._flow_ref(by_iid[k].flow), value=others[0].allocation[k]
                )
                for k in products
            ]
        t = o.AllocationType.CAUSAL_ALLOCATION
        factors = [
            o.AllocationFactor(
                allocation_type=t,
                product=self._flow_ref(by_iid[k].flow),
                exchange=o.ExchangeRef(internal_id=ints[e.internal_id]),
                value=v,
            )
            for e in p.exchanges
            for k, v in e.allocation.items()
            if k in by_iid
        ]
        return t, factors

    def _lcia(self) -> None:
        methods: dict[str, tuple[str, list[o.Ref], bool]] = {}
        for m in self.b.methods.values():
            tw = _TagWriter()
            parents = [c for c in m.classifications if c.system == IMPACT_METHOD_SYSTEM]
            rest = [c for c in m.classifications if c.system != IMPACT_METHOD_SYSTEM]
            common = self._common(m.model_copy(update={"classifications": rest}), tw)
            tw.extras["indicator"] = m.indicator
            tw.extras["gwp_set"] = m.gwp_set
            factors = [
                o.ImpactFactor(
                    flow=self._flow_ref(f.flow),
                    value=f.value,
                    flow_property=self._named_ref(o.RefType.FlowProperty, self.b.flow_properties, f.flow_property)
                    if f.flow_property
                    else None,
                    unit=self._unit_ref(f.flow_property, f.unit) if f.unit else None,
                )
                for f in m.factors
            ]
            self.zw.write(
                _no_timestamp(
                    o.ImpactCategory(**common, ref_unit=m.reference_unit, impact_factors=factors, tags=tw.result())
                )
            )
            ref = _ref(o.RefType.ImpactCategory, m.uuid, m.display_name())
            if not parents:
                methods[_derived("impact-method", m.uuid)] = (m.display_name(), [ref], True)
            for c in parents:
                mid = c.code or _derived("impact-method", *c.path)
                methods.setdefault(mid, (c.path[-1] if c.path else mid, [], False))[1].append(ref)
        for mid, (name, refs, wrapper) in methods.items():
            tags = [f"{TAG_PREFIX}extras={_escape(_json_compact({'wrapper': True}))}"] if wrapper else None
            self.zw.write(
                _no_timestamp(
                    o.ImpactMethod(id=mid, name=name, impact_categories=refs, tags=tags, version=DEFAULT_VERSION)
                )
            )

    def _product_system(self, m: LifeCycleModel) -> o.ProductSystem:
        tw = _TagWriter()
        common = self._common(m, tw)
        if m.location is not None:
            tw.extras["location"] = m.location
        links = []
        for link in m.links:
            recipient = self.b.processes.get(link.recipient)
            exchange = None
            if recipient is not None:
                inputs = [e for e in recipient.exchanges if e.flow == link.flow and e.direction == "input"]
                chosen = next((e for e in inputs if e.provider == link.provider), inputs[0] if inputs else None)
                n = _int_id(chosen.internal_id) if chosen else None
                exchange = o.ExchangeRef(internal_id=n) if n is not None else None
            links.append(
                o.ProcessLink(
                    provider=self._named_ref(o.RefType.Process, self.b.processes, link.provider),
                    flow=self._flow_ref(link.flow),
                    process=self._named_ref(o.RefType.Process, self.b.processes, link.recipient),
                    exchange=exchange,
                )
            )
        ref_process = self.b.processes.get(m.reference_process)
        ref_ex = ref_process.reference_exchange() if ref_process else None
        target: dict[str, Any] = {}
        if ref_ex is not None:
            prop = ref_ex.flow_property or (
                self.b.flows[ref_ex.flow].reference_property() if ref_ex.flow in self.b.flows else None
            )
            n = _int_id(ref_ex.internal_id)
            target = {
                "ref_exchange": o.ExchangeRef(internal_id=n) if n is not None else None,
                "target_amount": ref_ex.amount,
                "target_unit": self._unit_ref(prop, ref_ex.unit),
                "target_flow_property": self._named_ref(o.RefType.FlowProperty, self.b.flow_properties, prop)
                if prop
                else None,
            }
        return _no_timestamp(
            o.ProductSystem(
                **common,
                tags=tw.result(),
                ref_process=self._named_ref(o.RefType.Process, self.b.processes, m.reference_process),
                processes=[self._named_ref(o.RefType.Process, self.b.processes, p) for p in m.processes],
                process_links=links,
                **target,
            )
        )


def write_jsonld(bundle: Bundle, out: Path) -> None:
    """Write ``bundle`` as an openLCA JSON-LD v2 zip (with ``olca-schema.json``).

    Names and descriptions go into openLCA's single-language fields (English when present)
    and every other language into ``pcf:name@<lang>=...`` tags, which ``olca_schema`` and
    openLCA keep; what openLCA has no field for travels in a ``pcf:extras=`` tag, so
    :func:`read_jsonld` gives back an equal bundle. Exchanges carry integer ``internalId``,
    ``isInput``, ``isQuantitativeReference`` (on the first reference exchange), unit and flow
    property references and default providers. Units keep openLCA's reference-data ids where
    the unit and group match openLCA's; other ids are derived from the group and unit name.
    Locations are written as ``Location`` datasets by code. ``out`` is replaced atomically.

    Parameters
    ----------
    bundle
        The datasets to write.
    out
        The zip to write; an existing file is replaced.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        with zipio.ZipWriter(tmp) as zw:
            _Writer(bundle, zw).run()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
