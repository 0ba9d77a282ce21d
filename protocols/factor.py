"""The published industry-average factor: its wire model, how a round's statistics become one, and its ILCD bundle.

A :class:`PublishedFactor` is what the association publishes after a round whose statistics
passed the disclosure rules: the production-weighted mean cradle-to-gate footprint of the product
in kg CO2e per reference unit, by gas, with the distribution over firms, a data quality rating,
the round's provenance (never a firm's identity), a cross-check of the footprint against the
aggregated inventory, and the industry-average unit process in the :mod:`lca.model` structure
(so it exports to ILCD and JSON-LD).

Identity and versions
---------------------
``factor_id`` is a UUID derived from the product's reference flow, the region and the library
level, so every round for the same product, region and level publishes a new *version* of the
same factor. Versions are ILCD data set versions counting up from ``01.00.000`` with
:func:`lca.model.bump_version`; :attr:`PublishedFactor.revision` is the same count as an integer
from 1 (``01.00.000`` is revision 1, ``01.00.001`` revision 2), the form the store keys on.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lca.model import (
    DEFAULT_VERSION,
    Bundle,
    Classification,
    DataQuality,
    Exchange,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    Process,
    Source,
    Uncertainty,
    Unit,
    UnitGroup,
    bump_version,
)
from lca.refdata import flow_property_for_unit, reference_bundle, stable_uuid
from protocols.errors import ProtocolError
from protocols.spec import RoundSpec, spec_hash
from protocols.stats import (
    OTHER_GASES,
    AggregateStatistics,
    linearity_check,
    unchecked_components,
)

__all__ = [
    "DATA_SOURCE",
    "FACTOR_NAMESPACE",
    "CrossCheck",
    "DatePeriod",
    "Distribution",
    "ExchangeStatistics",
    "FactorError",
    "GasCrossCheck",
    "LibraryLevel",
    "LocalName",
    "ProductClassification",
    "Provenance",
    "PublishedFactor",
    "QualityRating",
    "UncheckedPart",
    "build_factor",
    "default_dqi",
    "factor_bundle",
    "factor_id_for",
    "gas_origin",
    "ilcd_version",
    "pedigree_gsd",
    "revision_of",
]

#: Namespace of :func:`factor_id_for` (uuid5).
FACTOR_NAMESPACE = uuid.UUID("3b9d0c55-2f4e-5c8a-9d61-7a0e4b2c8f13")
DATA_SOURCE: Final = "industry_average_secure_aggregation"

LibraryLevel = Literal["core", "industry", "regional"]

_ILCD_VERSION_RE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{3})$")


class FactorError(ProtocolError, ValueError):
    """A factor cannot be built from the given statistics (suppressed round, missing statistic, bad version)."""


# --------------------------------------------------------------------------------------- versions


def revision_of(version: str) -> int:
    """The publication count of an ILCD version: ``01.00.000`` -> 1, ``01.00.001`` -> 2, ``01.01.000`` -> 1001.

    Raises
    ------
    FactorError
        When ``version`` is not ``01.NN.NNN`` (factors start at ``01.00.000``).
    """
    m = _ILCD_VERSION_RE.match(version.strip())
    if m is None or m.group(1) != "01":
        raise FactorError(f"factor version {version!r}: accepted: an ILCD version '01.NN.NNN' (e.g. '01.00.000')")
    return int(m.group(2)) * 1000 + int(m.group(3)) + 1


def ilcd_version(revision: int) -> str:
    """The ILCD version of the ``revision``-th publication (inverse of :func:`revision_of`)."""
    if not 1 <= revision <= 100_000:
        raise FactorError(f"factor revision {revision}: accepted: 1 to 100000")
    k = revision - 1
    return f"01.{k // 1000:02d}.{k % 1000:03d}"


def factor_id_for(reference_flow: str, region: str, library_level: str) -> str:
    """The stable factor UUID of a product (its reference flow UUID), region and library level."""
    key = f"{reference_flow.strip().lower()}|{region.strip().upper()}|{library_level}"
    return str(uuid.uuid5(FACTOR_NAMESPACE, key))


# ------------------------------------------------------------------------------------------ model


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalName(_Wire):
    zh: str
    en: str

    def get(self, lang: str) -> str:
        """The name in ``lang`` (``zh`` or ``en``), falling back to the other."""
        return self.zh if lang == "zh" else self.en


class DatePeriod(_Wire):
    """A closed period of days, written ``2025-01-01/2025-12-31`` (ISO 8601 interval)."""

    start: date
    end: date

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> DatePeriod:
        start, sep, end = text.partition("/")
        if not sep:
            raise FactorError(f"period {text!r}: accepted: 'YYYY-MM-DD/YYYY-MM-DD'")
        return cls(start=date.fromisoformat(start), end=date.fromisoformat(end))

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


class ProductClassification(_Wire):
    system: str = "GB/T 4754-2017"
    code: str


class Distribution(_Wire):
    """The footprint over the participating firms, kg CO2e per reference unit."""

    weighted_mean: float
    mean: float | None = None
    sd: float | None = None
    """Unweighted population SD over firms."""
    weighted_sd: float | None = None
    gsd: float | None = None
    """Lognormal geometric SD matched to the weighted mean and weighted SD."""
    quantiles: dict[str, float] = Field(default_factory=dict)
    """``p5`` .. ``p95`` interpolated in the round's histogram (exact to the bin width)."""
    pedigree_gsd: float | None = None
    """Lognormal GSD of the factor from its data quality indicators (ecoinvent's pedigree approach,
    :func:`pedigree_gsd`): the uncertainty a round gives without any firm's individual value, so
    also in rounds too small for a spread over firms (``protocols.disclosure``)."""


