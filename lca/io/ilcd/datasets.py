"""ILCD module readers: unit groups, flow properties, flows, sources, contacts, LCIA methods."""

from __future__ import annotations

import re

from lxml.etree import _Element as Element

from lca.io.diagnostics import Rule
from lca.io.ilcd.codec import (
    _CAS_RE,
    _FLOW_NAME_PARTS,
    _FLOW_TYPES,
    PCF_NS,
    XML_LANG,
    _find,
    _findall,
    _i18n,
    _kid,
    _kids,
    _text,
)
from lca.io.ilcd.parsing import _classifications, _Ctx, _ext, _joined_name, _level, _uuid, _version
from lca.model import (
    CharacterisationFactor,
    Contact,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    LCIAMethod,
    Source,
    Unit,
    UnitGroup,
)

__all__ = ["detect_gwp_set"]


# --------------------------------------------------------------------------- module readers


def _read_unit_group(root: Element, ctx: _Ctx) -> UnitGroup | None:
    info = _find(root, "unitGroupInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    units: list[Unit] = []
    ref_el = _find(root, "unitGroupInformation", "quantitativeReference", "referenceToReferenceUnit")
    ref_id = _text(ref_el)
    reference: str | None = None
    for u in _findall(root, "units", "unit"):
        ctx.check_order(u, "unit_group/unit")
        name = _text(_kid(u, "name"))
        factor = ctx.number(_kid(u, "meanValue"), "meanValue", required=True)
        if name is None:
            ctx.error(Rule.MISSING_FIELD, "unit has no name; skipped", u, "name", "")
            continue
        if factor is None:
            continue
        units.append(Unit(name=name, factor=factor, description=_i18n(_kids(u, "generalComment"))))
        if ref_id is not None and (u.get("dataSetInternalID") or "").strip() == ref_id:
            reference = name
    if reference is None:
        ctx.error(Rule.UNRESOLVED_REFERENCE,
                  f"referenceToReferenceUnit {ref_id!r} names no unit of the group "
                  f"(accepted: a dataSetInternalID of units/unit); the group is skipped",
                  ref_el if ref_el is not None else root, "referenceToReferenceUnit", ref_id or "")
        return None
    return UnitGroup(uuid=uid, version=_version(root, ctx), name=_i18n(_kids(info, "name")),
                     description=_i18n(_kids(info, "generalComment")),
                     classifications=_classifications(info), units=units, reference_unit=reference)


def _read_flow_property(root: Element, ctx: _Ctx) -> FlowProperty | None:
    info = _find(root, "flowPropertiesInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    ref = _find(root, "flowPropertiesInformation", "quantitativeReference", "referenceToReferenceUnitGroup")
    group = (ref.get("refObjectId") or "").strip().lower() if ref is not None else ""
    if not group:
        ctx.error(Rule.MISSING_FIELD, "referenceToReferenceUnitGroup/@refObjectId is missing; the property is skipped",
                  ref if ref is not None else root, "refObjectId", "")
        return None
    return FlowProperty(uuid=uid, version=_version(root, ctx), name=_i18n(_kids(info, "name")),
                        description=_i18n(_kids(info, "generalComment")),
                        classifications=_classifications(info), unit_group=group)


def _read_flow(root: Element, ctx: _Ctx) -> Flow | None:
    info = _find(root, "flowInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    ctx.check_order(info, "flow/dataSetInformation")
    type_el = _find(root, "modellingAndValidation", "LCIMethod", "typeOfDataSet")
    raw_type = _text(type_el) or ""
    flow_type = _FLOW_TYPES.get(raw_type)
    if flow_type is None:
        ctx.warn(Rule.XSD_DEVIATION, f"typeOfDataSet {raw_type!r} is not Elementary / Product / Waste flow; "
                 f"read as a product flow", type_el if type_el is not None else root, "typeOfDataSet", raw_type)
        flow_type = "product"
    cas_el = _kid(info, "CASNumber")
    cas = _text(cas_el)
    if cas is not None:
        m = _CAS_RE.match(cas)
        if m is None:
            ctx.warn(Rule.XSD_DEVIATION, f"CASNumber {cas!r} is not a CAS registry number (accepted: digits-NN-N "
                     f"like 124-38-9); dropped", cas_el, "CASNumber", cas)
            cas = None
        else:
            if not re.match(r"^\d{6}-", cas):
                ctx.warn(Rule.XSD_DEVIATION, f"CAS number {cas!r} lacks the leading zeros the XSD requires; "
                         f"read as {'-'.join(m.groups())!r}", cas_el, "CASNumber", cas)
            cas = "-".join(m.groups())
    synonyms: dict[str, list[str]] = {}
    for el in _kids(info, "synonyms"):
        text = _text(el)
        if text is None:
            continue
        lang = el.get(XML_LANG) or "en"
        synonyms.setdefault(lang, []).extend(s.strip() for s in text.split(";") if s.strip())
    compartment: list[str] = []
    for cat in _findall(info, "classificationInformation", "elementaryFlowCategorization"):
        cats = sorted(_kids(cat, "category"), key=_level)
        compartment = [t for t in (_text(c) for c in cats) if t]
        break
    ref_prop_id = _text(_find(root, "flowInformation", "quantitativeReference", "referenceToReferenceFlowProperty"))
    props: list[FlowPropertyFactor] = []
    for fp in _findall(root, "flowProperties", "flowProperty"):
        ctx.check_order(fp, "flow/flowProperty")
        ref = _kid(fp, "referenceToFlowPropertyDataSet")
        prop = (ref.get("refObjectId") or "").strip().lower() if ref is not None else ""
        if not prop:
            ctx.error(Rule.MISSING_FIELD, "flowProperty has no referenceToFlowPropertyDataSet/@refObjectId; skipped",
                      fp, "refObjectId", "")
            continue
        factor = ctx.number(_kid(fp, "meanValue"), "meanValue", required=True)
        if factor is None:
            continue
        is_ref = (fp.get("dataSetInternalID") or "").strip() == (ref_prop_id or "")
        existing = next((p for p in props if p.flow_property == prop), None)
        if existing is not None:
            ctx.warn(Rule.DUPLICATE_FLOW_PROPERTY,
                     f"flow property {prop} is listed twice (factors {existing.factor!r} and {factor!r}); "
                     f"the {'first' if not is_ref else 'reference'} entry is kept", fp, "refObjectId", prop)
            if is_ref:
                props[props.index(existing)] = FlowPropertyFactor(flow_property=prop, factor=factor, reference=True)
            continue
        props.append(FlowPropertyFactor(flow_property=prop, factor=factor, reference=is_ref))
    if props and not any(p.reference for p in props):
        ctx.warn(Rule.UNRESOLVED_REFERENCE, f"referenceToReferenceFlowProperty {ref_prop_id!r} names no flowProperty; "
                 f"the first one is taken as the reference", root, "referenceToReferenceFlowProperty", ref_prop_id)
        props[0] = props[0].model_copy(update={"reference": True})
    supply = _i18n(_findall(root, "flowInformation", "geography", "locationOfSupply"))
    location = supply.get("en") or next(iter(supply.values()), None)
    return Flow(
        uuid=uid, version=_version(root, ctx),
        name=_joined_name(_kid(info, "name"), _FLOW_NAME_PARTS),
        description=_i18n(_kids(info, "generalComment")), classifications=_classifications(info),
        flow_type=flow_type,  # type: ignore[arg-type]
        cas=cas, formula=_text(_kid(info, "sumFormula")), compartment=compartment, synonyms=synonyms,
        properties=props, location=location,
    )


def _read_source(root: Element, ctx: _Ctx) -> Source | None:
    info = _find(root, "sourceInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    files = [f.get("uri") for f in _kids(info, "referenceToDigitalFile") if f.get("uri")]
    return Source(uuid=uid, version=_version(root, ctx), name=_i18n(_kids(info, "shortName")),
                  description=_i18n(_kids(info, "sourceDescriptionOrComment")),
                  classifications=_classifications(info), citation=_text(_kid(info, "sourceCitation")),
                  url=files[0] if files else None)


def _read_contact(root: Element, ctx: _Ctx) -> Contact | None:
    info = _find(root, "contactInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    name = _i18n(_kids(info, "shortName")) or _i18n(_kids(info, "name"))
    return Contact(uuid=uid, version=_version(root, ctx), name=name,
                   description=_i18n(_kids(info, "contactDescriptionOrComment")),
                   classifications=_classifications(info), email=_text(_kid(info, "email")),
                   url=_text(_kid(info, "WWWAddress")), address=_i18n(_kids(info, "contactAddress")))


def detect_gwp_set(*texts: str) -> str | None:
    """The IPCC report (``AR4`` / ``AR5`` / ``AR6``) a climate-change method's texts name, if any."""
    blob = " ".join(texts)
    rules = [
        ("AR6", r"\bAR6\b|IPCC\s*2021|sixth assessment|\bEF\s*(v)?3\.1\b"),
        ("AR5", r"\bAR5\b|IPCC\s*2013|fifth assessment|\bEF\s*(v)?3\.0\b"),
        ("AR4", r"\bAR4\b|IPCC\s*2007|fourth assessment"),
    ]
    for label, pattern in rules:
        if re.search(pattern, blob, re.IGNORECASE):
            return label
    return None


def _read_method(root: Element, ctx: _Ctx) -> LCIAMethod | None:
    info = _find(root, "LCIAMethodInformation", "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    name = _i18n(_kids(info, "name"))
    description = _i18n(_kids(info, "generalComment"))
    methodology = [t for t in (_text(m) for m in _kids(info, "methodology")) if t]
    gwp_el = _ext(info, "gwpSet")
    gwp = _text(gwp_el) if gwp_el is not None else detect_gwp_set(
        *name.values(), *description.values(), *methodology)
    ind_el = _ext(info, "indicator")
    indicator = _text(ind_el) or _text(_kid(info, "impactCategory"))
    ref = _find(root, "LCIAMethodInformation", "quantitativeReference", "referenceQuantity")
    ref_unit = None
    ref_prop = None
    if ref is not None:
        descr = _i18n(_kids(ref, "shortDescription"))
        ref_unit = descr.get("en") or next(iter(descr.values()), None)
        ref_prop = (ref.get("refObjectId") or "").strip().lower() or None
        if ref.get(f"{{{PCF_NS}}}derived") == "true":
            ref_prop = None
    factors: list[CharacterisationFactor] = []
    for f in _findall(root, "characterisationFactors", "factor"):
        fref = _kid(f, "referenceToFlowDataSet")
        flow = (fref.get("refObjectId") or "").strip().lower() if fref is not None else ""
        if not flow:
            ctx.error(Rule.MISSING_FIELD, "factor has no referenceToFlowDataSet/@refObjectId; skipped", f, "refObjectId", "")
            continue
        value = ctx.number(_kid(f, "meanValue"), "meanValue", required=True)
        if value is None:
            continue
        dir_el = _kid(f, "exchangeDirection")
        direction = {"Input": "input", "Output": "output"}.get(_text(dir_el) or "")
        if dir_el is not None and direction is None:
            ctx.warn(Rule.XSD_DEVIATION, f"exchangeDirection {_text(dir_el)!r} is not Input or Output; ignored",
                     dir_el, "exchangeDirection", _text(dir_el))
        cf = CharacterisationFactor(flow=flow, value=value, direction=direction)  # type: ignore[arg-type]
        for key, tag in (("species", "species"), ("origin", "origin"), ("flow_property", "flowProperty"),
                         ("unit", "unit")):
            ext = _text(_ext(f, tag))
            if ext is not None:
                setattr(cf, key, ext)
        try:
            factors.append(CharacterisationFactor.model_validate(cf.model_dump()))
        except ValueError as exc:
            ctx.error(Rule.INVALID_VALUE, f"factor extension is invalid: {exc}", f, "other")
    method = LCIAMethod(uuid=uid, version=_version(root, ctx), name=name, description=description,
                        classifications=_classifications(info), gwp_set=gwp, factors=factors,
                        reference_property=ref_prop)
    if indicator:
        method.indicator = indicator
    if ref_unit:
        method.reference_unit = ref_unit
    return method
