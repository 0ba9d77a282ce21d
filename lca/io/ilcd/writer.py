"""Write a bundle as ILCD 1.1 XML: one data set (dataset_xml) or a deterministic zip (write_ilcd)."""

from __future__ import annotations

import uuid as uuidlib
import zipfile
from collections.abc import Callable
from pathlib import Path

from lxml import etree
from lxml.etree import _Element as Element

from lca.errors import UnitError
from lca.io.ilcd.codec import (
    _DISTRIBUTION_ILCD,
    _DQI_ILCD,
    _DQI_VALUE_ILCD,
    _FLOW_TYPE_ILCD,
    _IMPACT_CATEGORIES,
    _REF_TYPE,
    COMMON_NS,
    FOLDER_OF_KIND,
    MODULE_NS,
    PCF_NS,
    XML_LANG,
    _canonical_version,
    _cas_ilcd,
    _num,
    _perc,
)
from lca.io.ilcd.process import _reference_unit
from lca.model import (
    Bundle,
    Classification,
    Contact,
    Dataset,
    Exchange,
    Flow,
    FlowProperty,
    I18n,
    LCIAMethod,
    LifeCycleModel,
    Process,
    Source,
    UnitGroup,
)
from lca.units import to_reference_amount

__all__ = ["dataset_xml", "write_ilcd"]


class _W:
    """Element builders for one module namespace."""

    def __init__(self, kind: str):
        self.kind = kind
        self.ns = MODULE_NS[kind]

    def root(self, name: str, extra_ns: dict[str, str] | None = None) -> Element:
        nsmap: dict[str | None, str] = {None: self.ns, "common": COMMON_NS, "pcf": PCF_NS}
        if extra_ns:
            nsmap.update(extra_ns)
        return etree.Element(f"{{{self.ns}}}{name}", nsmap=nsmap, version="1.1")

    def el(self, parent: Element, tag: str, text: str | None = None, ns: str | None = None, /,
           **attrs: str) -> Element:
        child = etree.SubElement(parent, f"{{{ns or self.ns}}}{tag}", attrs)
        if text is not None:
            child.text = text
        return child

    def c(self, parent: Element, tag: str, text: str | None = None, /, **attrs: str) -> Element:
        return self.el(parent, tag, text, COMMON_NS, **attrs)

    def langs(self, parent: Element, name: str, texts: I18n, ns: str | None = None) -> None:
        for lang, text in texts.items():
            child = etree.SubElement(parent, f"{{{ns or self.ns}}}{name}", {XML_LANG: lang})
            child.text = text

    def ref(self, parent: Element, name: str, kind: str, uid: str, bundle: Bundle, ns: str | None = None,
            short: I18n | None = None) -> Element:
        target = bundle.collection(kind).get(uid) if kind in FOLDER_OF_KIND else None
        attrs = {"type": _REF_TYPE[kind], "refObjectId": uid, "uri": f"../{FOLDER_OF_KIND[kind]}/{uid}.xml"}
        if target is not None:
            attrs["version"] = _canonical_version(target.version)
        child = etree.SubElement(parent, f"{{{ns or self.ns}}}{name}", attrs)
        names = short if short is not None else (target.name if target is not None else {})
        self.langs(child, "shortDescription", names, COMMON_NS)
        return child

    def info(self, parent: Element, ds: Dataset, name_el: str | None, *, name_in_common: bool = False) -> Element:
        """``dataSetInformation`` up to the classifications (UUID, name, classifications)."""
        info = self.el(parent, "dataSetInformation")
        self.c(info, "UUID", ds.uuid)
        if name_in_common:
            self.langs(info, "name", ds.name, COMMON_NS)
        elif name_el and ds.name:
            name = self.el(info, name_el)
            self.langs(name, "baseName", ds.name)
        self.classifications(info, ds.classifications)
        return info

    def classifications(self, info: Element, items: list[Classification],
                        compartment: list[str] | None = None) -> None:
        if not items and not compartment:
            return
        ci = self.el(info, "classificationInformation")
        if compartment:
            cat = self.c(ci, "elementaryFlowCategorization")
            for level, name in enumerate(compartment):
                self.c(cat, "category", name, level=str(level))
        for item in items:
            cl = self.c(ci, "classification", name=item.system)
            path = item.path
            if not path and item.code:
                # A code without a path (e.g. GB/T 4754 "3216"): ILCD needs a class text.
                path = [item.code]
                cl.set(f"{{{PCF_NS}}}codeOnly", "true")
            for level, name in enumerate(path):
                attrs = {"level": str(level)}
                if item.code and level == len(path) - 1:
                    attrs["classId"] = item.code
                self.c(cl, "class", name, **attrs)

    def publication(self, parent: Element, ds: Dataset, before: Callable[[Element], None] | None = None) -> None:
        admin = self.el(parent, "administrativeInformation")
        if before is not None:
            before(admin)
        pub = self.el(admin, "publicationAndOwnership")
        self.c(pub, "dataSetVersion", _canonical_version(ds.version))


