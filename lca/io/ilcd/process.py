"""ILCD module readers: processes with their exchanges, and life cycle models."""

from __future__ import annotations

import math

from lxml.etree import _Element as Element

from lca.io.diagnostics import Rule
from lca.io.ilcd.codec import (
    _DERIVATION,
    _DERIVATION_OTHER,
    _DISTRIBUTION_ILCD,
    _DISTRIBUTIONS,
    _DQI_NAMES,
    _DQI_NOT_RATED,
    _DQI_VALUES,
    _PROCESS_NAME_PARTS,
    _SOURCE_TYPE,
    PCF_NS,
    _find,
    _findall,
    _i18n,
    _kid,
    _kids,
    _text,
)
from lca.io.ilcd.parsing import _classifications, _Ctx, _ext, _joined_name, _refs, _uuid, _version
from lca.model import Bundle, DataQuality, Exchange, LifeCycleModel, ModelLink, Process, Uncertainty

__all__: list[str] = []  # package-internal: lca.io.ilcd re-exports what is public


def _reference_unit(bundle: Bundle, flow_uuid: str, prop_uuid: str | None) -> str | None:
    flow = bundle.flows.get(flow_uuid)
    prop = prop_uuid or (flow.reference_property() if flow is not None else None)
    fp = bundle.flow_properties.get(prop) if prop else None
    group = bundle.unit_groups.get(fp.unit_group) if fp is not None else None
    return group.reference_unit if group is not None else None


def _read_uncertainty(ex: Element, amount: float, ctx: _Ctx) -> Uncertainty | None:
    ext = _ext(ex, "uncertainty")
    if ext is not None:
        values: dict[str, object] = {"distribution": ext.get("distribution", "undefined")}
        for attr, key in [("geomean", "geomean"), ("geosd", "geosd"), ("sd", "sd"), ("minimum", "minimum"),
                          ("mode", "mode"), ("maximum", "maximum"), ("relativeSdPercent", "relative_sd_percent")]:
            raw = ext.get(attr)
            if raw is not None:
                number = ctx.parse_number(ext, attr, raw)
                if number is not None:
                    values[key] = number
        try:
            return Uncertainty.model_validate(values)
        except ValueError as exc:
            ctx.error(Rule.INVALID_VALUE, f"pcf:uncertainty is invalid: {exc}", ext, "uncertainty", dict(ext.attrib))
            return None
    dist_el = _kid(ex, "uncertaintyDistributionType")
    raw = _text(dist_el)
    minimum = ctx.number(_kid(ex, "minimumAmount"), "minimumAmount")
    maximum = ctx.number(_kid(ex, "maximumAmount"), "maximumAmount")
    rsd = ctx.number(_kid(ex, "relativeStandardDeviation95In"), "relativeStandardDeviation95In")
    if raw is None:
        if minimum is None and maximum is None and rsd is None:
            return None
        raw = "undefined"
    dist = _DISTRIBUTIONS.get(raw)
    if dist is None:
        ctx.warn(Rule.XSD_DEVIATION, f"uncertaintyDistributionType {raw!r} is unknown "
                 f"(accepted: {', '.join(_DISTRIBUTION_ILCD.values())}); no uncertainty read",
                 dist_el, "uncertaintyDistributionType", raw)
        return None
    unc = Uncertainty(distribution=dist, minimum=minimum, maximum=maximum)  # type: ignore[arg-type]
    if rsd is not None:
        if dist == "lognormal":
            unc.geomean = amount
            unc.geosd = math.sqrt(rsd) if rsd >= 0 else None
        elif dist == "normal":
            unc.relative_sd_percent = rsd
            unc.sd = abs(amount) * rsd / 200.0
        else:
            unc.relative_sd_percent = rsd
    return unc


