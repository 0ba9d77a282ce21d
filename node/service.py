"""What the enterprise node does with its data: import, history, diff, footprints, export."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lca.errors import ImportFailed, NotFound
from lca.io.diagnostics import Diagnostic, Rule, SourceMap
from lca.io.readers import read_any
from lca.model import Bundle, Process, dataset_kind
from lca.refdata import reference_bundle
from lca.validate import validate_bundle
from node.store import NodeStore

__all__ = [
    "ExchangeChange",
    "ImportReport",
    "diff_versions",
    "ensure_reference_data",
    "export_bundle",
    "import_paths",
    "store_view",
]

@dataclass
class ImportReport:
    """The outcome of an import (or a dry run): findings, and what happened to each dataset."""

    sources: list[str]
    formats: list[str]
    diagnostics: list[Diagnostic]
    actions: list[dict[str, str]] = field(default_factory=list)
    import_id: int | None = None
    dry_run: bool = False

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            key = f"{a['kind']}:{a['action']}"
            out[key] = out.get(key, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "formats": self.formats,
            "dry_run": self.dry_run,
            "import_id": self.import_id,
            "ok": not self.errors,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "counts": self.counts(),
            "actions": self.actions,
            "diagnostics": [d.model_dump() for d in self.diagnostics],
        }


def ensure_reference_data(store: NodeStore) -> None:
    """Store the reference unit groups, flow properties and greenhouse-gas flows once."""
    ref = reference_bundle()
    if store.get(next(iter(ref.unit_groups)), kind="unit_group") is not None:
        return
    store.save(ref, source="reference data", fmt="builtin", summary=ref.counts(), diagnostics=[])


def store_view(store: NodeStore) -> Bundle:
    """Reference data overlaid with the latest version of everything in the store."""
    view = reference_bundle()
    view.merge(store.bundle())
    return view


def import_paths(store: NodeStore, paths: list[Path], dry_run: bool = False) -> ImportReport:
    """Read, validate and store one or more sources, all in one transaction.

    Nothing is written when any error is found (``ImportFailed`` carries the report's
    diagnostics) or when ``dry_run`` is set.
    """
    ensure_reference_data(store)
    known = store_view(store)
    incoming = Bundle()
    sources = SourceMap()
    diags: list[Diagnostic] = []
    formats: list[str] = []
    template_only = True
    for path in paths:
        result = read_any(path, known)
        formats.append(result.format)
        template_only = template_only and result.format == "template"
        bundle, where = result.bundle, result.sources
        diags.extend(result.diagnostics)
        for ds in bundle.all():
            other = incoming.collection(dataset_kind(ds)).get(ds.uuid)
            if other is not None and other.content_hash() != ds.content_hash():
                first = sources.datasets.get(ds.uuid, ("?", "?"))
                diags.append(Diagnostic(
                    severity="error", rule=Rule.DUPLICATE_UUID, file=path.name, location=where.datasets.get(
                        ds.uuid, (path.name, ds.uuid))[1], field="uuid", value=ds.uuid,
                    message=f"UUID already read from {first[0]} ({first[1]}) with different content; "
                            "a UUID must name one dataset"))
        incoming.merge(bundle)
        sources.merge(where)
    previous: dict[str, Process] = {}
    for uuid in incoming.processes:
        prior = store.get(uuid, kind="process")
        if isinstance(prior, Process):
            previous[uuid] = prior
    diags.extend(validate_bundle(incoming, known, previous, sources, allow_negative=not template_only))
    report = ImportReport(sources=[str(p) for p in paths], formats=formats, diagnostics=diags, dry_run=dry_run)
    plan = store.plan(incoming)
    report.actions = [{"kind": dataset_kind(ds), "uuid": ds.uuid, "version": ds.version, "action": action,
                       "name": ds.display_name()} for ds, action in plan]
    if report.errors:
        raise ImportFailed(diags)
    if dry_run:
        return report
    summary = {k: v for k, v in incoming.counts().items() if v}
    report.import_id, _ = store.save(incoming, source=", ".join(report.sources), fmt="+".join(formats),
                                     summary=summary,
                                     diagnostics=[d.model_dump() for d in diags])
    return report


@dataclass
class ExchangeChange:
    flow: str
    flow_name: str
    direction: str
    unit: str
    old: float | None
    new: float | None

    def to_dict(self) -> dict[str, Any]:
        rel = None
        if self.old is not None and self.old != 0 and self.new is not None:
            rel = (self.new - self.old) / abs(self.old)
        return {"flow": self.flow, "flow_name": self.flow_name, "direction": self.direction, "unit": self.unit,
                "old": self.old, "new": self.new, "relative_change": rel}


def diff_versions(store: NodeStore, uuid: str, v1: str, v2: str) -> list[ExchangeChange]:
    """Changed exchanges between two versions of a process, with old and new amounts."""
    a, b = store.get(uuid, v1, kind="process"), store.get(uuid, v2, kind="process")
    for version, ds in ((v1, a), (v2, b)):
        if ds is None:
            known = ", ".join(v.version for v in store.history(uuid)) or "none"
            raise NotFound(f"process {uuid} has no version {version}; stored versions: {known}")
    assert isinstance(a, Process) and isinstance(b, Process)
    view = store_view(store)

    def amounts(p: Process) -> dict[tuple[str, str, str], float]:
        out: dict[tuple[str, str, str], float] = {}
        for ex in p.exchanges:
            key = (ex.flow, ex.direction, ex.unit)
            out[key] = out.get(key, 0.0) + ex.amount
        return out

    old, new = amounts(a), amounts(b)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        flow = view.flows.get(key[0])
        changes.append(ExchangeChange(flow=key[0], flow_name=flow.display_name() if flow else key[0],
                                      direction=key[1], unit=key[2], old=old.get(key), new=new.get(key)))
    return changes


def export_bundle(store: NodeStore, fmt: str, out: Path, uuids: list[str] | None = None) -> Bundle:
    """Write the store (or the given processes and everything they reference) as ILCD or JSON-LD zip."""
    view = store_view(store)
    bundle = view
    if uuids:
        bundle = Bundle()
        for uuid in uuids:
            ds = view.processes.get(uuid.lower())
            if ds is None:
                raise NotFound(f"no process {uuid} in the store")
            bundle.add(ds)
        _close_references(bundle, view)
    if fmt == "ilcd":
        from lca.io.ilcd import write_ilcd

        write_ilcd(bundle, out)
    elif fmt == "jsonld":
        from lca.io.jsonld import write_jsonld

        write_jsonld(bundle, out)
    else:
        raise ValueError(f"unknown export format {fmt!r}; accepted: ilcd, jsonld")
    return bundle


def _close_references(bundle: Bundle, view: Bundle) -> None:
    """Add the flows, flow properties, unit groups, sources and contacts the processes use."""
    for p in list(bundle.processes.values()):
        for ex in p.exchanges:
            if ex.flow in view.flows:
                bundle.add(view.flows[ex.flow])
        for s in p.sources:
            if s in view.sources:
                bundle.add(view.sources[s])
        for c in p.contacts:
            if c in view.contacts:
                bundle.add(view.contacts[c])
    for f in list(bundle.flows.values()):
        for prop in f.properties:
            if prop.flow_property in view.flow_properties:
                bundle.add(view.flow_properties[prop.flow_property])
    for fp in list(bundle.flow_properties.values()):
        if fp.unit_group in view.unit_groups:
            bundle.add(view.unit_groups[fp.unit_group])