class QualityRating(_Wire):
    """The data quality rating (PEF DQR) and the indicators it is computed from (1 best .. 5)."""

    dqr: float | None
    level: str | None
    indicators: DataQuality


class Provenance(_Wire):
    """Where the factor comes from; names the round, never a participant."""

    round_id: str
    spec_hash: str
    n_participants: int
    protocol: str
    transparency_log_entry: str | None = None
    """Hash of the transparency-log entry that records the round's result."""
    supersedes: str | None = None
    """The version this one replaces."""


class GasCrossCheck(_Wire):
    gas: str
    reported: float
    predicted: float
    residual: float


class UncheckedPart(_Wire):
    """A component the cross-check leaves out (see :func:`protocols.stats.unchecked_components`)."""

    flow: str
    name: LocalName
    reason: Literal["withheld", "firm_specific_background"]
    nominal: float | None = None
    """kg CO2e per reference unit it would add at the round's nominal background (``None`` when withheld)."""
    note: str


class CrossCheck(_Wire):
    """The weighted-mean footprint against the one the aggregated inventory implies.

    ``from_inventory = Σ_j mean_w(x_j) × Σ_g background_factor_jg`` over the checkable components,
    with direct emissions as components whose background factor is their GWP; ``from_footprints``
    is the weighted mean of the firms' own footprints. Both are linear in the firms' data, so they
    agree to rounding when every firm computed its footprint from the components with the
    round's background; a larger difference means firms used other background data or other
    boundaries.

    Components whose background differs between firms (a component with aliases, e.g. every
    grid's electricity) and withheld components are left out of ``from_inventory`` and listed in
    ``unchecked``: their emissions stay in ``difference``, so agreement cannot be decided and
    ``agree`` is ``None``; ``note`` says so.
    """

    from_inventory: float
    from_footprints: float
    difference: float
    """from_footprints - from_inventory, kg CO2e per reference unit."""
    relative_difference: float
    """|difference| / |from_footprints| (0 when both are 0)."""
    tolerance: float
    agree: bool | None
    """Whether the difference is within tolerance; ``None`` when part of the footprint is not checkable."""
    by_gas: list[GasCrossCheck] = Field(default_factory=list)
    unchecked: list[UncheckedPart] = Field(default_factory=list)
    note: str | None = None


