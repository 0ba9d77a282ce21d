"""The round spec: what a round aggregates, how values are encoded, who may see what; signed by the association.

A :class:`RoundSpec` fixes, before any firm contributes, the product, region and period, the ordered
components each firm reports per reference unit, the fixed-point scales and plausibility bounds,
the footprint's gases and histogram, the background factors, the statistics, the disclosure rules
and the aggregation protocol. :func:`vector_layout` turns it into the contribution vector's slots,
and :func:`validate_spec` proves that no sum of up to ``max_participants`` contributions can
overflow the signed 64-bit ring.

Slot scales (how :func:`vector_layout` derives them)
-----------------------------------------------------
* Base slots take the spec's scales: ``x[c]`` the component's ``scale``, ``w`` the weight's,
  ``F`` the footprint's; ``count``, the reporter counts ``n[c]`` and ``nF[g]`` and the histogram
  bins have scale 1.
* A derived slot (``w2``, ``wx``, ``wx2``, ``wF``, ``F2``, ``wF2``) is the product of quantised
  base values; its *nominal* scale is the product of their scales (``s_w * s_x`` for ``w*x``,
  ``s_w * s_x**2`` for ``w*x**2``), which keeps every digit the inputs have. When the nominal scale
  would let ``max_participants`` sums overflow, the slot uses the largest power of ten that fits
  instead (e.g. ``Fraction(1, 10)``: the slot counts tenths of a unit fewer). Squares of large
  bounds are where this bites: production 1e7 t times (5e4 kWh/t)^2 is 2.5e16 before any scale.
  The coarsening is harmless for the statistics because each firm's rounding error is at most half
  a step and :mod:`protocols.stats` bounds and reports it; the proof lists each slot's scale.
* ``slot_scale_exponents`` in the spec overrides a derived slot's scale with ``10**exponent``
  explicitly; :func:`validate_spec` then checks it like any other slot.

Bounds are taken on the quantised values (``round(bound * scale) / scale``), so the proof covers
every value a contributor can send after rounding, not just the values it may enter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from dataclasses import dataclass
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

from keys.identity import Ed25519PrivateKey, b64url_decode, public_key_b64, sign, verify
from protocols.encoding import INT64_MAX, RING_BITS
from protocols.errors import InvalidSignature, SpecError

__all__ = [
    "ALL_STATISTICS",
    "CN_SUBDIVISIONS",
    "COMPONENT_VALUE_KINDS",
    "DERIVED_KINDS",
    "GAS_VALUE_KINDS",
    "ILCD_CO2_FOSSIL_AIR",
    "KIND_COUNT",
    "KIND_F",
    "KIND_F2",
    "KIND_HIST",
    "KIND_N",
    "KIND_NF",
    "KIND_W",
    "KIND_W2",
    "KIND_WF",
    "KIND_WF2",
    "KIND_WX",
    "KIND_WX2",
    "KIND_X",
    "SPEC_SIGNATURE_CONTEXT",
    "Component",
    "Footprint",
    "OverflowProof",
    "PaillierParams",
    "Product",
    "ReferencePeriod",
    "RoundSpec",
    "SecAggParams",
    "SignedSpec",
    "Slot",
    "SlotProof",
    "Statistic",
    "Weight",
    "canonical_bytes",
    "example_flow_uuid",
    "example_spec",
    "fmt_number",
    "sign_spec",
    "spec_hash",
    "structural_problems",
    "validate_spec",
    "vector_layout",
    "verify_spec",
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
#: Every statistic, in the order they are reported. The concentration screen is always computed.
ALL_STATISTICS: tuple[Statistic, ...] = get_args(Statistic)

KIND_COUNT = "count"  # 1 per firm
KIND_N = "n"  # 1 per firm whose value of the component is not zero (reporter count)
KIND_W = "w"  # weight (annual production)
KIND_W2 = "w2"  # weight squared (concentration screen)
KIND_WX = "wx"  # weight x component value
KIND_X = "x"  # component value
KIND_WX2 = "wx2"  # weight x component value squared
KIND_WF = "wF"  # weight x footprint of one gas
KIND_NF = "nF"  # 1 per firm whose footprint of the gas is not zero (reporter count of the gas)
KIND_F = "F"  # footprint (sum over gases)
KIND_F2 = "F2"  # footprint squared
KIND_WF2 = "wF2"  # weight x footprint squared
KIND_HIST = "hist"  # one-hot footprint histogram bin
#: Slots whose value is a product of base values; their scales are derived (see module docstring).
DERIVED_KINDS = frozenset({KIND_W2, KIND_WX, KIND_WX2, KIND_WF, KIND_F2, KIND_WF2})
#: Slots that carry a component's values (the ones a component's disclosure rule withholds).
COMPONENT_VALUE_KINDS = frozenset({KIND_WX, KIND_X, KIND_WX2})
#: Slots that carry one gas's footprint (the ones the gas-level disclosure rule withholds).
GAS_VALUE_KINDS = frozenset({KIND_WF})

#: Domain separation: a spec signature can never be replayed as a signature on other bytes.
SPEC_SIGNATURE_CONTEXT = b"pcf-dataspace/round-spec/v1\x00"

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
Scale = Annotated[int, Field(gt=0, le=10**18)]


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

    threshold_fraction: float = Field(default=2 / 3, gt=0.5, le=1.0)
    """Fraction of a firm's share holders needed to reconstruct its secrets after a dropout."""
    neighbourhood_size: int | None = Field(default=None, ge=2)
    """Number of neighbours each firm masks with (SecAgg+); ``None``: every other firm (SecAgg)."""


