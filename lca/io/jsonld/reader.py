"""Read an openLCA JSON-LD zip or folder (v1 or v2 layout) into a bundle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from lca.io.diagnostics import Diagnostic, Rule
from lca.io.jsonld.codec import _DQ_KEYWORDS, _FOLDERS
from lca.io.jsonld.datasets import _DatasetReader
from lca.io.jsonld.parsing import _Ctx, _Files
from lca.io.jsonld.process import _ProcessReader
from lca.model import Bundle

__all__ = ["read_jsonld"]


class _Reader(_ProcessReader, _DatasetReader):
    """One read: load the files, index them, read each kind in dependency order."""

    # ---- driver

    def run(self) -> tuple[Bundle, list[Diagnostic]]:
        top = _Ctx(str(self.path), self.diags)
        if not self.path.exists():
            top.report("error", Rule.MISSING_FILE, "no such file or folder; a JSON-LD zip or unzipped folder is accepted")
            return self.bundle, self.diags
        try:
            files = _Files(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            top.report("error", Rule.UNREADABLE_FILE, f"cannot open as a zip ({exc}); a JSON-LD zip or folder is accepted")
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
            ctx.report("warning", Rule.UNPARSABLE_FILE, f"not JSON ({exc}); assuming the v2 layout")
            self.version = 2
            return
        version = meta.get("version") if isinstance(meta, dict) else None
        if version != 2:
            ctx.report(
                "warning",
                Rule.JSONLD_VERSION,
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
                    ctx.report("error", Rule.UNPARSABLE_FILE, f"not valid JSON: {exc}")
                    continue
                if not isinstance(data, dict):
                    ctx.report("error", Rule.UNPARSABLE_FILE, "the file is not a JSON object")
                    continue
                stem = name.split("/")[-1][: -len(".json")]
                uid = data.get("@id")
                if not isinstance(uid, str) or not uid.strip():
                    ctx.report("warning", Rule.MISSING_UUID, "'@id' is missing; the file name is used", "@id", "@id")
                    uid = stem
                uid = uid.strip().lower()
                if uid != stem.lower():
                    ctx.report(
                        "warning", Rule.ID_MISMATCH, f"'@id' differs from the file name {stem!r}", "@id", "@id", uid
                    )
                kind = data.get("@type")
                if kind is not None and kind != type_name:
                    ctx.report(
                        "warning",
                        Rule.UNEXPECTED_TYPE,
                        f"'@type' in folder {folder}/ should be {type_name!r}",
                        "@type",
                        "@type",
                        kind,
                    )
                if uid in self.raw[folder]:
                    ctx.report("warning", Rule.DUPLICATE_UUID, f"{uid} is also in {self.raw[folder][uid][0]}; this one wins")
                self.raw[folder][uid] = (name, data)

    def _index(self) -> None:
        for _, data in self.raw["unit_groups"].values():
            for u in data.get("units") or []:
                if isinstance(u, dict) and isinstance(u.get("@id"), str) and isinstance(u.get("name"), str):
                    self.units_by_id[u["@id"].lower()] = u["name"]
        for uid, (_, data) in self.raw["locations"].items():
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
                    Rule.UNKNOWN_DQ_INDICATOR,
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
                Rule.JSONLD_V1_LAYOUT,
                "openLCA JSON-LD v1 layout (openLCA 1.x) detected: no olca-schema.json. Read the v1 keys "
                f"input / quantitativeReference / referenceFlowProperty / referenceUnit ({self.v1_keys[0]} values) "
                "that the v2 olca_schema reader drops; "
                f"{self.v1_numbered} exchanges without internalId numbered 1..n in file order",
            )
        elif self.v1_keys[0]:
            top.report(
                "warning",
                Rule.JSONLD_V1_KEYS,
                f"{self.v1_keys[0]} v1 keys (input, quantitativeReference, ...) in a v2 layout; read as v1",
            )
        if self.shallow_categories:
            top.report(
                "info",
                Rule.CATEGORY_PATH_SHALLOW,
                f"{self.shallow_categories} v1 category references resolved to their last segment only "
                "(no categories/ folder with the parent chain)",
            )
        if self.dq_assumed:
            top.report(
                "info",
                Rule.DQ_ORDER_ASSUMED,
                "dqEntry read in openLCA's default order (reliability->precision, completeness, temporal, "
                "geographical, technological): the data quality system is not in the data",
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
