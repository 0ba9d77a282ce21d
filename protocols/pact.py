"""PACT Technical Specifications v3.0 wire models: ProductFootprint, CarbonFootprint, events and errors.

Field names are the specification's, verbatim (camelCase). Every decimal quantity is a
:class:`decimal.Decimal` that travels as a decimal string (``"12.5"``, never ``12.5`` nor
``"1.25E+1"``); numbers sent as JSON numbers are refused, as the specification asks for strings.
Timestamps are UTC and serialised as ``2025-01-01T00:00:00Z``.

Where the v3.0 OpenAPI and its examples disagree, the OpenAPI schema wins: a footprint has no
``version`` (v3 gives every change a new ``id`` and lists the earlier ids in ``precedingPfIds``)
and the error code of an unknown footprint is ``NotFound``.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from protocols.factor import PublishedFactor, gas_origin

__all__ = [
    "DECLARED_UNITS",
    "EVENT_PUBLISHED",
    "EVENT_REQUEST_CREATED",
    "EVENT_REQUEST_FULFILLED",
    "EVENT_REQUEST_REJECTED",
    "EVENT_TYPES",
    "EXTENSION_SCHEMA",
    "PF_NAMESPACE",
    "SPEC_VERSION",
    "UN_REGIONS",
    "UN_SUBREGIONS",
    "AuthError",
    "CarbonFootprint",
    "CloudEvent",
    "DataModelExtension",
    "DataQualityIndicators",
    "DeclaredUnit",
    "EmissionFactorSource",
    "Error",
    "ErrorCode",
    "FootprintFilter",
    "ListFootprintsResponse",
    "NegativeOrZeroDecimal",
    "PactDecimal",
    "PositiveNonZeroDecimal",
    "PositiveOrZeroDecimal",
    "ProductFootprint",
    "ProductFootprintResponse",
    "ProductOrSectorSpecificRule",
    "PublishedEventData",
    "RequestCreatedEventData",
    "RequestFulfilledEventData",
    "RequestRejectedEventData",
    "TokenResponse",
    "Urn",
    "UtcDateTime",
    "Verification",
    "factor_geography",
    "footprint_id",
    "footprint_matches",
    "format_decimal",
    "geography_matches",
    "parse_event",
    "product_footprint",
    "request_criteria",
    "response_event",
    "to_decimal",
]

SPEC_VERSION = "3.0.0"

EVENT_PUBLISHED = "org.wbcsd.pact.ProductFootprint.PublishedEvent.3"
EVENT_REQUEST_CREATED = "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3"
EVENT_REQUEST_FULFILLED = "org.wbcsd.pact.ProductFootprint.RequestFulfilledEvent.3"
EVENT_REQUEST_REJECTED = "org.wbcsd.pact.ProductFootprint.RequestRejectedEvent.3"
EVENT_TYPES = (EVENT_PUBLISHED, EVENT_REQUEST_CREATED, EVENT_REQUEST_FULFILLED, EVENT_REQUEST_REJECTED)

ErrorCode = Literal["BadRequest", "AccessDenied", "TokenExpired", "NotFound", "InternalError", "NotImplemented"]

#: v3.0 ``declaredUnitOfMeasurement`` values (there is no "ton": a tonne is 1000 kilogram).
DeclaredUnit = Literal[
    "liter",
    "kilogram",
    "cubic meter",
    "kilowatt hour",
    "megajoule",
    "ton kilometer",
    "square meter",
    "piece",
    "hour",
    "megabit second",
]

_DECIMAL_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")


def format_decimal(value: Decimal) -> str:
    """``value`` as a plain decimal string: no exponent, no trailing zeros, no ``-0``.

    >>> format_decimal(Decimal("1.2500E+3"))
    '1250'
    >>> format_decimal(Decimal("-0.000"))
    '0'
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite decimal")
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "+0", "") else text


def _parse_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite decimal")
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        # pydantic turns only ValueError into a validation error, so not TypeError here
        raise ValueError(f'expected a decimal string like "12.5", got {type(value).__name__} {value!r}')  # noqa: TRY004
    if not _DECIMAL_RE.match(value):
        raise ValueError(f"{value!r} is not a decimal string (accepted: digits with an optional sign and fraction)")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes this
        raise ValueError(f"{value!r} is not a decimal") from exc


