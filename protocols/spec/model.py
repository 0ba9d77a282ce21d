"""The round spec's model: what a round aggregates and how, fixed before any firm contributes; and its canonical bytes.

A :class:`RoundSpec` fixes, before any firm contributes, the product, region and period, the ordered
components each firm reports per reference unit, the fixed-point scales and plausibility bounds,
the footprint's gases and histogram, the background factors, the statistics, the disclosure rules
and the aggregation protocol; :func:`structural_problems` lists what is inconsistent across fields.

The spec is identified by :func:`spec_hash`, the SHA-256 of :func:`canonical_bytes` (the canonical
encoding of :mod:`protocols.canonical`), which contributions and results name.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from protocols.canonical import Kind, encode
from protocols.errors import SpecError

__all__ = [
    "ALL_STATISTICS",
    "CN_SUBDIVISIONS",
    "DEFAULT_STATISTICS",
    "Component",
    "Footprint",
    "PaillierParams",
    "Product",
    "ReferencePeriod",
    "RoundSpec",
    "SecAggParams",
    "Statistic",
    "Weight",
    "canonical_bytes",
    "fmt_number",
    "spec_hash",
    "structural_problems",
]

# --------------------------------------------------------------------------------------- vocabulary

Statistic = Literal[
    "weighted_mean",
    "mean",
    "weighted_sd",
    "gsd",
    "footprint_weighted_mean",
    "footprint_mean",
    "footprint_sd",
    "footprint_weighted_sd",
    "footprint_quantiles",
]
#: Every statistic, in the order they are reported.
ALL_STATISTICS: tuple[Statistic, ...] = get_args(Statistic)
#: The statistics a round computes unless its spec says otherwise: the linear ones, whose sums are
#: the published totals themselves (``protocols.disclosure`` counts what each statistic reveals).
DEFAULT_STATISTICS: tuple[Statistic, ...] = ("weighted_mean", "footprint_weighted_mean")

#: ISO 3166-2:CN subdivision codes (as revised in 2017: letters, not the former numbers).
CN_SUBDIVISIONS = frozenset(
    ["AH", "BJ", "CQ", "FJ", "GD", "GS", "GX", "GZ", "HA", "HB", "HE", "HI", "HK", "HL", "HN", "JL", "JS",
     "JX", "LN", "MO", "NM", "NX", "QH", "SC", "SD", "SH", "SN", "SX", "TJ", "TW", "XJ", "XZ", "YN", "ZJ"]
)  # fmt: skip

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# ISO 3166-1 alpha-2, then ISO 3166-2-like subdivisions (1-3 characters), then finer levels.
_REGION_RE = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3}(?:-[A-Z0-9]{1,12})*)?$")
# GB/T 4754-2017: section letter A-T, division (2 digits), group (3), class (4); letter optional.
_GBT4754_RE = re.compile(r"^(?:[A-T]|[A-T]?\d{2,4})$")
_GAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.()+-]{0,31}$")
_ROUND_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Scale = Annotated[int, Field(gt=0, le=10**15)]
"""A fixed-point scale; at most 10**15 so that the canonical encoding (RFC 8785) carries it exactly (< 2**53)."""


def _check_uuid(value: str) -> str:
    value = value.strip().lower()
    if not _UUID_RE.match(value):
        raise ValueError(f"{value!r} is not a UUID; accepted: 8-4-4-4-12 hexadecimal digits")
    return value


def fmt_number(value: float | Fraction) -> str:
    """A number for messages and slot names: integers without '.0', others by repr."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        value = float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------- models


class Product(_Model):
    """The product of the round and its reference flow."""

    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    classification_code: str
    """GB/T 4754-2017 code of the industry, e.g. ``"3216"`` (aluminium smelting) or ``"C3216"``."""
    classification_system: str = "GB/T 4754-2017"
    reference_flow: str
    """UUID of the reference product flow."""

    @field_validator("classification_code")
    @classmethod
    def _check_code(cls, value: str) -> str:
        value = value.strip().upper()
        if not _GBT4754_RE.match(value):
            raise ValueError(
                f"classification code {value!r} is not GB/T 4754; accepted: a section letter A-T "
                "and/or a 2-4 digit code, e.g. '3216' or 'C3216'"
            )
        return value

    @field_validator("reference_flow")
    @classmethod
    def _check_flow(cls, value: str) -> str:
        return _check_uuid(value)