class ExchangeStatistics(_Wire):
    """The statistics behind one exchange of the industry-average unit process (the extension)."""

    internal_id: str
    flow: str
    name: LocalName
    direction: Literal["input", "output"]
    unit: str
    """Per reference unit, e.g. ``kWh/t``."""
    weighted_mean: float | None
    mean: float | None
    """Unweighted mean over firms."""
    weighted_sd: float | None
    gsd: float | None
    n: int
    production_covered: float


class PublishedFactor(_Wire):
    """One published version of an industry-average product carbon footprint factor."""

    factor_id: str
    version: str = DEFAULT_VERSION
    name: LocalName
    product_flow: str
    """UUID of the product's reference flow."""
    classification: ProductClassification
    library_level: LibraryLevel
    region: str
    """ISO 3166-1 (``CN``) or ISO 3166-2 (``CN-YN``) code, or finer (``CN-YN-KM``)."""
    reference_unit: str
    declared_unit_amount: float = 1.0
    value: float
    """kg CO2e per ``declared_unit_amount`` reference units (the production-weighted mean)."""
    unit: str
    """``value``'s unit, e.g. ``kgCO2e/t``."""
    gwp_set: str
    gases: dict[str, float]
    """kg CO2e per reference unit by gas (or by the round's aggregates). Gases fewer than
    ``min_participants`` firms emit are merged, with one complementary gas, into
    ``"other gases"`` (:data:`protocols.stats.OTHER_GASES`; see :mod:`protocols.stats`)."""
    fossil: float
    biogenic: float
    distribution: Distribution
    system_boundary: Literal["cradle-to-gate"] = "cradle-to-gate"
    reference_period: DatePeriod
    validity_period: DatePeriod
    data_quality: QualityRating
    primary_data_share: float
    """Percent of ``value`` from the firms' own direct emissions (the rest comes from background factors)."""
    data_source: Literal["industry_average_secure_aggregation"] = DATA_SOURCE
    n_participants: int
    production_covered: float
    production_unit: str
    provenance: Provenance
    cross_check: CrossCheck
    published_at: datetime
    unit_process: Process
    exchange_statistics: list[ExchangeStatistics]
    flows: list[Flow]
    flow_properties: list[FlowProperty]
    unit_groups: list[UnitGroup]
    sources: list[Source] = Field(default_factory=list)

    @field_validator("factor_id", "product_flow")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        revision_of(value)
        return value

    @field_validator("published_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("published_at must carry a time zone")
        return value.astimezone(UTC)

    @property
    def revision(self) -> int:
        """The publication count, from 1 (see the module docstring)."""
        return revision_of(self.version)

    @property
    def dqr(self) -> float | None:
        return self.data_quality.dqr


# ------------------------------------------------------------------------------------------ build


def gas_origin(gas: str) -> Literal["fossil", "biogenic"]:
    """Whether a footprint gas (or aggregate) of a round counts as biogenic or fossil.

    Biogenic when the name says so (``biogenic``, ``CO2_biogenic``, ``CH4 (biogenic)``,
    ``non-fossil``); every other species, and the ``fossil`` aggregate, is fossil.
    """
    name = gas.lower()
    if "biogenic" in name or "non-fossil" in name or "nonfossil" in name or name.endswith(("_bio", "-bio")):
        return "biogenic"
    return "fossil"


#: Variance of the log of the pedigree uncertainty factors, per indicator score 1..5 (Weidema et al.,
#: *Overview and methodology. Data quality guideline for the ecoinvent database version 3*, 2013,
#: the pedigree matrix); ``precision`` plays the pedigree's reliability.
PEDIGREE_VARIANCES: dict[str, tuple[float, ...]] = {
    "precision": (0.0, 0.0006, 0.002, 0.008, 0.04),
    "completeness": (0.0, 0.0001, 0.0006, 0.002, 0.008),
    "temporal": (0.0, 0.0002, 0.002, 0.008, 0.04),
    "geographical": (0.0, 0.000025, 0.0001, 0.0004, 0.0016),
    "technological": (0.0, 0.0006, 0.008, 0.04, 0.12),
}
#: Basic uncertainty (variance of the log) ecoinvent gives energy demand and CO2 exchanges (same guideline).
PEDIGREE_BASIC_VARIANCE = 0.0006
#: The reliability a round's primary data get when no precision indicator was computed: "verified data
#: partly based on assumptions, or non-verified data based on measurements" (score 2).
_DEFAULT_RELIABILITY = 2


def pedigree_gsd(dq: DataQuality) -> float:
    """``exp(sqrt(basic + Σ indicator variances))``: the pedigree GSD of a value with quality ``dq``.

    An indicator that is not given counts as score 1, except ``precision``, which counts as 2
    (primary data whose spread the round did not compute).
    """
    scores = dq.indicators()
    scores.setdefault("precision", _DEFAULT_RELIABILITY)
    variance = PEDIGREE_BASIC_VARIANCE + math.fsum(PEDIGREE_VARIANCES[k][v - 1] for k, v in scores.items())
    return math.exp(math.sqrt(variance))


def default_dqi(spec: RoundSpec, stats: AggregateStatistics) -> DataQuality:
    """Data quality indicators of an industry average from secure aggregation, when the association gives none.

    * technological, geographical, temporal = 1: every firm reports its own process data for the
      round's product, in the round's region, for the round's reference period;
    * completeness from the number of firms (the round does not know the region's total
      production): >= 20 -> 1, >= 10 -> 2, >= 5 -> 3, >= 3 -> 4, else 5;
    * precision from the coefficient of variation of the footprint over firms (weighted SD /
      weighted mean): <= 10 % -> 1, <= 20 % -> 2, <= 30 % -> 3, <= 50 % -> 4, else 5; absent when
      the round did not compute the weighted SD.
    """
    n = stats.n
    completeness = 1 if n >= 20 else 2 if n >= 10 else 3 if n >= 5 else 4 if n >= 3 else 5
    precision: int | None = None
    fp = stats.footprint
    if fp.weighted_sd is not None and fp.weighted_mean:
        cv = abs(fp.weighted_sd / fp.weighted_mean)
        precision = 1 if cv <= 0.1 else 2 if cv <= 0.2 else 3 if cv <= 0.3 else 4 if cv <= 0.5 else 5
    return DataQuality(technological=1, geographical=1, temporal=1, completeness=completeness, precision=precision)


def _default_validity(period: DatePeriod) -> DatePeriod:
    """As long as the reference period, from the day after it: a 2024 reference year gives
    2025-01-01/2025-12-31, July 2023 to June 2024 gives July 2024 to June 2025. A reference period
    of whole months is shifted by months; any other by its number of days."""
    start = period.end + timedelta(days=1)
    whole_months = period.start.day == 1 and start.day == 1
    if whole_months:
        months = (start.year - period.start.year) * 12 + start.month - period.start.month
        year, month = divmod(start.month - 1 + months, 12)
        return DatePeriod(start=start, end=date(start.year + year, month + 1, 1) - timedelta(days=1))
    return DatePeriod(start=start, end=start + (period.end - period.start))


def _exchange_comment(c: Any, stats_unit: str) -> dict[str, str]:
    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.6g}"

    en = (
        f"Industry average over {c.n} firms (production covered {num(c.production)}). "
        f"Amount: production-weighted mean. Unweighted mean {num(c.mean)} {stats_unit}; "
        f"weighted SD {num(c.weighted_sd)}; lognormal GSD {num(c.gsd)}."
    )
    zh = (
        f"{c.n} 家企业的行业平均（覆盖产量 {num(c.production)}）。数量为产量加权平均值；"
        f"算术平均 {num(c.mean)} {stats_unit}；加权标准差 {num(c.weighted_sd)}；对数正态几何标准差 {num(c.gsd)}。"
    )
    return {"en": en, "zh": zh}


