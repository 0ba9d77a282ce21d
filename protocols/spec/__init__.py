"""The round spec: what a round aggregates, how values are encoded, who may see what; signed by the association.

A :class:`RoundSpec` (:mod:`.model`) fixes, before any firm contributes, the product, region and
period, the ordered components each firm reports per reference unit, the fixed-point scales and
plausibility bounds, the footprint's gases and histogram, the background factors, the statistics,
the disclosure rules and the aggregation protocol. :func:`vector_layout` (:mod:`.layout`) turns it
into the contribution vector's slots, :func:`validate_spec` (:mod:`.proof`) proves that no sum of
up to ``max_participants`` contributions can overflow the signed 64-bit ring, and
:func:`sign_spec` / :func:`verify_spec` (:mod:`.signing`) carry the association's signature over
:func:`canonical_bytes`.
"""

from __future__ import annotations

from protocols.spec.layout import (
    COMPONENT_VALUE_KINDS,
    DERIVED_KINDS,
    GAS_VALUE_KINDS,
    KIND_COUNT,
    KIND_F,
    KIND_F2,
    KIND_HIST,
    KIND_N,
    KIND_NF,
    KIND_W,
    KIND_WF,
    KIND_WF2,
    KIND_WX,
    KIND_WX2,
    KIND_X,
    OTHER_GASES,
    Slot,
    other_gases_slot,
    quantised_bound,
    vector_layout,
)
from protocols.spec.model import (
    ALL_STATISTICS,
    CN_SUBDIVISIONS,
    DEFAULT_STATISTICS,
    Component,
    Footprint,
    PaillierParams,
    Product,
    ReferencePeriod,
    RoundSpec,
    SecAggParams,
    Statistic,
    Weight,
    canonical_bytes,
    fmt_number,
    spec_hash,
    structural_problems,
)
from protocols.spec.proof import OverflowProof, SlotProof, validate_spec
from protocols.spec.signing import SignedSpec, sign_spec, verify_spec

__all__ = [
    "ALL_STATISTICS",
    "CN_SUBDIVISIONS",
    "COMPONENT_VALUE_KINDS",
    "DEFAULT_STATISTICS",
    "DERIVED_KINDS",
    "GAS_VALUE_KINDS",
    "KIND_COUNT",
    "KIND_F",
    "KIND_F2",
    "KIND_HIST",
    "KIND_N",
    "KIND_NF",
    "KIND_W",
    "KIND_WF",
    "KIND_WF2",
    "KIND_WX",
    "KIND_WX2",
    "KIND_X",
    "OTHER_GASES",
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
    "fmt_number",
    "other_gases_slot",
    "quantised_bound",
    "sign_spec",
    "spec_hash",
    "structural_problems",
    "validate_spec",
    "vector_layout",
    "verify_spec",
]
