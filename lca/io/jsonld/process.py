"""JSON-LD process reader: documentation, exchanges (v1 and v2 keys), unit checks and allocation."""

from __future__ import annotations

from typing import Any

import olca_schema as o
from pydantic import ValidationError

from lca.io.diagnostics import Rule
from lca.io.jsonld.codec import _YEAR_RE
from lca.io.jsonld.common import _ReaderBase
from lca.io.jsonld.parsing import _Ctx, _join, _read_uncertainty
from lca.model import DataQuality, Exchange, I18n, Process, Uncertainty

__all__: list[str] = []  # package-internal: lca.io.jsonld re-exports what is public


class _ProcessReader(_ReaderBase):
    """Processes: documentation, exchanges, units, allocation."""

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
                Rule.INVALID_VALUE,
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
                    Rule.INVALID_VALUE,
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
                Rule.MISSING_REFERENCE_FLOW,
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
                    Rule.INVALID_DATASET,
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
            ctx.report("error", Rule.INVALID_VALUE, "'exchanges' is not a list", "exchanges", "exchanges", raw)
            raw = []
        system = ctx.ref(data, "exchangeDqSystem", "")
        ex_extras: dict[str, Any] = extras.get("exchanges", {}) if isinstance(extras.get("exchanges"), dict) else {}
        id_map: dict[str, Any] = extras.get("internal_ids", {}) if isinstance(extras.get("internal_ids"), dict) else {}
        pending: list[tuple[int, int | None, dict[str, Any], bool]] = []
        used: set[int] = set()
        for i, ex in enumerate(raw):
            loc = f"exchanges[{i}]"
            if not isinstance(ex, dict):
                ctx.report("error", Rule.INVALID_VALUE, "an exchange must be an object; skipped", loc, "exchanges", ex)
                continue
            iid = ex.get("internalId")
            if iid is not None and (isinstance(iid, bool) or not isinstance(iid, int)):
                ctx.report(
                    "warning",
                    Rule.INVALID_VALUE,
                    "internalId is not an integer; a new one is assigned",
                    _join(loc, "internalId"),
                    "internalId",
                    iid,
                )
                iid = None
            if iid is not None and iid in used:
                ctx.report(
                    "warning",
                    Rule.DUPLICATE_INTERNAL_ID,
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
                    Rule.MISSING_INTERNAL_ID,
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
                    Rule.INVALID_VALUE,
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
                Rule.FLOW_PROPERTY_NOT_ON_FLOW,
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
            Rule.UNKNOWN_UNIT,
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
                Rule.INVALID_VALUE,
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
                    Rule.ALLOCATION_METHOD,
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
                Rule.ALLOCATION_METHOD,
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
                    Rule.ALLOCATION_PRODUCT,
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
                        Rule.ALLOCATION_EXCHANGE,
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