def _other(w: _W, parent: Element) -> Element:
    return w.c(parent, "other")


def _pcf(parent: Element, tag: str, text: str | None = None, /, **attrs: str) -> Element:
    child = etree.SubElement(parent, f"{{{PCF_NS}}}{tag}", attrs)
    if text is not None:
        child.text = text
    return child


def _write_unit_group(ug: UnitGroup, bundle: Bundle) -> Element:
    w = _W("unit_group")
    root = w.root("unitGroupDataSet")
    ginfo = w.el(root, "unitGroupInformation")
    info = w.info(ginfo, ug, None, name_in_common=True)
    w.langs(info, "generalComment", ug.description, COMMON_NS)
    ref_index = next((i for i, u in enumerate(ug.units) if u.name == ug.reference_unit), 0)
    w.el(w.el(ginfo, "quantitativeReference"), "referenceToReferenceUnit", str(ref_index))
    w.publication(root, ug)
    units = w.el(root, "units")
    for i, u in enumerate(ug.units):
        unit = w.el(units, "unit", dataSetInternalID=str(i))
        w.el(unit, "name", u.name)
        w.el(unit, "meanValue", _num(u.factor))
        w.langs(unit, "generalComment", u.description)
    return root


def _write_flow_property(fp: FlowProperty, bundle: Bundle) -> Element:
    w = _W("flow_property")
    root = w.root("flowPropertyDataSet")
    pinfo = w.el(root, "flowPropertiesInformation")
    info = w.info(pinfo, fp, None, name_in_common=True)
    w.langs(info, "generalComment", fp.description, COMMON_NS)
    w.ref(w.el(pinfo, "quantitativeReference"), "referenceToReferenceUnitGroup", "unit_group", fp.unit_group, bundle)
    w.publication(root, fp)
    return root


def _write_flow(flow: Flow, bundle: Bundle) -> Element:
    w = _W("flow")
    root = w.root("flowDataSet")
    finfo = w.el(root, "flowInformation")
    info = w.el(finfo, "dataSetInformation")
    w.c(info, "UUID", flow.uuid)
    if flow.name:
        w.langs(w.el(info, "name"), "baseName", flow.name)
    for lang, words in flow.synonyms.items():
        if words:
            w.c(info, "synonyms", "; ".join(words), **{XML_LANG: lang})
    w.classifications(info, flow.classifications, flow.compartment)
    if flow.cas:
        w.el(info, "CASNumber", _cas_ilcd(flow.cas))
    if flow.formula:
        w.el(info, "sumFormula", flow.formula)
    w.langs(info, "generalComment", flow.description, COMMON_NS)
    ref_index = next((i for i, p in enumerate(flow.properties) if p.reference), 0)
    w.el(w.el(finfo, "quantitativeReference"), "referenceToReferenceFlowProperty", str(ref_index))
    if flow.location:
        # A multi-language string in ILCD 1.1; the code goes in as English text.
        w.el(w.el(finfo, "geography"), "locationOfSupply", flow.location, None, **{XML_LANG: "en"})
    w.el(w.el(w.el(root, "modellingAndValidation"), "LCIMethod"), "typeOfDataSet", _FLOW_TYPE_ILCD[flow.flow_type])
    w.publication(root, flow)
    if flow.properties:
        props = w.el(root, "flowProperties")
        for i, p in enumerate(flow.properties):
            prop = w.el(props, "flowProperty", dataSetInternalID=str(i))
            w.ref(prop, "referenceToFlowPropertyDataSet", "flow_property", p.flow_property, bundle)
            w.el(prop, "meanValue", _num(p.factor))
    return root


def _write_source(src: Source, bundle: Bundle) -> Element:
    w = _W("source")
    root = w.root("sourceDataSet")
    sinfo = w.el(root, "sourceInformation")
    info = w.el(sinfo, "dataSetInformation")
    w.c(info, "UUID", src.uuid)
    w.langs(info, "shortName", src.name, COMMON_NS)
    w.classifications(info, src.classifications)
    if src.citation:
        w.el(info, "sourceCitation", src.citation)
    w.langs(info, "sourceDescriptionOrComment", src.description)
    if src.url:
        w.el(info, "referenceToDigitalFile", uri=src.url)
    w.publication(root, src)
    return root