def _unit_datasets(unit: str, ref: Bundle) -> tuple[FlowProperty, UnitGroup]:
    fp_uuid = flow_property_for_unit(unit)
    if fp_uuid is not None:
        prop = ref.flow_properties[fp_uuid]
        return prop, ref.unit_groups[prop.unit_group]
    # A unit the reference data lacks gets its own group, so the export stays referentially closed.
    ug = UnitGroup(
        uuid=stable_uuid("unit group", unit),
        name={"en": f"Units of {unit}", "zh": f"{unit} 单位"},
        units=[Unit(name=unit, factor=1.0)],
        reference_unit=unit,
    )
    prop = FlowProperty(uuid=stable_uuid("flow property", unit), name={"en": unit, "zh": unit}, unit_group=ug.uuid)
    return prop, ug


def build_factor(
    spec: RoundSpec,
    stats: AggregateStatistics,
    version: str | int | None = None,
    previous: PublishedFactor | None = None,
    library_level: LibraryLevel = "industry",
    dqi: DataQuality | None = None,
    *,
    validity: DatePeriod | None = None,
    log_entry_hash: str | None = None,
    known_flows: Bundle | None = None,
    tolerance: float = 0.01,
    now: datetime | None = None,
) -> PublishedFactor:
    """Turn a round's published statistics into a factor version.

    Parameters
    ----------
    spec, stats
        The round spec and its statistics; ``stats`` must belong to ``spec`` (same spec hash) and
        must have passed the disclosure rules.
    version
        The ILCD version (``"01.00.002"``) or revision number (3) of this publication; ``None``:
        the version after ``previous``, or ``01.00.000`` without one.
    previous
        The factor's current version, if any: it must have the same factor id and a lower
        version; the new version records it in ``provenance.supersedes``.
    library_level
        ``core``, ``industry`` or ``regional``; part of the factor's identity.
    dqi
        Data quality indicators; :func:`default_dqi` when ``None``.
    validity
        Validity period; by default as long as the reference period, starting the day after it.
    log_entry_hash
        Hash of the transparency-log entry recording the round's result.
    known_flows
        Flows (with their flow properties and unit groups) to use for components whose flow UUID
        they hold, e.g. the ILCD reference elementary flows; others are described from the spec.
    tolerance
        Largest relative difference at which the cross-check still agrees.
    now
        Publication time (UTC now by default).

    Raises
    ------
    FactorError
        Suppressed statistics, statistics of another spec, no weighted-mean footprint, or a
        version that is malformed or not after ``previous``.
    """
    if stats.spec_hash != spec_hash(spec):
        raise FactorError(
            f"statistics of round {stats.round_id!r} (spec {stats.spec_hash[:12]}) do not belong to "
            f"spec {spec.round_id!r} ({spec_hash(spec)[:12]})"
        )
    if not stats.disclosure.publish:
        raise FactorError(
            f"round {spec.round_id!r} may not be published ({stats.disclosure.rule}): {stats.disclosure.message}"
        )
    fp = stats.footprint
    if fp.weighted_mean is None or fp.weighted_mean_by_gas is None:
        raise FactorError(
            f"round {spec.round_id!r} did not compute 'footprint_weighted_mean'; a factor's value is that statistic"
        )
    fid = factor_id_for(spec.product.reference_flow, spec.region, library_level)
    if previous is not None and previous.factor_id != fid:
        raise FactorError(f"previous factor {previous.factor_id} is not this product/region/level's factor {fid}")
    if version is None:
        version = bump_version(previous.version) if previous is not None else DEFAULT_VERSION
    elif isinstance(version, int):
        version = ilcd_version(version)
    revision = revision_of(version)
    if previous is not None and revision <= previous.revision:
        raise FactorError(f"version {version} is not after the previous version {previous.version}")

    when = (now or datetime.now(UTC)).astimezone(UTC)
    reference = DatePeriod(start=spec.reference_period.start, end=spec.reference_period.end)
    validity = validity or _default_validity(reference)
    indicators = dqi or default_dqi(spec, stats)

    # Cross-check by linearity, per gas and in total.
    checks = linearity_check(spec, stats)
    by_gas = [GasCrossCheck(gas=c.gas, reported=c.reported, predicted=c.predicted, residual=c.residual) for c in checks]
    from_fp = fp.weighted_mean
    from_inv = math.fsum(c.predicted for c in checks) if checks else float("nan")
    diff = from_fp - from_inv
    rel = 0.0 if from_fp == 0 and from_inv == 0 else abs(diff) / max(abs(from_fp), abs(from_inv))
    unchecked = [
        UncheckedPart(
            flow=u.flow, name=LocalName(zh=u.name_zh, en=u.name_en), reason=u.reason, nominal=u.nominal, note=u.note
        )
        for u in unchecked_components(spec, stats)
    ]
    note = None
    if unchecked:
        label = {"withheld": "withheld", "firm_specific_background": "firm-specific background, not checkable"}
        names = "; ".join(f"{u.name.en} ({label[u.reason]})" for u in unchecked)
        note = (
            f"Checked over the components with the round's uniform background only; not checkable: {names}. "
            "Their emissions are part of the difference, so agreement is not decided."
        )
    cross = CrossCheck(
        from_inventory=from_inv,
        from_footprints=from_fp,
        difference=diff,
        relative_difference=rel,
        tolerance=tolerance,
        agree=None if unchecked else bool(checks) and rel <= tolerance,
        by_gas=by_gas,
        unchecked=unchecked,
        note=note,
    )

    # "other gases" (the gas-level rule's merged sum) counts as fossil: splitting it by origin would
    # separate the withheld gases again (protocols.stats module docstring).
    fossil = math.fsum(v for g, v in fp.weighted_mean_by_gas.items() if gas_origin(g) == "fossil")
    biogenic = math.fsum(v for g, v in fp.weighted_mean_by_gas.items() if gas_origin(g) == "biogenic")

    # Direct emissions (output components) are the firms' own data; inputs are valued with
    # the round's background factors, which are secondary data.
    means = {c.flow: c.weighted_mean for c in stats.components}
    direct = math.fsum(
        (means.get(c.flow) or 0.0) * sum(spec.background_factors.get(c.flow, {}).values())
        for c in spec.components
        if c.direction == "output"
    )
    primary_share = 100.0 * direct / from_fp if from_fp else 0.0
    primary_share = min(max(primary_share, 0.0), 100.0)

    name = LocalName(zh=spec.product.name_zh, en=spec.product.name_en)
    ref = reference_bundle()
    known = known_flows or Bundle()
    flows: dict[str, Flow] = {}
    props: dict[str, FlowProperty] = {}
    groups: dict[str, UnitGroup] = {}

    def describe_flow(uuid_: str, names: dict[str, str], unit: str, flow_type: str, **extra: Any) -> Flow:
        for source in (known, ref):
            found = source.flows.get(uuid_)
            if found is not None:
                for p in found.properties:
                    prop = source.flow_properties.get(p.flow_property) or ref.flow_properties.get(p.flow_property)
                    if prop is not None:
                        props[prop.uuid] = prop
                        group = source.unit_groups.get(prop.unit_group) or ref.unit_groups.get(prop.unit_group)
                        if group is not None:
                            groups[group.uuid] = group
                flows[uuid_] = found
                return found
        prop, group = _unit_datasets(unit, ref)
        props[prop.uuid], groups[group.uuid] = prop, group
        flow = Flow(
            uuid=uuid_,
            name=names,
            flow_type=flow_type,  # type: ignore[arg-type]
            properties=[FlowPropertyFactor(flow_property=prop.uuid, factor=1.0, reference=True)],
            **extra,
        )
        flows[uuid_] = flow
        return flow

    classification = Classification(system=spec.product.classification_system, code=spec.product.classification_code)
    describe_flow(
        spec.product.reference_flow,
        {"en": spec.product.name_en, "zh": spec.product.name_zh},
        spec.reference_unit,
        "product",
        classifications=[classification],
        location=spec.region,
    )
    source = Source(
        uuid=stable_uuid("source", "round", spec.round_id),
        name={
            "en": f"Secure aggregation round {spec.round_id}",
            "zh": f"安全聚合轮次 {spec.round_id}",
        },
        citation=f"pcf-dataspace round {spec.round_id}, spec {stats.spec_hash}",
    )

    exchanges = [
        Exchange(
            internal_id="0",
            flow=spec.product.reference_flow,
            direction="output",
            amount=1.0,
            unit=spec.reference_unit,
            data_source="primary",
        )
    ]
    ex_stats: list[ExchangeStatistics] = []
    by_flow = {c.flow: c for c in stats.components}
    for i, comp in enumerate(spec.components, start=1):
        c = by_flow.get(comp.flow)
        if c is None or c.withheld:  # too few reporters: the component rule keeps it out (protocols.stats)
            continue
        amount = c.weighted_mean if c.weighted_mean is not None else c.mean
        if amount is None:
            continue
        # Output components are the firms' direct emissions: elementary flows to air.
        flow_type = "elementary" if comp.direction == "output" else "product"
        extra: dict[str, Any] = {}
        if flow_type == "elementary":
            extra["compartment"] = ["Emissions", "Emissions to air", "Emissions to air, unspecified"]
        describe_flow(comp.flow, {"en": comp.name_en, "zh": comp.name_zh}, comp.unit, flow_type, **extra)
        uncertainty = None
        if c.gsd is not None or c.weighted_sd is not None:
            uncertainty = Uncertainty(
                distribution="lognormal" if c.gsd is not None else "normal",
                geosd=c.gsd,
                sd=c.weighted_sd,
            )
        internal_id = str(i)
        exchanges.append(
            Exchange(
                internal_id=internal_id,
                flow=comp.flow,
                direction=comp.direction,
                amount=amount,
                unit=comp.unit,
                data_source="primary",
                uncertainty=uncertainty,
                comment=_exchange_comment(c, c.unit),
            )
        )
        ex_stats.append(
            ExchangeStatistics(
                internal_id=internal_id,
                flow=comp.flow,
                name=LocalName(zh=comp.name_zh, en=comp.name_en),
                direction=comp.direction,
                unit=c.unit,
                weighted_mean=c.weighted_mean,
                mean=c.mean,
                weighted_sd=c.weighted_sd,
                gsd=c.gsd,
                n=c.n,
                production_covered=c.production,
            )
        )

    unit_str = f"kgCO2e/{spec.reference_unit}"
    pct = f"{float(spec.p_rule) * 100:g} %"
    withheld = [c for c in stats.components if c.withheld_by == "reporters"]
    dominated = [c for c in stats.components if c.withheld_by == "dominance"]
    withheld_en = withheld_zh = ""
    if dominated:
        withheld_en = (
            f" Not listed as exchanges (withheld by the {pct}-rule: one firm's share is too large): "
            + "; ".join(c.name_en for c in dominated)
            + "; their emissions are included in the footprint."
        )
        withheld_zh = (
            f"未列为交换（按 {pct} 规则不予披露：单一企业占比过大）："
            + "；".join(c.name_zh for c in dominated)
            + "；其排放已计入碳足迹。"
        )
    if withheld:
        withheld_en += (
            f" Not listed as exchanges (reported by fewer than {spec.min_participants} firms, withheld): "
            + "; ".join(c.name_en for c in withheld)
            + "; their emissions are included in the footprint."
        )
        withheld_zh += (
            f"未列为交换（报告企业少于 {spec.min_participants} 家，不予披露）："
            + "；".join(c.name_zh for c in withheld)
            + "；其排放已计入碳足迹。"
        )
    if fp.merged_gases and not fp.withheld_gases:  # a gas's cell failed the p %-rule: every gas merged
        withheld_en += (
            f" No gas is shown on its own (the {pct}-rule: one firm's share of a gas is too large); the footprint "
            "includes every gas."
        )
        withheld_zh += f"按 {pct} 规则（单一企业占某气体比例过大）不分气体披露；碳足迹包含全部气体。"
    elif fp.merged_gases:
        few, merged = ", ".join(fp.withheld_gases), ", ".join(fp.merged_gases)
        withheld_en += (
            f" Gases emitted by fewer than {spec.min_participants} firms ({few}) are not shown by gas: "
            f"{merged} are shown together as '{OTHER_GASES}'; the footprint includes them."
        )
        withheld_zh += (
            f"排放企业少于 {spec.min_participants} 家的气体（{few}）不分气体披露：{merged} 合并列为"
            f"“{OTHER_GASES}”；碳足迹已包含其排放。"
        )
    description = {
        "en": (
            f"Industry-average cradle-to-gate carbon footprint of {spec.product.name_en} in {spec.region}, "
            f"{reference}: production-weighted mean over {stats.n} firms computed by secure aggregation "
            f"({spec.footprint.gwp_set} GWP100): {from_fp:.6g} {unit_str}.{withheld_en}"
        ),
        "zh": (
            f"{spec.region} {spec.product.name_zh}行业平均从摇篮到大门碳足迹（{reference}）：{stats.n} 家企业经安全聚合"
            f"计算的产量加权平均值（{spec.footprint.gwp_set} GWP100）：{from_fp:.6g} {unit_str}。{withheld_zh}"
        ),
    }
    process = Process(
        uuid=fid,
        version=version,
        name={
            "en": f"{spec.product.name_en}; industry average; {spec.region}",
            "zh": f"{spec.product.name_zh}；行业平均；{spec.region}",
        },
        description=description,
        classifications=[classification],
        process_type="unit",
        location=spec.region,
        reference_year=reference.start.year,
        valid_until=validity.end.year,
        reference_exchanges=["0"],
        exchanges=exchanges,
        data_quality=indicators,
        sources=[source.uuid],
        technology={
            "en": f"Average of the technologies of {stats.n} participating firms (identities not disclosed).",
            "zh": f"{stats.n} 家参与企业技术的平均（不披露企业身份）。",
        },
        annual_production=stats.production,
    )
    distribution = Distribution(
        weighted_mean=from_fp,
        mean=fp.mean,
        sd=fp.sd,
        weighted_sd=fp.weighted_sd,
        gsd=fp.gsd,
        quantiles=dict(fp.quantiles or {}),
        pedigree_gsd=pedigree_gsd(indicators),
    )
    return PublishedFactor(
        factor_id=fid,
        version=version,
        name=name,
        product_flow=spec.product.reference_flow,
        classification=ProductClassification(
            system=spec.product.classification_system, code=spec.product.classification_code
        ),
        library_level=library_level,
        region=spec.region,
        reference_unit=spec.reference_unit,
        declared_unit_amount=1.0,
        value=from_fp,
        unit=unit_str,
        gwp_set=spec.footprint.gwp_set,
        gases=dict(fp.weighted_mean_by_gas),
        fossil=fossil,
        biogenic=biogenic,
        distribution=distribution,
        reference_period=reference,
        validity_period=validity,
        data_quality=QualityRating(dqr=indicators.dqr(), level=indicators.dqr_level(), indicators=indicators),
        primary_data_share=primary_share,
        n_participants=stats.n,
        production_covered=stats.production,
        production_unit=spec.weight.unit,
        provenance=Provenance(
            round_id=spec.round_id,
            spec_hash=stats.spec_hash,
            n_participants=stats.n,
            protocol=spec.protocol,
            transparency_log_entry=log_entry_hash,
            supersedes=previous.version if previous is not None else None,
        ),
        cross_check=cross,
        published_at=when,
        unit_process=process,
        exchange_statistics=ex_stats,
        flows=list(flows.values()),
        flow_properties=list(props.values()),
        unit_groups=list(groups.values()),
        sources=[source],
    )


def factor_bundle(factor: PublishedFactor) -> Bundle:
    """The factor's unit process with every flow, flow property, unit group and source it refers to.

    The bundle is referentially closed, ready for :func:`lca.io.ilcd.write_ilcd` and
    :func:`lca.io.jsonld.write_jsonld`.
    """
    bundle = Bundle()
    for ds in (*factor.unit_groups, *factor.flow_properties, *factor.flows, *factor.sources):
        bundle.add(ds)
    bundle.add(factor.unit_process)
    return bundle
