"""Write a bundle as an openLCA JSON-LD v2 zip, with what openLCA has no field for in ``pcf:`` tags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import olca_schema as o
from olca_schema import units as olca_units
from olca_schema import zipio

from lca.io.jsonld.codec import (
    _DQ_SYSTEM_ID,
    _FLOW_TYPES,
    CATEGORY_SYSTEM,
    DQ_ORDER,
    IMPACT_METHOD_SYSTEM,
    TAG_PREFIX,
    _derived,
    _escape,
    _int_id,
    _json_compact,
    _no_timestamp,
    _primary,
    _ref,
    _TagWriter,
)
from lca.io.jsonld.parsing import _Ctx, _read_uncertainty
from lca.model import (
    DEFAULT_VERSION,
    Bundle,
    Classification,
    Contact,
    DataQuality,
    Dataset,
    Exchange,
    Flow,
    FlowProperty,
    I18n,
    LifeCycleModel,
    Process,
    Source,
    UnitGroup,
)

__all__ = ["write_jsonld"]


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