def _write_contact(contact: Contact, bundle: Bundle) -> Element:
    w = _W("contact")
    root = w.root("contactDataSet")
    cinfo = w.el(root, "contactInformation")
    info = w.el(cinfo, "dataSetInformation")
    w.c(info, "UUID", contact.uuid)
    w.langs(info, "shortName", contact.name, COMMON_NS)
    w.langs(info, "name", contact.name, COMMON_NS)
    w.classifications(info, contact.classifications)
    w.langs(info, "contactAddress", contact.address)
    if contact.email:
        w.el(info, "email", contact.email)
    if contact.url:
        w.el(info, "WWWAddress", contact.url)
    w.langs(info, "contactDescriptionOrComment", contact.description)
    w.publication(root, contact)
    return root


def _impact_category(indicator: str) -> str:
    for value in _IMPACT_CATEGORIES:
        if value.lower() == indicator.strip().lower():
            return value
    return "other"


def _write_method(method: LCIAMethod, bundle: Bundle) -> Element:
    w = _W("lcia_method")
    root = w.root("LCIAMethodDataSet")
    minfo = w.el(root, "LCIAMethodInformation")
    info = w.el(minfo, "dataSetInformation")
    w.c(info, "UUID", method.uuid)
    w.langs(info, "name", method.name, COMMON_NS)
    w.classifications(info, method.classifications)
    category = _impact_category(method.indicator)
    w.el(info, "impactCategory", category)
    w.langs(info, "generalComment", method.description, COMMON_NS)
    if method.gwp_set or category != method.indicator:
        other = _other(w, info)
        if method.gwp_set:
            _pcf(other, "gwpSet", method.gwp_set)
        if category != method.indicator:
            _pcf(other, "indicator", method.indicator)
    # ILCD requires a reference quantity; without one in the model, a name-based UUID stands in
    # and pcf:derived tells the reader that the model had none.
    ref_prop = method.reference_property or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"{PCF_NS}#{method.reference_unit}"))
    ref_el = w.ref(w.el(minfo, "quantitativeReference"), "referenceQuantity", "flow_property", ref_prop, bundle,
                   short={"en": method.reference_unit})
    if method.reference_property is None:
        ref_el.set(f"{{{PCF_NS}}}derived", "true")
    w.el(minfo, "geography")
    w.el(root, "modellingAndValidation")
    admin = w.el(root, "administrativeInformation")
    w.el(admin, "dataGenerator")
    w.el(admin, "dataEntryBy")
    w.c(w.el(admin, "publicationAndOwnership"), "dataSetVersion", _canonical_version(method.version))
    if method.factors:
        factors = w.el(root, "characterisationFactors")
        for f in method.factors:
            factor = w.el(factors, "factor")
            w.ref(factor, "referenceToFlowDataSet", "flow", f.flow, bundle)
            direction = f.direction or _default_direction(bundle, f.flow)
            w.el(factor, "exchangeDirection", "Input" if direction == "input" else "Output")
            w.el(factor, "meanValue", _num(f.value))
            extras = [("species", f.species), ("origin", f.origin), ("flowProperty", f.flow_property),
                      ("unit", f.unit)]
            if any(v is not None for _, v in extras):
                other = _other(w, factor)
                for tag, value in extras:
                    if value is not None:
                        _pcf(other, tag, value)
    return root


def _default_direction(bundle: Bundle, flow_uuid: str) -> str:
    """Resources are inputs, everything else an output (for factors that name no direction)."""
    flow = bundle.flows.get(flow_uuid)
    if flow is not None and flow.compartment and flow.compartment[0].lower().startswith("resource"):
        return "input"
    return "output"


def _ilcd_ids(process: Process) -> dict[str, str]:
    """ILCD ``dataSetInternalID`` per exchange: the model id when it is a small integer, else the position."""
    ids = [e.internal_id for e in process.exchanges]
    if all(i.isdigit() and len(i) <= 6 for i in ids) and len(set(ids)) == len(ids):
        return {i: i for i in ids}
    return {e.internal_id: str(n) for n, e in enumerate(process.exchanges)}