class PaillierParams(_Model):
    """Parameters of packed Paillier aggregation."""

    key_bits: int = Field(default=3072, ge=2048, le=8192)


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
    statistics: list[Statistic] = Field(default_factory=lambda: list(ALL_STATISTICS))
    min_participants: int = Field(default=3, ge=1)
    max_participants: int = Field(default=1000, ge=1, le=1_000_000)
    dominance_threshold: float = Field(default=0.6, gt=0.0, le=1.0)
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


# -------------------------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class Slot:
    """One position of the contribution vector.

    ``integer = round(value * scale)``; ``|integer| <= bound_int`` for every admissible contribution.
    """

    name: str
    kind: str
    component: int | None
    """Index into ``spec.components`` for component slots, else ``None``."""
    scale: Fraction
    bound_int: int
    signed: bool
    """Whether a contribution may be negative in this slot."""
    unit: str
    """Unit of the plaintext value, e.g. ``"t·kWh/t"``."""
    bound: Fraction
    """Largest ``|value|`` after quantisation of the inputs."""
    nominal_scale: Fraction
    """Scale before fitting: the spec's scale for base slots, the product of scales for derived ones."""
    gas: str | None = None
    bin: int | None = None
    description: str = ""


def _quantised_bound(bound: float, scale: int) -> Fraction:
    """The largest ``|round(v * scale)| / scale`` over ``|v| <= bound`` (rounding is monotone)."""
    return Fraction(round(Fraction(bound) * scale), scale)


def _fitted_scale(bound: Fraction, nominal: Fraction, participants: int) -> Fraction:
    """``nominal`` if ``participants`` sums fit 63 bits, else the largest fitting power of ten."""

    def fits(scale: Fraction) -> bool:
        return participants * round(bound * scale) <= INT64_MAX

    if fits(nominal):
        return nominal
    exponent = math.floor(math.log10(INT64_MAX / (participants * float(bound))))
    while not fits(Fraction(10) ** exponent):
        exponent -= 1
    while fits(Fraction(10) ** (exponent + 1)) and Fraction(10) ** (exponent + 1) < nominal:
        exponent += 1
    return Fraction(10) ** exponent


def _needs(spec: RoundSpec) -> set[str]:
    """The slot kinds the requested statistics need (dependencies included)."""
    stats = set(spec.statistics)
    kinds = {KIND_COUNT, KIND_W, KIND_W2, KIND_N}  # count and the disclosure screens are always needed
    if stats & {"weighted_mean", "weighted_sd", "gsd"}:
        kinds.add(KIND_WX)
    if "mean" in stats:
        kinds.add(KIND_X)
    if stats & {"weighted_sd", "gsd"}:
        kinds.add(KIND_WX2)
    if stats & {"footprint_weighted_mean", "footprint_weighted_sd"}:
        kinds |= {KIND_WF, KIND_NF}  # per-gas sums come with their reporter counts (gas-level rule)
    if stats & {"footprint_mean", "footprint_sd"}:
        kinds.add(KIND_F)
    if "footprint_sd" in stats:
        kinds.add(KIND_F2)
    if "footprint_weighted_sd" in stats:
        kinds.add(KIND_WF2)
    if "footprint_quantiles" in stats:
        kinds.add(KIND_HIST)
    return kinds


