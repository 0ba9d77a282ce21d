"""JSON-LD dataset readers: unit groups, flow properties, flows, sources, actors, LCIA, product systems."""

from __future__ import annotations

from typing import Any

import olca_schema as o

from lca.io.diagnostics import Rule
from lca.io.jsonld.codec import _CLIMATE_RE, _FLOW_TYPES, _GWP_SETS, CATEGORY_SYSTEM, IMPACT_METHOD_SYSTEM
from lca.io.jsonld.common import _ReaderBase
from lca.io.jsonld.parsing import _Ctx, _join
from lca.model import (
    CharacterisationFactor,
    Classification,
    Contact,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    LCIAMethod,
    LifeCycleModel,
    ModelLink,
    Source,
    Unit,
    UnitGroup,
)

__all__: list[str] = []  # package-internal: lca.io.jsonld re-exports what is public


class _DatasetReader(_ReaderBase):
    """Unit groups, flow properties, flows, sources, actors, LCIA categories and product systems."""

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
                        Rule.MISSING_FIELD,
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
                        Rule.INVALID_VALUE,
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
                            Rule.REFERENCE_UNIT,
                            f"{ref_unit!r} is kept as reference unit",
                            _join(loc, "isRefUnit"),
                            "isRefUnit",
                            u["name"],
                        )
                    else:
                        ref_unit = u["name"]
            if not units:
                ctx.report("error", Rule.NO_UNITS, "the unit group has no usable unit; skipped", "units", "units")
                continue
            if ref_unit is None:
                ref_unit = next((u.name for u in units if u.factor == 1.0), units[0].name)
                ctx.report(
                    "warning",
                    Rule.REFERENCE_UNIT,
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
                    Rule.INVALID_VALUE,
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
                    ctx.report("error", Rule.INVALID_VALUE, "not a flow property factor; skipped", loc, "flowProperties", fp)
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
                    Rule.NO_FLOW_PROPERTY,
                    "the flow has no usable flow property",
                    "flowProperties",
                    "flowProperties",
                )
            elif sum(p.reference for p in props) != 1:
                ctx.report(
                    "warning",
                    Rule.REFERENCE_FLOW_PROPERTY,
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
                    "warning", Rule.MISSING_FIELD, "no reference unit; 'kg CO2 eq' is assumed", "refUnit", "refUnit"
                )
                ref_unit = "kg CO2 eq"
            factors: list[CharacterisationFactor] = []
            missing_flows = 0
            for i, f in enumerate(data.get("impactFactors") or []):
                loc = f"impactFactors[{i}]"
                if not isinstance(f, dict):
                    ctx.report("error", Rule.INVALID_VALUE, "not an impact factor; skipped", loc, "impactFactors", f)
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
                    Rule.UNRESOLVED_REFERENCE,
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
                Rule.LCIA_SKIPPED,
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
                    ctx.report("warning", Rule.INVALID_VALUE, "not a process link; skipped", loc, "processLinks", link)
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