def _write_uncertainty(w: _W, ex_el: Element, e: Exchange) -> None:
    unc = e.uncertainty
    if unc is None:
        return
    if unc.minimum is not None:
        w.el(ex_el, "minimumAmount", _num(unc.minimum))
    if unc.maximum is not None:
        w.el(ex_el, "maximumAmount", _num(unc.maximum))
    w.el(ex_el, "uncertaintyDistributionType", _DISTRIBUTION_ILCD[unc.distribution])
    rsd: float | None = None
    if unc.distribution == "lognormal" and unc.geosd is not None:
        rsd = unc.geosd * unc.geosd
    elif unc.relative_sd_percent is not None:
        rsd = unc.relative_sd_percent
    elif unc.distribution == "normal" and unc.sd is not None and e.amount:
        rsd = unc.sd * 200.0 / abs(e.amount)
    if rsd is not None:
        w.el(ex_el, "relativeStandardDeviation95In", _perc(rsd))


def _write_exchange(w: _W, parent: Element, e: Exchange, ids: dict[str, str], bundle: Bundle) -> None:
    ex = w.el(parent, "exchange", dataSetInternalID=ids[e.internal_id])
    w.ref(ex, "referenceToFlowDataSet", "flow", e.flow, bundle)
    if e.location:
        w.el(ex, "location", e.location)
    w.el(ex, "exchangeDirection", "Input" if e.direction == "input" else "Output")
    amount = e.amount
    flow = bundle.flows.get(e.flow)
    plain = e.unit == _reference_unit(bundle, e.flow, None) and (
        e.flow_property is None or (flow is not None and e.flow_property == flow.reference_property()))
    if not plain:
        try:
            amount = to_reference_amount(bundle, e)
        except UnitError:
            amount = e.amount  # written as is; pcf:amount / pcf:unit say what it is
    w.el(ex, "meanAmount", _num(amount))
    w.el(ex, "resultingAmount", _num(amount))
    _write_uncertainty(w, ex, e)
    if e.allocation:
        allocs = w.el(ex, "allocations")
        for co, fraction in e.allocation.items():
            w.el(allocs, "allocation", internalReferenceToCoProduct=ids.get(co, co),
                 allocatedFraction=_perc(fraction * 100.0))
    if e.data_source:
        w.el(ex, "dataSourceType", "Primary" if e.data_source == "primary" else "Secondary")
    w.langs(ex, "generalComment", e.comment)
    renumbered = ids[e.internal_id] != e.internal_id
    if not (renumbered or not plain or e.flow_property or e.allocation or e.uncertainty or e.provider
            or e.data_quality):
        return
    other = _other(w, ex)
    if renumbered:
        _pcf(other, "internalId", e.internal_id)
    if not plain:
        _pcf(other, "amount", _num(e.amount))
        _pcf(other, "unit", e.unit)
    if e.flow_property:
        _pcf(other, "flowProperty", e.flow_property)
    for co, fraction in e.allocation.items():
        _pcf(other, "allocation", coProduct=co, fraction=_num(fraction))
    if e.uncertainty is not None:
        attrs: dict[str, str] = {"distribution": e.uncertainty.distribution}
        for key, attr in [("geomean", "geomean"), ("geosd", "geosd"), ("sd", "sd"), ("minimum", "minimum"),
                          ("mode", "mode"), ("maximum", "maximum"), ("relative_sd_percent", "relativeSdPercent")]:
            value = getattr(e.uncertainty, key)
            if value is not None:
                attrs[attr] = _num(value)
        _pcf(other, "uncertainty", **attrs)
    if e.provider:
        _pcf(other, "provider", e.provider)
    if e.data_quality is not None:
        _pcf(other, "dataQuality", **{k: str(v) for k, v in e.data_quality.indicators().items()})