def vector_layout(spec: RoundSpec) -> list[Slot]:
    """The ordered slots of the round's contribution vector.

    Order: ``count``, ``w``, ``w2``, then per component ``n[c]``, ``wx[c]``, then ``x[c]``, ``wx2[c]``, then
    per gas ``nF[g]``, then per gas ``wF[g]``, then ``F``, ``F2``, ``wF2``, then the histogram bins; kinds
    that no requested statistic needs are left out, so the aggregator learns no sum it does not use
    (``nF`` comes with ``wF``: the gas-level disclosure rule of :mod:`protocols.stats` needs it).

    Parameters
    ----------
    spec
        The round spec.

    Returns
    -------
    list[Slot]
        One entry per vector position. Scales follow the module docstring.
    """
    kinds = _needs(spec)
    n_max = spec.max_participants
    w = spec.weight
    fp = spec.footprint
    bw = _quantised_bound(w.bound, w.scale)
    bf = _quantised_bound(fp.bound, fp.scale)
    f_unit = spec.per_unit(fp.unit)
    slots: list[Slot] = []

    def add(
        name: str,
        kind: str,
        *,
        bound: Fraction,
        nominal: Fraction | int,
        unit: str,
        signed: bool = False,
        component: int | None = None,
        gas: str | None = None,
        bin_: int | None = None,
        description: str = "",
    ) -> None:
        nominal = Fraction(nominal)
        if name in spec.slot_scale_exponents:
            scale = Fraction(10) ** spec.slot_scale_exponents[name]
        elif kind in DERIVED_KINDS:
            scale = _fitted_scale(bound, nominal, n_max)
        else:
            scale = nominal
        slots.append(
            Slot(
                name=name,
                kind=kind,
                component=component,
                scale=scale,
                bound_int=round(bound * scale),
                signed=signed,
                unit=unit,
                bound=bound,
                nominal_scale=nominal,
                gas=gas,
                bin=bin_,
                description=description,
            )
        )

    add(KIND_COUNT, KIND_COUNT, bound=Fraction(1), nominal=1, unit="firm", description="participating firm")
    add(KIND_W, KIND_W, bound=bw, nominal=w.scale, unit=w.unit, description=w.name)
    add(KIND_W2, KIND_W2, bound=bw**2, nominal=w.scale**2, unit=f"{w.unit}²", description=f"{w.name} squared")
    comps = list(enumerate(spec.components))
    bx = [_quantised_bound(c.bound, c.scale) for c in spec.components]
    for i, c in comps:  # always: the component-level disclosure rule needs them
        add(
            f"n[{c.name_en}]",
            KIND_N,
            bound=Fraction(1),
            nominal=1,
            unit="firm",
            component=i,
            description=f"firm reports {c.name_en} (value not zero)",
        )
    if KIND_WX in kinds:
        for i, c in comps:
            add(
                f"wx[{c.name_en}]",
                KIND_WX,
                bound=bw * bx[i],
                nominal=w.scale * c.scale,
                unit=f"{w.unit}·{spec.per_unit(c.unit)}",
                signed=c.allow_negative,
                component=i,
                description=f"{w.name} × {c.name_en}",
            )
    if KIND_X in kinds:
        for i, c in comps:
            add(
                f"x[{c.name_en}]",
                KIND_X,
                bound=bx[i],
                nominal=c.scale,
                unit=spec.per_unit(c.unit),
                signed=c.allow_negative,
                component=i,
                description=c.name_en,
            )
    if KIND_WX2 in kinds:
        for i, c in comps:
            add(
                f"wx2[{c.name_en}]",
                KIND_WX2,
                bound=bw * bx[i] ** 2,
                nominal=w.scale * c.scale**2,
                unit=f"{w.unit}·({spec.per_unit(c.unit)})²",
                component=i,
                description=f"{w.name} × {c.name_en} squared",
            )
    if KIND_NF in kinds:
        for gas in fp.gases:
            add(
                f"nF[{gas}]",
                KIND_NF,
                bound=Fraction(1),
                nominal=1,
                unit="firm",
                gas=gas,
                description=f"firm emits {gas} (footprint of the gas not zero)",
            )
    if KIND_WF in kinds:
        for gas in fp.gases:
            add(
                f"wF[{gas}]",
                KIND_WF,
                bound=bw * bf,
                nominal=w.scale * fp.scale,
                unit=f"{w.unit}·{f_unit}",
                signed=fp.allow_negative,
                gas=gas,
                description=f"{w.name} × footprint, {gas}",
            )
    if KIND_F in kinds:
        add(KIND_F, KIND_F, bound=bf, nominal=fp.scale, unit=f_unit, signed=fp.allow_negative, description="footprint")
    if KIND_F2 in kinds:
        add(KIND_F2, KIND_F2, bound=bf**2, nominal=fp.scale**2, unit=f"({f_unit})²", description="footprint squared")
    if KIND_WF2 in kinds:
        add(
            KIND_WF2,
            KIND_WF2,
            bound=bw * bf**2,
            nominal=w.scale * fp.scale**2,
            unit=f"{w.unit}·({f_unit})²",
            description=f"{w.name} × footprint squared",
        )
    if KIND_HIST in kinds:
        edges = fp.histogram_edges
        for b in range(len(edges) - 1):
            close = "]" if b == len(edges) - 2 else ")"
            label = f"[{fmt_number(edges[b])},{fmt_number(edges[b + 1])}{close}"
            add(
                f"hist{label}",
                KIND_HIST,
                bound=Fraction(1),
                nominal=1,
                unit="firm",
                bin_=b,
                description=f"footprint in {label} {f_unit}",
            )
    return slots