def _read_exchanges(root: Element, bundle: Bundle, ctx: _Ctx) -> tuple[list[Exchange], dict[str, str]]:
    exchanges: list[Exchange] = []
    ids: dict[str, str] = {}
    for pos, ex in enumerate(_findall(root, "exchanges", "exchange")):
        ctx.check_order(ex, "process/exchange")
        raw_id = (ex.get("dataSetInternalID") or "").strip()
        if not raw_id:
            ctx.error(Rule.MISSING_INTERNAL_ID, f"exchange has no @dataSetInternalID; numbered {pos} by position",
                      ex, "dataSetInternalID", "")
            raw_id = str(pos)
        internal_id = _text(_ext(ex, "internalId")) or raw_id
        ids[raw_id] = internal_id
        fref = _kid(ex, "referenceToFlowDataSet")
        flow = (fref.get("refObjectId") or "").strip().lower() if fref is not None else ""
        if not flow:
            ctx.error(Rule.MISSING_FIELD, "exchange has no referenceToFlowDataSet/@refObjectId; skipped",
                      fref if fref is not None else ex, "refObjectId", "")
            continue
        dir_el = _kid(ex, "exchangeDirection")
        direction = {"Input": "input", "Output": "output"}.get(_text(dir_el) or "")
        if direction is None:
            ctx.error(Rule.INVALID_VALUE, f"exchangeDirection {_text(dir_el)!r} is not Input or Output; exchange skipped",
                      dir_el if dir_el is not None else ex, "exchangeDirection", _text(dir_el) or "")
            continue
        amount_el = _kid(ex, "meanAmount")
        if amount_el is None:
            amount_el = _kid(ex, "resultingAmount")
        amount = ctx.number(amount_el if amount_el is not None else ex, "meanAmount", required=True)
        if amount is None:
            continue
        flow_property: str | None = None
        prop_ref = _kid(ex, "referenceToFlowPropertyDataSet")
        if prop_ref is not None and prop_ref.get("refObjectId"):
            flow_property = (prop_ref.get("refObjectId") or "").strip().lower()
        prop_ext = _text(_ext(ex, "flowProperty"))
        if prop_ext:
            flow_property = prop_ext.lower()
        if flow not in bundle.flows:
            ctx.error(Rule.UNRESOLVED_REFERENCE, f"flow {flow} is not in the data (accepted: a flow data set of "
                      f"the same import)", fref, "refObjectId", flow)
        unit: str | None = None
        unit_ext = _ext(ex, "unit")
        if unit_ext is not None:
            # Written by write_ilcd for amounts in a non-reference unit: meanAmount is converted,
            # pcf:amount / pcf:unit are the amount as the model had it.
            unit = _text(unit_ext)
            amount_ext = _ext(ex, "amount")
            if amount_ext is not None:
                exact = ctx.number(amount_ext, "pcf:amount", required=True)
                amount = amount if exact is None else exact
        if unit is None:
            unit = _reference_unit(bundle, flow, flow_property)
            if unit is None and flow in bundle.flows:
                ctx.error(Rule.UNRESOLVED_REFERENCE,
                          f"the reference unit of flow {flow} cannot be found (flow property or unit group missing)",
                          fref, "refObjectId", flow)
        data_source = None
        src_el = _kid(ex, "dataSourceType")
        der_el = _kid(ex, "dataDerivationTypeStatus")
        if _text(src_el) is not None:
            data_source = _SOURCE_TYPE.get(_text(src_el) or "")
            if data_source is None:
                ctx.warn(Rule.XSD_DEVIATION, f"dataSourceType {_text(src_el)!r} is unknown "
                         f"(accepted: {', '.join(_SOURCE_TYPE)})", src_el, "dataSourceType", _text(src_el))
        elif der_el is not None:
            status = _text(der_el)
            data_source = _DERIVATION.get(status or "")
            if status is None:
                ctx.warn(Rule.XSD_DEVIATION, "dataDerivationTypeStatus is empty; no data source type read",
                         der_el, "dataDerivationTypeStatus", "")
            elif data_source is None and status not in _DERIVATION_OTHER:
                ctx.warn(Rule.XSD_DEVIATION, f"dataDerivationTypeStatus {status!r} is unknown", der_el,
                         "dataDerivationTypeStatus", status)
        allocation: dict[str, float] = {}
        other = _kid(ex, "other")
        exact_allocations = other.findall(f"{{{PCF_NS}}}allocation") if other is not None else []
        if exact_allocations:
            for a in exact_allocations:
                fraction = ctx.parse_number(a, "fraction", a.get("fraction", ""))
                if fraction is not None:
                    allocation[a.get("coProduct", "")] = fraction
        else:
            for a in _findall(ex, "allocations", "allocation"):
                co = (a.get("internalReferenceToCoProduct") or "").strip()
                pct = ctx.parse_number(a, "allocatedFraction", a.get("allocatedFraction") or "")
                if pct is not None:
                    allocation[co] = pct / 100.0
        provider = _text(_ext(ex, "provider"))
        dq_el = _ext(ex, "dataQuality")
        exchanges.append(Exchange(
            internal_id=internal_id, flow=flow, direction=direction,  # type: ignore[arg-type]
            amount=amount, unit=unit or "", flow_property=flow_property,
            data_source=data_source,  # type: ignore[arg-type]
            uncertainty=_read_uncertainty(ex, amount, ctx), allocation=allocation,
            provider=provider.lower() if provider else None,
            comment=_i18n(_kids(ex, "generalComment")), location=_text(_kid(ex, "location")),
            data_quality=_read_dq_ext(dq_el, ctx) if dq_el is not None else None,
        ))
    # Allocation keys name co-products by their raw ILCD id; translate like the reference ids.
    if any(ids[k] != k for k in ids):
        for e in exchanges:
            e.allocation = {ids.get(k, k): v for k, v in e.allocation.items()}
    return exchanges, ids