def _schema(pattern: str, comment: str | None = None) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "format": "decimal", "pattern": pattern}
    if comment:
        schema["description"] = comment
    return WithJsonSchema(schema)


_DECIMAL_IN = BeforeValidator(_parse_decimal)
_DECIMAL_OUT = PlainSerializer(format_decimal, return_type=str, when_used="json")


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"{format_decimal(value)} is negative; accepted: >= 0")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"{format_decimal(value)} is not > 0")
    return value


def _non_positive(value: Decimal) -> Decimal:
    if value > 0:
        raise ValueError(f"{format_decimal(value)} is positive; accepted: <= 0 (removals and uptakes are negative)")
    return value


PactDecimal = Annotated[Decimal, _DECIMAL_IN, _DECIMAL_OUT, _schema(r"^[+-]?\d+(\.\d+)?$")]
PositiveOrZeroDecimal = Annotated[
    Decimal, _DECIMAL_IN, AfterValidator(_non_negative), _DECIMAL_OUT, _schema(r"^[+]?\d+(\.\d+)?$", ">= 0")
]
PositiveNonZeroDecimal = Annotated[
    Decimal,
    _DECIMAL_IN,
    AfterValidator(_positive),
    _DECIMAL_OUT,
    _schema(r"^[+]?(\d*[1-9]\d*)(\.\d+)?|(0+\.\d*[1-9]\d*)$", "> 0"),
]
NegativeOrZeroDecimal = Annotated[
    Decimal, _DECIMAL_IN, AfterValidator(_non_positive), _DECIMAL_OUT, _schema(r"^(-\d+(\.\d+)?)|0+(\.0+)?$", "<= 0")
]


_RFC3339_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> Any:
    # pydantic alone would also read numbers (and numeric strings) as Unix times, and dates with a
    # space or '_' for the 'T': the specification asks for RFC 3339 date-time strings.
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_RE.match(value)):
        return value
    raise ValueError(f"{value!r} is not an RFC 3339 date-time; accepted: e.g. '2025-01-31T00:00:00Z'")


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone; accepted: RFC 3339 with 'Z' or an offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{value.isoformat()} is outside the years 1-9999 in UTC") from None


def _format_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_as_utc),
    PlainSerializer(_format_utc, return_type=str, when_used="json"),
]


def _check_urn(value: str) -> str:
    if not re.match(r"^[uU][rR][nN]:[^:\s]+:\S+$", value):
        raise ValueError(f"{value!r} is not a URN (accepted: 'urn:<namespace>:<specific string>')")
    return value


Urn = Annotated[
    str, AfterValidator(_check_urn), WithJsonSchema({"type": "string", "format": "urn", "pattern": "^([uU][rR][nN]):"})
]


class _Wire(BaseModel):
    # Unknown properties are ignored: "a host system MUST accept ProductFootprints from later
    # revisions" and extensions travel in their own property.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class DataQualityIndicators(_Wire):
    """Data quality ratings, 1 (best) to 5, as decimal strings."""

    technologicalDQR: PactDecimal
    geographicalDQR: PactDecimal
    temporalDQR: PactDecimal

    @field_validator("technologicalDQR", "geographicalDQR", "temporalDQR")
    @classmethod
    def _in_range(cls, value: Decimal) -> Decimal:
        if not Decimal(1) <= value <= Decimal(5):
            raise ValueError(f"{format_decimal(value)} is outside 1..5")
        return value


class ProductOrSectorSpecificRule(_Wire):
    operator: Literal["PEF", "EPD International", "Other"]
    ruleNames: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    otherOperatorName: str | None = Field(default=None, min_length=1)


class EmissionFactorSource(_Wire):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)


class Verification(_Wire):
    coverage: Literal["PCF calculation model", "PCF program", "product level"] | None = None
    providerName: str | None = None
    completedAt: UtcDateTime | None = None
    standardName: str | None = None
    comments: str | None = None


class DataModelExtension(_Wire):
    specVersion: str
    dataSchema: str
    documentation: str | None = None
    data: dict[str, Any]