# ---------------------------------------------------------------------------------- overflow proof


@dataclass(frozen=True)
class SlotProof:
    """Why one slot cannot overflow: ``max_participants * bound_int < 2^63``."""

    name: str
    scale: Fraction
    bound_int: int
    max_abs_sum: int
    headroom_bits: int
    """``63 - bit_length(max_abs_sum)``: how many more doublings the sum could take."""
    resolution_loss_digits: int
    """Decimal digits a derived slot gave up to fit (0 when it uses the nominal scale)."""


@dataclass(frozen=True)
class OverflowProof:
    """The per-slot evidence that no sum of up to ``max_participants`` contributions overflows."""

    spec_hash: str
    max_participants: int
    slots: tuple[SlotProof, ...]
    min_publishable_n: int
    """Smallest n at which equal weights pass the dominance screen: ``ceil(1 / threshold²)``."""

    def min_headroom_bits(self) -> int:
        return min(s.headroom_bits for s in self.slots)

    def __str__(self) -> str:
        width = max(len(s.name) for s in self.slots)
        rows = [f"{'slot':<{width}}  {'scale':>10}  {'bound_int':>20}  headroom bits"]
        for s in self.slots:
            rows.append(f"{s.name:<{width}}  {s.scale!s:>10}  {s.bound_int:>20}  {s.headroom_bits}")
        return "\n".join(rows)


def validate_spec(spec: RoundSpec) -> OverflowProof:
    """Check ``spec`` and prove that no slot's sum can overflow the signed 64-bit ring.

    Sums are taken mod 2^64 and read as two's complement, so a sum is recovered exactly when its
    true value lies in [-2^63, 2^63). For every slot, ``|integer| <= bound_int`` for every
    admissible contribution (bounds are taken after rounding), hence
    ``|sum| <= max_participants * bound_int``; the spec is accepted when that is < 2^63.

    Parameters
    ----------
    spec
        The round spec. Structural checks are re-run because ``model_copy(update=...)`` and
        ``model_construct`` bypass pydantic validation.

    Returns
    -------
    OverflowProof
        Per slot: scale, bound integer, largest possible sum and headroom bits.

    Raises
    ------
    SpecError
        Structural inconsistency, an unknown or base-slot scale override, a slot that carries no
        information (bound integer 0), or an overflow; an overflow names the slot, the bound, the
        scale and ``max_participants`` and says what would fit (``.slot`` holds the slot name).
    """
    problems = structural_problems(spec)
    if problems:
        raise SpecError("; ".join(problems))
    slots = vector_layout(spec)
    by_name = {s.name: s for s in slots}
    for name in spec.slot_scale_exponents:
        if name not in by_name:
            raise SpecError(
                f"slot_scale_exponents: no slot named {name!r}; accepted: one of the derived slots "
                + ", ".join(s.name for s in slots if s.kind in DERIVED_KINDS),
                slot=name,
            )
        if by_name[name].kind not in DERIVED_KINDS:
            raise SpecError(
                f"slot_scale_exponents: {name!r} is a base slot; set its scale in the spec's component, "
                "weight or footprint instead",
                slot=name,
            )
    n_max = spec.max_participants
    proofs: list[SlotProof] = []
    for s in slots:
        if s.bound_int == 0:
            raise SpecError(
                f"slot {s.name!r}: bound {fmt_number(s.bound)} {s.unit} at scale {s.scale} rounds to 0, so the "
                "slot carries nothing; raise its scale",
                slot=s.name,
            )
        total = n_max * s.bound_int
        if total > INT64_MAX:
            fitting = INT64_MAX // s.bound_int
            raise SpecError(
                f"slot {s.name!r} can overflow: bound {fmt_number(s.bound)} {s.unit} × scale {s.scale} = "
                f"{s.bound_int} per firm, × max_participants {n_max} = {total} >= 2^63; accepted: "
                f"bound × scale × max_participants < 2^63 (lower the scale or the bound, or allow at most "
                f"{fitting} participants)",
                slot=s.name,
            )
        loss = 0
        if s.scale < s.nominal_scale:
            loss = max(0, round(math.log10(s.nominal_scale / s.scale)))
        proofs.append(
            SlotProof(
                name=s.name,
                scale=s.scale,
                bound_int=s.bound_int,
                max_abs_sum=total,
                headroom_bits=RING_BITS - 1 - total.bit_length(),
                resolution_loss_digits=loss,
            )
        )
    min_n = math.ceil(1 / spec.dominance_threshold**2 - 1e-12)
    return OverflowProof(
        spec_hash=spec_hash(spec), max_participants=n_max, slots=tuple(proofs), min_publishable_n=min_n
    )