def _read_dq_ext(el: Element, ctx: _Ctx) -> DataQuality | None:
    values: dict[str, int] = {}
    for key in DataQuality.model_fields:
        raw = el.get(key)
        if raw is None:
            continue
        if raw not in {"1", "2", "3", "4", "5"}:
            ctx.error(Rule.INVALID_VALUE, f"pcf:dataQuality/@{key} {raw!r} is not 1..5", el, key, raw)
            continue
        values[key] = int(raw)
    return DataQuality(**values)


def _read_process(root: Element, bundle: Bundle, ctx: _Ctx, locations: set[str] | None) -> Process | None:
    pinfo = _kid(root, "processInformation")
    info = _kid(pinfo, "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    ctx.check_order(info, "process/dataSetInformation")
    qref = _kid(pinfo, "quantitativeReference")
    ctx.check_order(qref, "process/quantitativeReference")
    time_el = _kid(pinfo, "time")
    ctx.check_order(time_el, "process/time")
    ctx.check_order(_find(root, "modellingAndValidation", "LCIMethodAndAllocation"), "process/LCIMethodAndAllocation")
    exchanges, ids = _read_exchanges(root, bundle, ctx)
    known = {e.internal_id for e in exchanges}
    reference: list[str] = []
    for r in _kids(qref, "referenceToReferenceFlow"):
        raw = _text(r)
        if raw is None:
            continue
        rid = ids.get(raw, raw)
        if rid not in known:
            ctx.error(Rule.UNRESOLVED_REFERENCE, f"referenceToReferenceFlow {raw!r} names no exchange "
                      f"(accepted: a dataSetInternalID of exchanges/exchange)", r, "referenceToReferenceFlow", raw)
        reference.append(rid)
    geo = _kid(pinfo, "geography")
    loc_el = _kid(geo, "locationOfOperationSupplyOrProduction")
    sub_el = _kid(geo, "subLocationOfOperationSupplyOrProduction")
    for el, attr in ((loc_el, "location"), (sub_el, "subLocation")):
        code = (el.get(attr) or "").strip() if el is not None else ""
        if code and locations is not None and code not in locations:
            ctx.warn(Rule.UNKNOWN_LOCATION, f"location code {code!r} is not in ILCDLocations.xml; kept as is",
                     el, attr, code)
    type_raw = _text(_find(root, "modellingAndValidation", "LCIMethodAndAllocation", "typeOfDataSet")) or ""
    dq: dict[str, int] = {}
    for review in _findall(root, "modellingAndValidation", "validation", "review"):
        for ind in _findall(review, "dataQualityIndicators", "dataQualityIndicator"):
            key = _DQI_NAMES.get((ind.get("name") or "").strip())
            value = (ind.get("value") or "").strip()
            if key is None or key in dq or value in _DQI_NOT_RATED:
                continue
            if value not in _DQI_VALUES:
                ctx.warn(Rule.XSD_DEVIATION, f"data quality value {value!r} is unknown "
                         f"(accepted: {', '.join(_DQI_VALUES)}); ignored", ind, "value", value)
                continue
            dq[key] = _DQI_VALUES[value]
    admin = _kid(root, "administrativeInformation")
    contacts = _refs([
        *_findall(admin, "dataGenerator", "referenceToPersonOrEntityGeneratingTheDataSet"),
        *_findall(admin, "dataEntryBy", "referenceToPersonOrEntityEnteringTheData"),
        *_findall(admin, "publicationAndOwnership", "referenceToOwnershipOfDataSet"),
    ])
    sources = _refs(_findall(root, "modellingAndValidation", "dataSourcesTreatmentAndRepresentativeness",
                             "referenceToDataSource"))
    annual_el = _ext(info, "annualProduction")
    process = Process(
        uuid=uid, version=_version(root, ctx),
        name=_joined_name(_kid(info, "name"), _PROCESS_NAME_PARTS),
        description=_i18n(_kids(info, "generalComment")), classifications=_classifications(info),
        process_type="lci_result" if type_raw == "LCI result" else "unit",
        location=(loc_el.get("location") or "").strip() or None if loc_el is not None else None,
        sub_location=(sub_el.get("subLocation") or "").strip() or None if sub_el is not None else None,
        reference_year=ctx.integer(_kid(time_el, "referenceYear"), "referenceYear"),
        valid_until=ctx.integer(_kid(time_el, "dataSetValidUntil"), "dataSetValidUntil"),
        reference_exchanges=reference, exchanges=exchanges, data_quality=DataQuality(**dq),
        sources=sources, contacts=contacts,
        technology=_i18n(_findall(pinfo, "technology", "technologyDescriptionAndIncludedProcesses")),
        annual_production=ctx.number(annual_el, "pcf:annualProduction") if annual_el is not None else None,
    )
    return process


def _read_model(root: Element, ctx: _Ctx) -> LifeCycleModel | None:
    minfo = _kid(root, "lifeCycleModelInformation")
    info = _kid(minfo, "dataSetInformation")
    uid = _uuid(info, root, ctx)
    if uid is None:
        return None
    instances: dict[str, str] = {}
    elements = _findall(minfo, "technology", "processes", "processInstance")
    for inst in elements:
        ref = _kid(inst, "referenceToProcess")
        proc = (ref.get("refObjectId") or "").strip().lower() if ref is not None else ""
        if not proc:
            ctx.error(Rule.MISSING_FIELD, "processInstance has no referenceToProcess/@refObjectId; skipped",
                      inst, "refObjectId", "")
            continue
        instances[(inst.get("dataSetInternalID") or "").strip()] = proc
    links: list[ModelLink] = []
    for inst in elements:
        provider = instances.get((inst.get("dataSetInternalID") or "").strip())
        if provider is None:
            continue
        for out in _findall(inst, "connections", "outputExchange"):
            flow = (out.get("flowUUID") or "").strip().lower()
            for down in _kids(out, "downstreamProcess"):
                recipient = instances.get((down.get("id") or "").strip())
                if recipient is None:
                    ctx.error(Rule.UNRESOLVED_REFERENCE, f"downstreamProcess id {down.get('id')!r} names no processInstance",
                              down, "id", down.get("id"))
                    continue
                links.append(ModelLink(provider=provider, flow=(down.get("flowUUID") or flow).strip().lower(),
                                       recipient=recipient))
    ref_el = _find(minfo, "quantitativeReference", "referenceToReferenceProcess")
    ref = instances.get(_text(ref_el) or "")
    if ref is None:
        ctx.error(Rule.UNRESOLVED_REFERENCE, f"referenceToReferenceProcess {_text(ref_el)!r} names no processInstance; "
                  f"the model is skipped", ref_el if ref_el is not None else root, "referenceToReferenceProcess",
                  _text(ref_el) or "")
        return None
    return LifeCycleModel(
        uuid=uid, version=_version(root, ctx), name=_joined_name(_kid(info, "name"), _PROCESS_NAME_PARTS),
        description=_i18n(_kids(info, "generalComment")), classifications=_classifications(info),
        reference_process=ref, processes=list(dict.fromkeys(instances.values())), links=links,
        location=_text(_ext(info, "location")),
    )