def _write_process(p: Process, bundle: Bundle) -> Element:
    w = _W("process")
    root = w.root("processDataSet")
    pinfo = w.el(root, "processInformation")
    info = w.info(pinfo, p, "name")
    w.langs(info, "generalComment", p.description, COMMON_NS)
    if p.annual_production is not None:
        _pcf(_other(w, info), "annualProduction", _num(p.annual_production))
    ids = _ilcd_ids(p)
    qref = w.el(pinfo, "quantitativeReference", type="Reference flow(s)")
    for rid in p.reference_exchanges:
        w.el(qref, "referenceToReferenceFlow", ids.get(rid, rid))
    if p.reference_year is not None or p.valid_until is not None:
        time_el = w.el(pinfo, "time")
        if p.reference_year is not None:
            w.c(time_el, "referenceYear", str(p.reference_year))
        if p.valid_until is not None:
            w.c(time_el, "dataSetValidUntil", str(p.valid_until))
    if p.location or p.sub_location:
        geo = w.el(pinfo, "geography")
        if p.location:
            w.el(geo, "locationOfOperationSupplyOrProduction", location=p.location)
        if p.sub_location:
            w.el(geo, "subLocationOfOperationSupplyOrProduction", subLocation=p.sub_location)
    if p.technology:
        w.langs(w.el(pinfo, "technology"), "technologyDescriptionAndIncludedProcesses", p.technology)
    mv = w.el(root, "modellingAndValidation")
    w.el(w.el(mv, "LCIMethodAndAllocation"), "typeOfDataSet",
         "LCI result" if p.process_type == "lci_result" else "Unit process, black box")
    if p.sources:
        rep = w.el(mv, "dataSourcesTreatmentAndRepresentativeness")
        for s in p.sources:
            w.ref(rep, "referenceToDataSource", "source", s, bundle)
    indicators = p.data_quality.indicators()
    if indicators:
        review = w.el(w.el(mv, "validation"), "review", type="Not reviewed")
        dqis = w.c(review, "dataQualityIndicators")
        for key, value in indicators.items():
            w.c(dqis, "dataQualityIndicator", name=_DQI_ILCD[key], value=_DQI_VALUE_ILCD[value])

    def generators(admin: Element) -> None:
        if p.contacts:
            gen = w.el(admin, "dataGenerator")
            for c in p.contacts:
                w.ref(gen, "referenceToPersonOrEntityGeneratingTheDataSet", "contact", c, bundle, COMMON_NS)

    w.publication(root, p, generators)
    if p.exchanges:
        exchanges = w.el(root, "exchanges")
        for e in p.exchanges:
            _write_exchange(w, exchanges, e, ids, bundle)
    return root


def _write_model(m: LifeCycleModel, bundle: Bundle) -> Element:
    w = _W("model")
    root = w.root("lifeCycleModelDataSet", {"process": MODULE_NS["process"]})
    minfo = w.el(root, "lifeCycleModelInformation")
    info = w.info(minfo, m, "name")
    w.langs(info, "generalComment", m.description, COMMON_NS)
    if m.location:
        _pcf(_other(w, info), "location", m.location)
    processes = list(dict.fromkeys([*m.processes, m.reference_process,
                                    *(x for link in m.links for x in (link.provider, link.recipient))]))
    index = {uid: str(i) for i, uid in enumerate(processes)}
    w.el(w.el(minfo, "quantitativeReference"), "referenceToReferenceProcess", index[m.reference_process])
    procs = w.el(w.el(minfo, "technology"), "processes")
    for uid in processes:
        inst = w.el(procs, "processInstance", dataSetInternalID=index[uid], multiplicationFactor="1.0")
        w.ref(inst, "referenceToProcess", "process", uid, bundle)
        links = [link for link in m.links if link.provider == uid]
        if links:
            conns = w.el(inst, "connections")
            for flow in dict.fromkeys(link.flow for link in links):
                out = w.el(conns, "outputExchange", flowUUID=flow)
                for link in links:
                    if link.flow == flow:
                        w.el(out, "downstreamProcess", flowUUID=flow, id=index[link.recipient])
    w.publication(root, m)
    return root


_WRITERS: dict[str, Callable[[Dataset, Bundle], Element]] = {
    "unit_group": _write_unit_group,  # type: ignore[dict-item]
    "flow_property": _write_flow_property,  # type: ignore[dict-item]
    "flow": _write_flow,  # type: ignore[dict-item]
    "source": _write_source,  # type: ignore[dict-item]
    "contact": _write_contact,  # type: ignore[dict-item]
    "lcia_method": _write_method,  # type: ignore[dict-item]
    "process": _write_process,  # type: ignore[dict-item]
    "model": _write_model,  # type: ignore[dict-item]
}


def dataset_xml(ds: Dataset, bundle: Bundle) -> bytes:
    """One data set as ILCD 1.1 XML (references to other data sets are described from ``bundle``)."""
    from lca.model import dataset_kind

    root = _WRITERS[dataset_kind(ds)](ds, bundle)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def write_ilcd(bundle: Bundle, out: Path) -> None:
    """Write ``bundle`` as an ILCD zip: ``ILCD/<module folder>/<uuid>.xml``, ILCD 1.1 element order.

    Numbers are written as Python ``repr`` (the shortest text that reads back to the same
    float), names and comments in every language, versions in the ILCD form ``NN.NN.NNN``.
    The zip is deterministic (fixed timestamps, sorted entries) and replaced atomically.

    Parameters
    ----------
    bundle
        The data sets to write.
    out
        The zip file to create or replace.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for kind, folder in FOLDER_OF_KIND.items():
            for uid in sorted(bundle.collection(kind)):
                ds = bundle.collection(kind)[uid]
                info = zipfile.ZipInfo(f"ILCD/{folder}/{uid}.xml", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, dataset_xml(ds, bundle))
    tmp.replace(out)