# ------------------------------------------------------------------------------ canonical & signed


def canonical_bytes(spec: RoundSpec) -> bytes:
    """The spec as sorted-key compact JSON in UTF-8: the bytes that are hashed and signed.

    Floats are written by ``repr`` (shortest round-tripping form) and NaN/infinity are refused, so
    the same spec always gives the same bytes and parsing the bytes gives the same spec.
    """
    data = spec.model_dump(mode="json")
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def spec_hash(spec: RoundSpec) -> str:
    """SHA-256 hex of :func:`canonical_bytes`; contributions and results refer to a round by it."""
    return hashlib.sha256(canonical_bytes(spec)).hexdigest()


class SignedSpec(_Model):
    """A round spec with the association's Ed25519 signature over its canonical bytes."""

    spec: RoundSpec
    signature: str
    """Base64url signature over ``SPEC_SIGNATURE_CONTEXT + canonical_bytes(spec)``."""
    signer: str
    """Base64url raw public key of the signer."""


def sign_spec(spec: RoundSpec, key: Ed25519PrivateKey) -> SignedSpec:
    """Sign ``spec`` with ``key`` (domain-separated by :data:`SPEC_SIGNATURE_CONTEXT`)."""
    signature = sign(key, SPEC_SIGNATURE_CONTEXT + canonical_bytes(spec))
    return SignedSpec(spec=spec, signature=signature, signer=public_key_b64(key))


def verify_spec(signed: SignedSpec, expected_public_b64: str, *, validate: bool = True) -> RoundSpec:
    """The spec of ``signed`` if the expected signer signed exactly it.

    Parameters
    ----------
    signed
        The signed spec as received.
    expected_public_b64
        The association's public key the caller trusts (from its configuration, never from
        ``signed.signer``, which is only a hint).
    validate
        Also run :func:`validate_spec` (default): a node MUST NOT contribute to a spec whose sums
        could overflow.

    Raises
    ------
    InvalidSignature
        Another signer, a malformed key or signature, or any change to the spec after signing.
    SpecError
        The signature holds but the spec fails :func:`validate_spec` (only when ``validate``).
    """
    try:
        same_signer = hmac.compare_digest(b64url_decode(signed.signer), b64url_decode(expected_public_b64))
    except ValueError:
        raise InvalidSignature() from None
    if not same_signer:
        raise InvalidSignature()
    verify(expected_public_b64, SPEC_SIGNATURE_CONTEXT + canonical_bytes(signed.spec), signed.signature)
    if validate:
        validate_spec(signed.spec)
    return signed.spec


# ------------------------------------------------------------------------------------------ example

_EXAMPLE_NAMESPACE = uuid.UUID("6f1c2b1e-9a1d-5b7e-8c3a-2d4e5f607182")
#: ILCD elementary flow "carbon dioxide (fossil)", emissions to air, unspecified (EF reference package).
ILCD_CO2_FOSSIL_AIR = "08a91e70-3ddc-11dd-923d-0050c2490048"

_GWP = {  # GWP100 of the direct PFC emissions (IPCC AR5 / AR6), from lca/data/globalwarmingpotentials.csv
    "AR5": {"CF4": 6630.0, "C2F6": 11100.0},
    "AR6": {"CF4": 7380.0, "C2F6": 12400.0},
}


