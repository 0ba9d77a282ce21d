"""The state of one JSON-LD read and the pieces every dataset reader shares (tags, categories, units, dq)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lca.io.diagnostics import Diagnostic, Rule, Severity
from lca.io.jsonld.codec import _FOLDERS, CATEGORY_SYSTEM, DQ_ORDER, TAG_PREFIX, _Tags, _unescape
from lca.io.jsonld.parsing import _Ctx, _join
from lca.model import DEFAULT_VERSION, Bundle, Classification, DataQuality, Dataset

__all__: list[str] = []  # package-internal: lca.io.jsonld re-exports what is public


class _ReaderBase:
    """The state of one read, and the pieces every dataset reader shares."""

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

    # ---- shared pieces

    def _missing(self, ctx: _Ctx, severity: Severity, kind: str, uid: str, loc: str, key: str) -> None:
        if (kind, uid) in self.missing:
            return
        self.missing.add((kind, uid))
        ctx.report(severity, Rule.UNRESOLVED_REFERENCE, f"the referenced {kind} {uid} is not in the data", loc, key, uid)

    def _tags(self, ctx: _Ctx, data: dict[str, Any]) -> _Tags:
        tags = _Tags()
        raw = data.get("tags")
        if raw is None:
            return tags
        if not isinstance(raw, list):
            ctx.report("warning", Rule.INVALID_VALUE, "'tags' is not a list; ignored", "tags", "tags", raw)
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
                ctx.report("warning", Rule.INVALID_VALUE, f"tag not understood ({exc}); ignored", loc, "tags", tag)
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
            Rule.INVALID_VALUE,
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
                    Rule.INVALID_VERSION,
                    f"not a version like '01.00.000'; {DEFAULT_VERSION} is used",
                    "version",
                    "version",
                    version,
                )
                version = DEFAULT_VERSION
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            ctx.report("warning", Rule.INVALID_VALUE, "'name' is not a string; ignored", "name", "name", name)
            name = None
        if not name and not tags.i18n.get("name"):
            ctx.report("warning", Rule.MISSING_FIELD, "the dataset has no name", "name", "name")
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
                Rule.INVALID_DATASET,
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
                Rule.MISSING_FIELD if raw is None else Rule.INVALID_VALUE,
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
        ctx.report("error", Rule.UNKNOWN_UNIT, "the unit reference has neither a known '@id' nor a name", loc, key, raw)
        return None

    def _dq(self, ctx: _Ctx, obj: dict[str, Any], key: str, base: str, system: str | None) -> DataQuality | None:
        raw = obj.get(key)
        if raw is None or raw == "":
            return None
        loc = _join(base, key)
        match = re.fullmatch(r"\s*\((.*)\)\s*", raw) if isinstance(raw, str) else None
        if match is None:
            ctx.report("warning", Rule.INVALID_VALUE, "not a data quality entry like '(1;2;3;4;5)'; ignored", loc, key, raw)
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
                Rule.INVALID_VALUE,
                f"{len(parts)} scores for a system of {len(order)} indicators; ignored",
                loc,
                key,
                raw,
            )
            return None
        values: dict[str, int] = {}
        for name, part in zip(order, parts, strict=True):
            if part in ("", "n.a.", "na", "0", "-"):
                continue
            if not part.isdigit() or not 1 <= int(part) <= 5:
                ctx.report("warning", Rule.INVALID_VALUE, f"score {part!r} is not 1..5 or 'n.a.'; ignored", loc, key, raw)
                return None
            values[name] = int(part)
        return DataQuality(**values)