class ReferencePeriod(_Model):
    """The period the firms' data must describe (both ends included)."""

    start: date
    end: date


class Component(_Model):
    """One process flow every firm reports per reference unit of product, e.g. alumina in t per t."""

    flow: str
    """UUID of the flow."""
    name_en: str = Field(min_length=1, max_length=120)
    name_zh: str = Field(min_length=1, max_length=120)
    direction: Literal["input", "output"]
    unit: str = Field(min_length=1)
    """Unit of the flow amount; the value is in this unit per reference unit of product."""
    scale: Scale
    """Fixed-point scale: the slot integer is ``round(value * scale)``."""
    bound: PositiveFloat
    """Plausibility upper bound of ``|value|`` per reference unit; larger values are refused, never clipped."""
    allow_negative: bool = False
    aliases: list[str] = Field(default_factory=list)
    """Other flow UUIDs a node maps into this component: the value is the sum of the component's
    flow and its aliases, each converted to ``unit``. E.g. every provincial grid's electricity flow
    in one electricity component, so that a firm's choice of grid is not a component of its own.
    The backgrounds of the aliases may differ between firms (see :func:`protocols.stats.linearity_check`).
    Left out of the canonical bytes when empty, so specs without aliases keep their hash."""

    @field_validator("flow")
    @classmethod
    def _check_flow(cls, value: str) -> str:
        return _check_uuid(value)

    @field_validator("aliases")
    @classmethod
    def _check_aliases(cls, value: list[str]) -> list[str]:
        return [_check_uuid(v) for v in value]

    @model_serializer(mode="wrap")
    def _omit_empty_aliases(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.aliases:
            data.pop("aliases", None)
        return data

    @property
    def flows(self) -> tuple[str, ...]:
        """The component's flow, then its aliases."""
        return (self.flow, *self.aliases)


class Weight(_Model):
    """The weight of a firm in weighted statistics: its annual production of the product."""

    name: str = "annual production"
    name_zh: str = "年产量"
    unit: str = "t"
    scale: Scale = 1
    bound: PositiveFloat = 1e7
    """Plausibility upper bound of one firm's production in ``unit``."""


class Footprint(_Model):
    """The firm's cradle-to-gate footprint per reference unit, split by gas, in kg CO2e."""

    gases: list[str] = Field(min_length=1)
    """Species (``"CO2"``, ``"CH4"``, ``"N2O"``, ``"CF4"`` ...) or aggregates (``"fossil"``, ``"biogenic"``)."""
    gwp_set: Literal["AR5", "AR6"]
    unit: str = "kg CO2e"
    scale: Scale = 1000
    bound: PositiveFloat
    """Plausibility bound of ``|F|`` and of each ``|F_g|`` per reference unit."""
    allow_negative: bool = False
    """Whether a gas (e.g. biogenic CO2 with removals) or the total may be negative."""
    histogram_edges: list[FiniteFloat] = Field(min_length=2)
    """Increasing bin edges in kg CO2e per reference unit; bins are ``[e_i, e_i+1)``, the last closed.

    They must cover every admissible footprint: first edge <= 0 (or <= -bound when negatives are
    allowed), last edge >= bound, so every contribution lands in exactly one bin."""

    @field_validator("gases")
    @classmethod
    def _check_gases(cls, value: list[str]) -> list[str]:
        for gas in value:
            if not _GAS_RE.match(gas):
                raise ValueError(
                    f"gas {gas!r}: accepted: letters, digits and _.()+- (e.g. 'CO2', 'HFC-134a', 'fossil')"
                )
        return value

    def lower(self) -> float:
        """The lowest admissible footprint: ``-bound`` when negatives are allowed, else 0."""
        return -self.bound if self.allow_negative else 0.0


class SecAggParams(_Model):
    """Parameters of masked secure aggregation (SecAgg / SecAgg+)."""

    threshold_fraction: float = Field(default=2 / 3, ge=2 / 3, le=1.0)
    """Fraction of a firm's share holders needed to reconstruct its secrets after a dropout.

    At least 2/3: with the consistency round, a server that tells share holders different survivor
    sets then needs more than ``(holders + colluders) / 2`` signatures for each story, which fewer
    than a third of colluding firms cannot give it. Nodes refuse a threshold below
    ``max(min_participants, ceil(threshold_fraction * holders))`` (:mod:`protocols.secagg_policy`)."""
    neighbourhood_size: int | None = Field(default=None, ge=2)
    """Number of neighbours each firm masks with (SecAgg+); ``None``: every other firm (SecAgg)."""


class PaillierParams(_Model):
    """Parameters of packed Paillier aggregation."""

    key_bits: int = Field(default=3072, ge=2048, le=8192)
    key_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The custodians' joint key fingerprint (``SplitPublicKey.key_id``, printed by ``pcf custodian init``);
    required for a ``paillier`` round. Members encrypt only to the key they pinned, and only if it is this one."""

    @model_serializer(mode="wrap")
    def _omit_unset_key_id(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # secagg rounds carry no key id: their canonical bytes (and spec hashes) stay as they were
        data: dict[str, Any] = handler(self)
        if self.key_id is None:
            data.pop("key_id", None)
        return data


class RoundSpec(_Model):
    """One aggregation round, fixed and signed by the association before any firm contributes."""

    schema_version: Literal[1] = 1
    round_id: str
    product: Product
    region: str
    """ISO 3166 country (``"CN"``), ISO 3166-2 subdivision (``"CN-YN"``) or finer (``"CN-YN-KM"``)."""
    reference_period: ReferencePeriod
    reference_unit: str = Field(min_length=1)
    components: list[Component] = Field(min_length=1)
    weight: Weight = Field(default_factory=Weight)
    footprint: Footprint
    background_factors: dict[str, dict[str, FiniteFloat]] = Field(default_factory=dict)
    """Flow UUID -> gas -> kg CO2e per unit of the flow: the background every firm uses."""
    statistics: list[Statistic] = Field(default_factory=lambda: list(DEFAULT_STATISTICS))
    """What the round computes; statistics beyond the linear ones need ``min_participants >= 10``
    (``protocols.disclosure.DISPERSION_MIN_PARTICIPANTS``)."""
    min_participants: int = Field(default=3, ge=1)
    """Suppress below this many participants; a round is created only with at least 3
    (``protocols.disclosure.MIN_PARTICIPANTS_FLOOR``) and a node may demand more."""
    max_participants: int = Field(default=1000, ge=1, le=1_000_000)
    p_percent: float | None = Field(default=None, gt=0.0, le=50.0)
    """The p %-rule's p (``None``: 10 %): no participant may be able to estimate another's
    contribution to a published total within p % (``protocols.disclosure``). Left out of the
    canonical bytes when unset."""
    dominance_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    """Release 0.1's concentration screen, kept only so that logged 0.1 specs parse and hash as
    they were signed; rounds of this release refuse a spec that sets it."""
    protocol: Literal["secagg", "paillier"] = "secagg"
    secagg: SecAggParams = Field(default_factory=SecAggParams)
    paillier: PaillierParams = Field(default_factory=PaillierParams)
    deadline: AwareDatetime
    slot_scale_exponents: dict[str, int] = Field(default_factory=dict)
    """Override of a derived slot's scale by ``10**exponent``, keyed by slot name (e.g. ``"wx2[Alumina]"``)."""

    @field_validator("round_id")
    @classmethod
    def _check_round_id(cls, value: str) -> str:
        if not _ROUND_ID_RE.match(value):
            raise ValueError(f"round id {value!r}: accepted: 1-128 of letters, digits, '.', '_', '-'")
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        value = value.strip().upper()
        if not _REGION_RE.match(value):
            raise ValueError(
                f"region {value!r}: accepted: an ISO 3166-1 alpha-2 code ('CN'), an ISO 3166-2 code "
                "('CN-YN') or finer levels separated by '-' ('CN-YN-KM')"
            )
        parts = value.split("-")
        if parts[0] == "CN" and len(parts) > 1 and parts[1] not in CN_SUBDIVISIONS:
            raise ValueError(
                f"region {value!r}: {parts[1]!r} is not an ISO 3166-2:CN subdivision; accepted: "
                + ", ".join(sorted(CN_SUBDIVISIONS))
            )
        return value

    @field_validator("background_factors")
    @classmethod
    def _lower_flows(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {_check_uuid(flow): dict(by_gas) for flow, by_gas in value.items()}

    @field_validator("deadline")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # One canonical form: the same instant must serialise (and hash) the same way.
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"deadline {value.isoformat()} is out of range in UTC") from None

    @model_validator(mode="after")
    def _check_consistency(self) -> RoundSpec:
        problems = structural_problems(self)
        if problems:
            raise SpecError("; ".join(problems))
        return self

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("p_percent", "dominance_threshold"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @property
    def p_rule(self) -> Fraction:
        """The p %-rule's p as an exact fraction (0.1 for the default 10 %), from the decimal written in the spec."""
        return Fraction(repr(10.0 if self.p_percent is None else self.p_percent)) / 100

    def component_by_flow(self, flow: str) -> Component | None:
        """The component whose flow or one of whose aliases is ``flow`` (any case), or ``None``."""
        key = flow.strip().lower()
        return next((c for c in self.components if key in c.flows), None)

    def per_unit(self, unit: str) -> str:
        """``unit`` per reference unit, e.g. ``"kWh/t"``."""
        return f"{unit}/{self.reference_unit}"


def structural_problems(spec: RoundSpec) -> list[str]:
    """Every cross-field inconsistency of ``spec`` (empty when consistent); overflow is not checked here."""
    problems: list[str] = []
    flows = [c.flow for c in spec.components]
    every_flow = [f for c in spec.components for f in c.flows]
    for flow in sorted({f for f in every_flow if every_flow.count(f) > 1}):
        problems.append(
            f"components: flow {flow} appears more than once (as a component's flow or alias); "
            "accepted: each flow in one component once"
        )
    names = [c.name_en for c in spec.components]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"components: name_en {name!r} appears more than once (it names the vector slots)")
    gases = spec.footprint.gases
    for gas in sorted({g for g in gases if gases.count(g) > 1}):
        problems.append(f"footprint.gases: {gas!r} appears more than once")
    edges = spec.footprint.histogram_edges
    for i in range(1, len(edges)):
        if not edges[i] > edges[i - 1]:
            problems.append(
                f"footprint.histogram_edges: edge {i} ({fmt_number(edges[i])}) is not greater than edge {i - 1} "
                f"({fmt_number(edges[i - 1])}); accepted: strictly increasing edges"
            )
    lower, upper = spec.footprint.lower(), spec.footprint.bound
    if edges and edges[0] > lower:
        problems.append(
            f"footprint.histogram_edges: first edge {fmt_number(edges[0])} leaves footprints in "
            f"[{fmt_number(lower)}, {fmt_number(edges[0])}) without a bin; accepted: first edge <= {fmt_number(lower)}"
        )
    if edges and edges[-1] < upper:
        problems.append(
            f"footprint.histogram_edges: last edge {fmt_number(edges[-1])} is below the footprint bound "
            f"{fmt_number(upper)}; accepted: last edge >= {fmt_number(upper)}"
        )
    for flow, by_gas in spec.background_factors.items():
        if flow not in flows:
            problems.append(f"background_factors: flow {flow} is not a component of the round")
        for gas in by_gas:
            if gas not in gases:
                problems.append(
                    f"background_factors[{flow}]: gas {gas!r} is not one of footprint.gases {gases}"
                )
    if spec.protocol == "paillier" and spec.paillier.key_id is None:
        problems.append(
            "paillier.key_id: missing; a paillier round names the custodians' joint key fingerprint "
            "(64 hex digits, printed by `pcf custodian init`), so members encrypt to no other key"
        )
    if spec.min_participants > spec.max_participants:
        problems.append(
            f"min_participants {spec.min_participants} exceeds max_participants {spec.max_participants}"
        )
    if spec.reference_period.start > spec.reference_period.end:
        problems.append(
            f"reference_period: start {spec.reference_period.start} is after end {spec.reference_period.end}"
        )
    stats = spec.statistics
    for stat in sorted({s for s in stats if stats.count(s) > 1}):
        problems.append(f"statistics: {stat!r} appears more than once")
    return problems


# ---------------------------------------------------------------------------------- canonical bytes


def canonical_bytes(spec: RoundSpec) -> bytes:
    """The bytes that are hashed and signed: ``canonical.encode(Kind.ROUND_SPEC, spec as JSON)``.

    RFC 8785 canonical JSON behind the round-spec tag; NaN and infinity are refused by the model,
    and every integer of a spec fits 53 bits (:data:`Scale`), so the same spec always gives the
    same bytes in any language.
    """
    return encode(Kind.ROUND_SPEC, spec.model_dump(mode="json"))


def spec_hash(spec: RoundSpec) -> str:
    """SHA-256 hex of :func:`canonical_bytes`; contributions and results refer to a round by it."""
    return hashlib.sha256(canonical_bytes(spec)).hexdigest()