class CarbonFootprint(_Wire):
    """The ``pcf`` of a ProductFootprint; quantities in kg CO2e (or kg C) per declared unit."""

    declaredUnitOfMeasurement: DeclaredUnit
    declaredUnitAmount: PositiveNonZeroDecimal
    productMassPerDeclaredUnit: PactDecimal
    referencePeriodStart: UtcDateTime
    referencePeriodEnd: UtcDateTime
    geographyRegionOrSubregion: str | None = None
    geographyCountry: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    geographyCountrySubdivision: Annotated[str, Field(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$")] | None = None
    boundaryProcessesDescription: str | None = None
    pcfExcludingBiogenicUptake: PactDecimal
    pcfIncludingBiogenicUptake: PactDecimal
    fossilCarbonContent: PositiveOrZeroDecimal
    biogenicCarbonContent: PositiveOrZeroDecimal | None = None
    recycledCarbonContent: PositiveOrZeroDecimal | None = None
    fossilGhgEmissions: PositiveOrZeroDecimal
    landUseChangeGhgEmissions: PositiveOrZeroDecimal | None = None
    landCarbonLeakage: PositiveOrZeroDecimal | None = None
    landManagementFossilGhgEmissions: PositiveOrZeroDecimal | None = None
    landManagementBiogenicCO2Emissions: PositiveOrZeroDecimal | None = None
    landManagementBiogenicCO2Removals: NegativeOrZeroDecimal | None = None
    biogenicCO2Uptake: NegativeOrZeroDecimal | None = None
    biogenicNonCO2Emissions: PositiveOrZeroDecimal | None = None
    landAreaOccupation: PositiveOrZeroDecimal | None = None
    aircraftGhgEmissions: PositiveOrZeroDecimal | None = None
    packagingEmissionsIncluded: bool | None = None
    packagingGhgEmissions: PositiveOrZeroDecimal | None = None
    packagingBiogenicCarbonContent: PositiveOrZeroDecimal | None = None
    outboundLogisticsGhgEmissions: PositiveOrZeroDecimal | None = None
    technologicalCO2CaptureOrigin: str | None = None
    technologicalCO2Removals: PositiveOrZeroDecimal | None = None
    ccsTechnologicalCO2CaptureIncluded: bool | None = None
    ccsTechnologicalCO2Capture: NegativeOrZeroDecimal | None = None
    ccuCarbonContent: PositiveOrZeroDecimal | None = None
    ccuCalculationApproach: Literal["Cut-off", "Credit"] | None = None
    ccuCreditCertification: str | None = None
    ipccCharacterizationFactors: list[Annotated[str, Field(pattern=r"^AR\d+$")]] = Field(min_length=1)
    crossSectoralStandards: list[str] = Field(min_length=1)
    """Known values: ISO14067, ISO14083, ISO14040-44, GHGP-Product, PEF, PACT-1.0/2.0/3.0, PAS2050;
    later values are accepted as the specification requires."""
    productOrSectorSpecificRules: list[ProductOrSectorSpecificRule] | None = None
    exemptedEmissionsPercent: PactDecimal
    exemptedEmissionsDescription: str | None = None
    allocationRulesDescription: str | None = None
    secondaryEmissionFactorSources: list[EmissionFactorSource] | None = Field(default=None, min_length=1)
    primaryDataShare: PactDecimal | None = None
    dqi: DataQualityIndicators | None = None
    verification: Verification | None = None


class ProductFootprint(_Wire):
    """One PCF. Immutable: a changed footprint is a new ``id`` listing the old one in ``precedingPfIds``."""

    id: UUID
    specVersion: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+(-\d{8})?$")] = SPEC_VERSION
    precedingPfIds: list[UUID] | None = Field(default=None, min_length=1)
    created: UtcDateTime
    status: Literal["Active", "Deprecated"]
    validityPeriodStart: UtcDateTime | None = None
    validityPeriodEnd: UtcDateTime | None = None
    companyName: str = Field(min_length=1)
    companyIds: list[Urn] = Field(min_length=1)
    productDescription: str
    productIds: list[Urn] = Field(min_length=1)
    productClassifications: list[Urn] | None = Field(default=None, min_length=1)
    productNameCompany: str = Field(min_length=1)
    comment: str | None = None
    pcf: CarbonFootprint
    extensions: list[DataModelExtension] | None = None


class ListFootprintsResponse(_Wire):
    data: list[ProductFootprint]


class ProductFootprintResponse(_Wire):
    data: ProductFootprint


class Error(_Wire):
    """The body of every PACT error response (besides ``/auth/token``, which answers RFC 6749)."""

    code: ErrorCode
    message: str


class TokenResponse(_Wire):
    """RFC 6749 section 4.4.3 access token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    scope: str | None = None


class AuthError(_Wire):
    """RFC 6749 section 5.2 error response."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str | None = None


class FootprintFilter(_Wire):
    """The filter criteria shared by ListFootprints and RequestCreatedEvent.

    Repeated values of one criterion are alternatives (OR); different criteria must all hold
    (AND). String matches are case-insensitive.
    """

    productId: list[str] | None = None
    companyId: list[str] | None = None
    geography: list[str] | None = None
    classification: list[str] | None = None
    validOn: UtcDateTime | None = None
    validAfter: UtcDateTime | None = None
    validBefore: UtcDateTime | None = None
    status: Literal["Active", "Deprecated"] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_case(cls, value: Any) -> Any:
        # "The match must be case-insensitive."
        if isinstance(value, str):
            for known in ("Active", "Deprecated"):
                if value.lower() == known.lower():
                    return known
        return value


# --- events -----------------------------------------------------------------------------------


class CloudEvent(_Wire):
    """A CloudEvents 1.0 event in structured JSON mode, as the PACT Action Events accepts it."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: UtcDateTime
    data: dict[str, Any]


class RequestCreatedEventData(FootprintFilter):
    """Criteria of a footprint request. v2-style ``{"pf": {"productIds": [...]}}`` fragments are
    accepted too (the v3 conformance tests still send them) and read as ``productId``."""

    comment: str | None = None
    pf: dict[str, Any] | None = None


class RequestFulfilledEventData(_Wire):
    requestEventId: str = Field(min_length=1)
    pfs: list[dict[str, Any]] = Field(min_length=1)
    """The footprints; kept as JSON objects so that a receiver can store what a sender of a later
    revision sent (validate with :class:`ProductFootprint` where needed)."""


class RequestRejectedEventData(_Wire):
    requestEventId: str = Field(min_length=1)
    error: Error


class PublishedEventData(_Wire):
    pfIds: list[str] = Field(min_length=1)


_EVENT_DATA: dict[str, type[_Wire]] = {
    EVENT_PUBLISHED: PublishedEventData,
    EVENT_REQUEST_CREATED: RequestCreatedEventData,
    EVENT_REQUEST_FULFILLED: RequestFulfilledEventData,
    EVENT_REQUEST_REJECTED: RequestRejectedEventData,
}


def parse_event(body: Any) -> tuple[CloudEvent, _Wire]:
    """Validate a CloudEvent and its PACT ``data`` by event type.

    Returns
    -------
    tuple
        The envelope and the typed ``data``.

    Raises
    ------
    pydantic.ValidationError
        When the envelope or the data does not conform.
    ValueError
        When the event type is not one of :data:`EVENT_TYPES`.
    """
    event = CloudEvent.model_validate(body)
    model = _EVENT_DATA.get(event.type)
    if model is None:
        raise ValueError(f"event type {event.type!r} is not a PACT v3 event; accepted: {', '.join(EVENT_TYPES)}")
    return event, model.model_validate(event.data)


# --- published factor -> ProductFootprint ---------------------------------------------------------

#: Namespace of :func:`footprint_id` (uuid5): one PACT id per factor version.
PF_NAMESPACE = UUID("8e4f7a10-5b2c-5d3e-9f61-0c7d2a4b6e18")

#: ILCD reference unit -> (declaredUnitOfMeasurement, declaredUnitAmount, kg per declared unit or None).
#: v3.0 has no tonne, so a tonne is declared as 1000 kilogram (same quantity, same values).
DECLARED_UNITS: dict[str, tuple[str, Decimal, Decimal | None]] = {
    "kg": ("kilogram", Decimal(1), Decimal(1)),
    "t": ("kilogram", Decimal(1000), Decimal(1000)),
    "Mg": ("kilogram", Decimal(1000), Decimal(1000)),
    "g": ("kilogram", Decimal("0.001"), Decimal("0.001")),
    "kWh": ("kilowatt hour", Decimal(1), None),
    "MWh": ("kilowatt hour", Decimal(1000), None),
    "MJ": ("megajoule", Decimal(1), None),
    "GJ": ("megajoule", Decimal(1000), None),
    "m3": ("cubic meter", Decimal(1), None),
    "l": ("liter", Decimal(1), None),
    "m2": ("square meter", Decimal(1), None),
    "Item(s)": ("piece", Decimal(1), None),
    "pcs": ("piece", Decimal(1), None),
    "t*km": ("ton kilometer", Decimal(1), None),
}

#: ISO 3166-1 country -> UN geographic subregion, for the ``geography`` filter (East Asia only).
UN_SUBREGIONS: dict[str, str] = {c: "Eastern Asia" for c in ("CN", "HK", "MO", "TW", "JP", "KR", "KP", "MN")}
UN_REGIONS: dict[str, str] = {"Eastern Asia": "Asia"}

EXTENSION_SCHEMA = "https://pcf-dataspace.github.io/extensions/industry-average/1.0.0/data-model.json"


def footprint_id(factor_id: str, version: str) -> UUID:
    """The PACT id of one factor version (v3 gives every change a new id)."""
    return uuid.uuid5(PF_NAMESPACE, f"{factor_id.lower()}/{version}")


def to_decimal(value: float) -> Decimal:
    """A float as the decimal of its shortest repr (``0.1`` -> ``Decimal("0.1")``, not the binary expansion)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return Decimal(repr(float(value)))


def factor_geography(region: str) -> dict[str, str]:
    """The ``pcf`` geography properties of a region code: country, or country subdivision (finer levels cut)."""
    parts = region.strip().upper().split("-")
    if len(parts) == 1:
        return {"geographyCountry": parts[0]}
    return {"geographyCountrySubdivision": f"{parts[0]}-{parts[1]}"}


def product_footprint(
    factor: PublishedFactor,
    *,
    company_name: str,
    company_ids: list[str],
    status: Literal["Active", "Deprecated"] = "Active",
    preceding_versions: list[str] | None = None,
    extension_schema: str = EXTENSION_SCHEMA,
) -> ProductFootprint:
    """A published factor version as a PACT v3 ProductFootprint.

    The id is :func:`footprint_id` of the factor id and version; ``precedingPfIds`` are the ids
    of ``preceding_versions``. ``productIds`` carry the factor id and the product flow UUID as
    URNs (``urn:pcf-dataspace:factor:<id>``, ``urn:pcf-dataspace:flow:<uuid>``), so a recipient
    finds every version of a factor with one ``productId`` filter. Values per declared unit equal
    the factor's per reference unit (a tonne is declared as 1000 kilogram). The industry statistics
    (participants, production covered, distribution, DQR, provenance, cross-check) travel in a
    data model extension.
    """
    unit = DECLARED_UNITS.get(factor.reference_unit)
    if unit is None:
        raise ValueError(
            f"factor {factor.factor_id}: reference unit {factor.reference_unit!r} has no PACT declared unit; "
            f"accepted: {', '.join(DECLARED_UNITS)}"
        )
    uom, per_ref, mass = unit
    # factor.value is per declared_unit_amount reference units, which is the declared unit here.
    declared_amount = per_ref * to_decimal(factor.declared_unit_amount)
    total = to_decimal(factor.value)
    fossil = to_decimal(max(factor.fossil, 0.0))
    uptake = to_decimal(sum(v for g, v in factor.gases.items() if v < 0 and _is_biogenic(g)))
    excluding = total - uptake
    ind = factor.data_quality.indicators
    dqi = None
    if ind.technological and ind.geographical and ind.temporal:
        dqi = DataQualityIndicators(
            technologicalDQR=Decimal(ind.technological),
            geographicalDQR=Decimal(ind.geographical),
            temporalDQR=Decimal(ind.temporal),
        )
    prov = factor.provenance
    start = datetime.combine(factor.validity_period.start, datetime.min.time(), UTC)
    end = datetime.combine(factor.validity_period.end, datetime.max.time().replace(microsecond=0), UTC)
    ref_start = datetime.combine(factor.reference_period.start, datetime.min.time(), UTC)
    # referencePeriodEnd is exclusive: the day after the last day of the reference period.
    ref_end = datetime.combine(factor.reference_period.end, datetime.min.time(), UTC) + timedelta(days=1)
    preceding = [footprint_id(factor.factor_id, v) for v in (preceding_versions or [])]
    geography = factor_geography(factor.region)
    extension = DataModelExtension(
        specVersion="2.0.0",
        dataSchema=extension_schema,
        data={
            "factorId": factor.factor_id,
            "factorVersion": factor.version,
            "libraryLevel": factor.library_level,
            "region": factor.region,
            "dataSource": factor.data_source,
            "nParticipants": factor.n_participants,
            "productionCovered": format_decimal(to_decimal(factor.production_covered)),
            "productionUnit": factor.production_unit,
            "gwpSet": factor.gwp_set,
            "byGas": {g: format_decimal(to_decimal(v)) for g, v in factor.gases.items()},
            "distribution": {
                k: format_decimal(to_decimal(v))
                for k, v in factor.distribution.model_dump(exclude={"quantiles"}).items()
                if v is not None
            }
            | {k: format_decimal(to_decimal(v)) for k, v in factor.distribution.quantiles.items()},
            "dqr": format_decimal(to_decimal(factor.dqr)) if factor.dqr is not None else None,
            "roundId": prov.round_id,
            "specHash": prov.spec_hash,
            "protocol": prov.protocol,
            "transparencyLogEntry": prov.transparency_log_entry,
            "crossCheckAgrees": factor.cross_check.agree,
        },
    )
    pcf = CarbonFootprint(
        declaredUnitOfMeasurement=uom,  # type: ignore[arg-type]
        declaredUnitAmount=declared_amount,
        productMassPerDeclaredUnit=(mass * to_decimal(factor.declared_unit_amount)) if mass is not None else Decimal(0),
        referencePeriodStart=ref_start,
        referencePeriodEnd=ref_end,
        boundaryProcessesDescription=(
            "Cradle-to-gate. Production-weighted industry average of the participating firms' own "
            "footprints, computed by secure aggregation; upstream inputs valued with the round's "
            "background factors."
        ),
        pcfExcludingBiogenicUptake=excluding,
        pcfIncludingBiogenicUptake=total,
        fossilCarbonContent=Decimal(0),
        fossilGhgEmissions=fossil,
        biogenicNonCO2Emissions=None,
        biogenicCO2Uptake=uptake if uptake < 0 else None,
        ipccCharacterizationFactors=[factor.gwp_set],
        crossSectoralStandards=["ISO14067", "GHGP-Product", "PACT-3.0"],
        exemptedEmissionsPercent=Decimal(0),
        exemptedEmissionsDescription="",
        allocationRulesDescription="As reported by each participating firm; averaged by production.",
        secondaryEmissionFactorSources=[
            EmissionFactorSource(name=f"round {prov.round_id} background factors", version=prov.spec_hash[:16])
        ],
        primaryDataShare=to_decimal(round(factor.primary_data_share, 6)),
        dqi=dqi,
        geographyCountry=geography.get("geographyCountry"),
        geographyCountrySubdivision=geography.get("geographyCountrySubdivision"),
    )
    return ProductFootprint(
        id=footprint_id(factor.factor_id, factor.version),
        specVersion=SPEC_VERSION,
        precedingPfIds=preceding or None,
        created=factor.published_at,
        status=status,
        validityPeriodStart=start,
        validityPeriodEnd=end,
        companyName=company_name,
        companyIds=company_ids,
        productDescription=f"{factor.name.en} / {factor.name.zh}: industry average, {factor.region}",
        productIds=[f"urn:pcf-dataspace:factor:{factor.factor_id}", f"urn:pcf-dataspace:flow:{factor.product_flow}"],
        productClassifications=[
            f"urn:pact:productclassification:{_system_slug(factor.classification.system)}:{factor.classification.code}"
        ],
        productNameCompany=f"{factor.name.en} ({factor.name.zh})",
        comment=(
            f"Industry-average factor {factor.factor_id} version {factor.version} ({factor.library_level} library), "
            f"{factor.n_participants} firms, DQR {factor.dqr if factor.dqr is None else round(factor.dqr, 2)}."
        ),
        pcf=pcf,
        extensions=[extension],
    )


def _is_biogenic(gas: str) -> bool:
    return gas_origin(gas) == "biogenic"


def _system_slug(system: str) -> str:
    # "GB/T 4754-2017" -> "gb-t-4754-2017"
    return re.sub(r"[^a-z0-9]+", "-", system.lower()).strip("-")


def geography_matches(pf: ProductFootprint, wanted: str) -> bool:
    """Whether ``pf`` lies within geography ``wanted``: a UN region or subregion, a country, or a subdivision.

    A country contains its subdivisions (``CN`` finds ``CN-YN``), a subregion its countries.
    """
    w = wanted.strip().lower()
    c = pf.pcf
    place = (c.geographyCountrySubdivision or c.geographyCountry or "").upper()
    country = place.split("-")[0] if place else ""
    names = {place.lower(), country.lower()}
    sub = c.geographyRegionOrSubregion or UN_SUBREGIONS.get(country)
    if sub:
        names |= {sub.lower(), UN_REGIONS.get(sub, "").lower()}
    names.discard("")
    return w in names


def footprint_matches(pf: ProductFootprint, f: FootprintFilter) -> bool:
    """Whether ``pf`` meets every criterion of ``f`` (values of one criterion are alternatives)."""

    def any_in(wanted: list[str] | None, have: list[str] | None) -> bool:
        if not wanted:
            return True
        have_l = {h.lower() for h in have or []}
        return any(w.lower() in have_l for w in wanted)

    if not any_in(f.productId, pf.productIds) or not any_in(f.companyId, pf.companyIds):
        return False
    if not any_in(f.classification, pf.productClassifications):
        return False
    if f.geography and not any(geography_matches(pf, g) for g in f.geography):
        return False
    if f.status and pf.status != f.status:
        return False
    start, end = pf.validityPeriodStart, pf.validityPeriodEnd
    if start is None or end is None:
        # "If no validity period is specified, the ProductFootprint is valid for 3 years after the referencePeriodEnd."
        start = pf.pcf.referencePeriodEnd
        end = start.replace(year=start.year + 3)
    if f.validOn is not None and not start <= f.validOn <= end:
        return False
    if f.validAfter is not None and not start > f.validAfter:
        return False
    return f.validBefore is None or end < f.validBefore


def request_criteria(data: RequestCreatedEventData) -> FootprintFilter:
    """The filter a RequestCreatedEvent asks for; a v2-style ``pf`` fragment's ``productIds`` count as ``productId``."""
    criteria = FootprintFilter.model_validate(data.model_dump(exclude={"comment", "pf"}))
    legacy = (data.pf or {}).get("productIds")
    if isinstance(legacy, list) and legacy:
        criteria = criteria.model_copy(update={"productId": [*(criteria.productId or []), *map(str, legacy)]})
    return criteria


def response_event(
    request: CloudEvent,
    footprints: list[ProductFootprint],
    *,
    source: str,
    event_id: str,
    now: datetime,
) -> CloudEvent:
    """The answer a data owner sends back for a RequestCreatedEvent.

    A RequestFulfilledEvent with every footprint matching the request's criteria, or a
    RequestRejectedEvent with a ``NotFound`` error when none does (v3 forbids an empty
    fulfilment).

    Raises
    ------
    ValueError
        When ``request`` is not a RequestCreatedEvent.
    """
    if request.type != EVENT_REQUEST_CREATED:
        raise ValueError(f"event {request.id!r} is a {request.type}; only a {EVENT_REQUEST_CREATED} gets an answer")
    criteria = request_criteria(RequestCreatedEventData.model_validate(request.data))
    found = [pf for pf in footprints if footprint_matches(pf, criteria)]
    envelope = {"specversion": "1.0", "id": event_id, "source": source, "time": now}
    if found:
        data: dict[str, Any] = {
            "requestEventId": request.id,
            "pfs": [pf.model_dump(mode="json", exclude_none=True) for pf in found],
        }
        return CloudEvent(type=EVENT_REQUEST_FULFILLED, data=data, **envelope)  # type: ignore[arg-type]
    error = Error(code="NotFound", message="No footprint matches the request's criteria.")
    data = {"requestEventId": request.id, "error": error.model_dump()}
    return CloudEvent(type=EVENT_REQUEST_REJECTED, data=data, **envelope)  # type: ignore[arg-type]