def example_flow_uuid(name: str) -> str:
    """A stable example UUID (``uuid5``) for a flow of the example round that has no public UUID."""
    return str(uuid.uuid5(_EXAMPLE_NAMESPACE, f"pcf-dataspace/example/{name}"))


def example_spec(
    *,
    round_id: str = "cn-primary-aluminium-2024",
    region: str = "CN",
    gwp_set: Literal["AR5", "AR6"] = "AR5",
    protocol: Literal["secagg", "paillier"] = "secagg",
    min_participants: int = 3,
    max_participants: int = 1000,
    dominance_threshold: float = 0.6,
    electricity_co2_kg_per_kwh: float = 0.5703,
    deadline: datetime | None = None,
    **overrides: Any,
) -> RoundSpec:
    """A primary-aluminium round (原铝, GB/T 4754-2017 3216) for demos and tests.

    Components per t of aluminium: alumina (t), net carbon anode (t), AC electricity (kWh), and
    the direct process emissions CO2, CF4 and C2F6 (kg). The background factors are illustrative
    round numbers of a plausible order (the electricity default is the 2022 national grid average
    CO2 factor published by the Ministry of Ecology and Environment, 0.5703 kg/kWh); they are not
    an official dataset. CO2 uses the ILCD elementary-flow UUID; the other flows use stable
    example UUIDs from :func:`example_flow_uuid`.

    ``overrides`` are passed to :class:`RoundSpec` (e.g. ``statistics=[...]``, ``secagg=...``).
    """
    gwp = _GWP[gwp_set]
    alumina, anode, power = (example_flow_uuid(n) for n in ("alumina", "carbon-anode", "ac-electricity"))
    cf4, c2f6 = example_flow_uuid("cf4-air"), example_flow_uuid("c2f6-air")
    components = [
        Component(flow=alumina, name_en="Alumina", name_zh="氧化铝", direction="input", unit="t",
                  scale=10**6, bound=5.0),
        Component(flow=anode, name_en="Carbon anode, net", name_zh="预焙阳极（净耗）", direction="input",
                  unit="t", scale=10**6, bound=2.0),
        Component(flow=power, name_en="AC electricity", name_zh="交流电", direction="input", unit="kWh",
                  scale=10**3, bound=50_000.0),
        Component(flow=ILCD_CO2_FOSSIL_AIR, name_en="CO2, process", name_zh="二氧化碳（过程排放）",
                  direction="output", unit="kg", scale=10**3, bound=5_000.0),
        Component(flow=cf4, name_en="CF4", name_zh="四氟化碳", direction="output", unit="kg",
                  scale=10**6, bound=5.0),
        Component(flow=c2f6, name_en="C2F6", name_zh="六氟乙烷", direction="output", unit="kg",
                  scale=10**6, bound=1.0),
    ]  # fmt: skip
    background = {
        alumina: {"CO2": 1050.0, "CH4": 45.0, "N2O": 4.0},
        anode: {"CO2": 560.0, "CH4": 14.0, "N2O": 2.0},
        power: {"CO2": electricity_co2_kg_per_kwh, "CH4": 0.012, "N2O": 0.003},
        ILCD_CO2_FOSSIL_AIR: {"CO2": 1.0},
        cf4: {"CF4": gwp["CF4"]},
        c2f6: {"C2F6": gwp["C2F6"]},
    }
    edges = [0.0, 4000.0, 8000.0] + [float(e) for e in range(9000, 20001, 1000)] + [25000.0, 30000.0, 50000.0]
    fields: dict[str, Any] = {
        "round_id": round_id,
        "product": Product(
            name_zh="原铝（铝锭）",
            name_en="Primary aluminium, ingot",
            classification_code="3216",
            reference_flow=example_flow_uuid("primary-aluminium-ingot"),
        ),
        "region": region,
        "reference_period": ReferencePeriod(start=date(2024, 1, 1), end=date(2024, 12, 31)),
        "reference_unit": "t",
        "components": components,
        "weight": Weight(unit="t", scale=1, bound=1e7),
        "footprint": Footprint(
            gases=["CO2", "CH4", "N2O", "CF4", "C2F6"],
            gwp_set=gwp_set,
            scale=1000,
            bound=50_000.0,
            histogram_edges=edges,
        ),
        "background_factors": background,
        "min_participants": min_participants,
        "max_participants": max_participants,
        "dominance_threshold": dominance_threshold,
        "protocol": protocol,
        "deadline": deadline or datetime(2025, 6, 30, 16, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return RoundSpec(**fields)
