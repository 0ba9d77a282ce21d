"""The files of a JSON-LD zip or folder, the per-file diagnostics and the typed field readers."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import olca_schema as o

from lca.io.diagnostics import Reporter, Rule, Severity
from lca.model import Uncertainty

# --------------------------------------------------------------------------- files

__all__: list[str] = []  # package-internal: lca.io.jsonld re-exports what is public


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



# --------------------------------------------------------------------------- per-file diagnostics


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


class _Ctx(Reporter):
    """One file being read: where diagnostics point (JSON paths like ``exchanges[3].amount``)."""

    def number(
        self,
        obj: dict[str, Any],
        key: str,
        base: str,
        *,
        required: bool = True,
        severity: Severity = "error",
    ) -> float | None:
        """``obj[key]`` as a finite float, or None with a diagnostic saying why."""
        loc = _join(base, key)
        if key not in obj or obj[key] is None:
            if required:
                self.report(severity, Rule.MISSING_FIELD, f"{key!r} is missing; a number is required", loc, key)
            return None
        raw = obj[key]
        if isinstance(raw, bool):
            self.report(severity, Rule.UNPARSABLE_NUMBER, f"{key!r} is a boolean; a number is required", loc, key, raw)
            return None
        if isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                self.report(
                    severity,
                    Rule.UNPARSABLE_NUMBER,
                    f"{key!r} is not a number; a JSON number like 1.5 is accepted",
                    loc,
                    key,
                    raw,
                )
                return None
            if math.isfinite(value):
                self.report(
                    "warning", Rule.NUMBER_AS_STRING, f"{key!r} is a string; read as the number {value!r}", loc, key, raw
                )
        elif isinstance(raw, (int, float)):
            value = float(raw)
        else:
            self.report(severity, Rule.UNPARSABLE_NUMBER, f"{key!r} is not a number", loc, key, raw)
            return None
        if not math.isfinite(value):
            self.non_finite(loc, key, raw, severity)
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
                "warning", Rule.INVALID_VALUE, f"{key!r} is not true or false; read as false", _join(base, key), key, value
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
                self.report("error", Rule.MISSING_FIELD, f"reference {name!r} is missing", loc, name)
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("@id"), str) or not raw["@id"].strip():
            self.report(
                "error" if required else "warning",
                Rule.INVALID_VALUE,
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
            self.report("warning", Rule.INVALID_VALUE, f"{key!r} is not a list; ignored", loc, key, items)
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
            self.report("warning", Rule.INVALID_VALUE, f"{key!r} is not a string; ignored", _join(base, key), key, raw)
            return None
        return raw


def _read_uncertainty(ctx: _Ctx, obj: dict[str, Any], base: str) -> Uncertainty | None:
    """The uncertainty of an exchange, in our vocabulary (None when absent or unusable)."""
    raw = obj.get("uncertainty")
    if raw is None:
        return None
    loc = _join(base, "uncertainty")
    if not isinstance(raw, dict):
        ctx.report("warning", Rule.INVALID_VALUE, "'uncertainty' is not an object; ignored", loc, "uncertainty", raw)
        return None
    kind = o.UncertaintyType.get(raw.get("distributionType", ""))
    if kind is None:
        ctx.report(
            "warning",
            Rule.INVALID_VALUE,
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
