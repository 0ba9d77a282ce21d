"""Round spec: structure checks, canonical bytes, signing and tamper detection, the overflow proof."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from example_round import example_spec
from pydantic import ValidationError

from keys.identity import generate_identity, public_key_b64
from protocols.canonical import Kind, encode
from protocols.encoding import INT64_MAX
from protocols.errors import InvalidSignature, SpecError
from protocols.spec import (
    ALL_STATISTICS,
    DEFAULT_STATISTICS,
    DERIVED_KINDS,
    OTHER_GASES,
    RoundSpec,
    SignedSpec,
    canonical_bytes,
    other_gases_slot,
    sign_spec,
    spec_hash,
    validate_spec,
    vector_layout,
    verify_spec,
)


@pytest.fixture(scope="module")
def spec() -> RoundSpec:
    """The example round with every statistic, so every slot kind is in its layout (hence 10 firms at least)."""
    return example_spec(statistics=list(ALL_STATISTICS), min_participants=10)


@pytest.fixture(scope="module")
def association() -> Ed25519PrivateKey:
    return generate_identity()


def _with_component(spec: RoundSpec, index: int, **changes: object) -> RoundSpec:
    components = list(spec.components)
    components[index] = components[index].model_copy(update=changes)
    return spec.model_copy(update={"components": components})


# ---------------------------------------------------------------------------------------- structure


def test_example_aluminium_spec_validates_with_headroom_in_every_slot(spec: RoundSpec) -> None:
    proof = validate_spec(spec)
    # every slot of the layout, then the values stage's one slot for merged gases (protocols.disclosure)
    assert [s.name for s in proof.slots] == [s.name for s in vector_layout(spec)] + [f"wF[{OTHER_GASES}]"]
    assert proof.min_headroom_bits() >= 0
    assert all(s.max_abs_sum <= INT64_MAX for s in proof.slots)
    assert proof.spec_hash == spec_hash(spec)
    assert proof.min_publishable_n == 10  # min_participants
    assert validate_spec(example_spec()).min_publishable_n == 3
    assert validate_spec(example_spec(min_participants=1)).min_publishable_n == 3  # never below the floor
    assert "wx2[AC electricity]" in str(proof)


def test_the_merged_gases_slot_is_proven_for_every_gas_merged_at_the_fitted_scale(spec: RoundSpec) -> None:
    # Prepare
    slot = other_gases_slot(spec)
    wf = next(s for s in vector_layout(spec) if s.kind == "wF")
    proof = {s.name: s for s in validate_spec(spec).slots}

    # Assert: bound G × a wF slot's, the nominal scale while it fits, carried in the overflow proof
    assert slot is not None and (slot.name, slot.kind, slot.gas) == (f"wF[{OTHER_GASES}]", "wF", OTHER_GASES)
    assert slot.bound == 5 * wf.bound and slot.scale == wf.scale == wf.nominal_scale
    assert slot.bound_int == round(slot.bound * slot.scale) and spec.max_participants * slot.bound_int <= INT64_MAX
    assert proof[slot.name].max_abs_sum == spec.max_participants * slot.bound_int
    crowded = example_spec(max_participants=4000)  # 5 × wF no longer fits at the nominal scale; one wF still does
    merged, single = other_gases_slot(crowded), next(s for s in vector_layout(crowded) if s.kind == "wF")
    assert merged is not None and single.scale == single.nominal_scale and merged.scale == single.scale / 10
    assert 4000 * merged.bound_int <= INT64_MAX
    one_gas = example_spec(footprint=spec.footprint.model_copy(update={"gases": ["CO2"]}),
                           background_factors={c.flow: {"CO2": 1.0} for c in spec.components})  # fmt: skip
    assert other_gases_slot(one_gas) is None
    assert other_gases_slot(example_spec(statistics=["weighted_mean", "footprint_mean"])) is None


def test_layout_order_and_size_of_the_example(spec: RoundSpec) -> None:
    names = [s.name for s in vector_layout(spec)]
    assert names[:4] == ["count", "w", "n[Alumina]", "n[Carbon anode, net]"]
    assert names.index("wx[Alumina]") == names.index("n[C2F6]") + 1
    assert names.index("x[Alumina]") > names.index("wx[C2F6]")
    assert names[-1] == "hist[30000,50000]"  # last bin closed
    assert names.index("wF[CO2]") == names.index("nF[C2F6]") + 1
    assert len(names) == 2 + 4 * 6 + 2 * 5 + 3 + 17
    assert "w2" not in names  # release 0.1's Σw² (the concentration screen) is no longer collected


def test_statistics_subset_leaves_unneeded_slots_out(spec: RoundSpec) -> None:
    small = example_spec(statistics=["weighted_mean", "footprint_weighted_mean"])
    kinds = {s.kind for s in vector_layout(small)}
    assert kinds == {"count", "w", "n", "wx", "nF", "wF"}
    gsd_only = example_spec(statistics=["gsd"])
    assert {s.kind for s in vector_layout(gsd_only)} == {"count", "w", "n", "wx", "wx2"}


def test_the_default_statistics_are_the_linear_ones(spec: RoundSpec) -> None:
    default = example_spec()
    assert default.statistics == list(DEFAULT_STATISTICS) == ["weighted_mean", "footprint_weighted_mean"]
    assert vector_layout(default) == vector_layout(example_spec(statistics=["weighted_mean", "footprint_weighted_mean"]))
    assert set(ALL_STATISTICS) == set(spec.statistics) and len(ALL_STATISTICS) == 9


def test_every_component_has_a_reporter_slot_that_counts_firms_and_is_in_the_overflow_proof(spec: RoundSpec) -> None:
    reporters = [s for s in vector_layout(spec) if s.kind == "n"]
    assert [s.name for s in reporters] == [f"n[{c.name_en}]" for c in spec.components]
    assert [s.component for s in reporters] == list(range(len(spec.components)))
    assert all((s.scale, s.bound_int, s.signed, s.unit) == (Fraction(1), 1, False, "firm") for s in reporters)
    proof = {s.name: s for s in validate_spec(spec).slots}
    assert proof["n[Alumina]"].max_abs_sum == spec.max_participants  # at most one per firm
    with pytest.raises(SpecError, match="base slot"):
        validate_spec(spec.model_copy(update={"slot_scale_exponents": {"n[Alumina]": 0}}))


def test_every_gas_has_a_reporter_slot_with_its_footprint_slots_and_in_the_overflow_proof(spec: RoundSpec) -> None:
    # Prepare
    unweighted = example_spec(statistics=["weighted_mean", "footprint_mean", "footprint_quantiles"])

    # Execute
    reporters = [s for s in vector_layout(spec) if s.kind == "nF"]
    proof = {s.name: s for s in validate_spec(spec).slots}

    # Assert: one per gas, a 0/1 count per firm; only where per-gas sums are (wF), since only they need it
    assert [(s.name, s.gas) for s in reporters] == [(f"nF[{g}]", g) for g in spec.footprint.gases]
    assert all((s.scale, s.bound_int, s.signed, s.unit, s.component) == (Fraction(1), 1, False, "firm", None) for s in reporters)
    assert proof["nF[CF4]"].max_abs_sum == spec.max_participants
    assert not {"nF", "wF"} & {s.kind for s in vector_layout(unweighted)}
    with pytest.raises(SpecError, match="base slot"):
        validate_spec(spec.model_copy(update={"slot_scale_exponents": {"nF[CO2]": 0}}))


# ------------------------------------------------------------------------------------------ aliases

ALIAS_A = "aaaaaaaa-0000-4000-8000-000000000001"
ALIAS_B = "bbbbbbbb-0000-4000-8000-000000000002"


def test_aliases_are_uuids_and_a_flow_may_belong_to_one_component_only(spec: RoundSpec) -> None:
    with_aliases = _with_component(spec, 2, aliases=[ALIAS_A.upper(), ALIAS_B])
    again = RoundSpec.model_validate(with_aliases.model_dump())
    assert again.components[2].aliases == [ALIAS_A, ALIAS_B]  # lower-cased like every flow UUID
    assert again.component_by_flow(ALIAS_B.upper()) == again.components[2]
    data = spec.model_dump()
    data["components"][2]["aliases"] = ["grid-yunnan"]
    with pytest.raises(ValidationError, match="not a UUID"):
        RoundSpec.model_validate(data)
    data = spec.model_dump()
    data["components"][2]["aliases"] = [spec.components[0].flow]  # alumina's flow as electricity's alias
    with pytest.raises(ValidationError, match="appears more than once"):
        RoundSpec.model_validate(data)
    data = spec.model_dump()
    data["components"][1]["aliases"] = [ALIAS_A]
    data["components"][2]["aliases"] = [ALIAS_A]
    with pytest.raises(ValidationError, match=f"flow {ALIAS_A} appears more than once"):
        RoundSpec.model_validate(data)


def test_aliases_are_signed_and_left_out_of_the_canonical_bytes_only_when_empty(spec: RoundSpec) -> None:
    assert '"aliases"' not in canonical_bytes(spec).decode()
    assert spec_hash(_with_component(spec, 2, aliases=[])) == spec_hash(spec)
    merged = _with_component(spec, 2, aliases=[ALIAS_A])
    assert f'"aliases":["{ALIAS_A}"]' in canonical_bytes(merged).decode()
    assert spec_hash(merged) != spec_hash(spec)
    assert RoundSpec.model_validate_json(merged.model_dump_json()) == merged


@pytest.mark.parametrize(
    ("region", "expected"),
    [("CN", "CN"), ("cn-yn", "CN-YN"), ("CN-YN-KM", "CN-YN-KM"), ("CN-YN-530100", "CN-YN-530100"), ("DE-BY", "DE-BY")],
)
def test_region_accepts_country_subdivision_and_finer_codes(region: str, expected: str) -> None:
    assert example_spec(region=region).region == expected


@pytest.mark.parametrize("region", ["China", "CN-XX", "C", "CN-", "CN--YN", "CN_YN", "CN-ABCD"])
def test_region_refuses_codes_that_are_not_iso_3166_like(region: str) -> None:
    with pytest.raises(ValidationError, match="region"):
        example_spec(region=region)


def test_classification_code_must_be_gb_t_4754(spec: RoundSpec) -> None:
    data = spec.model_dump()
    data["product"]["classification_code"] = "32161"
    with pytest.raises(ValidationError, match="GB/T 4754"):
        RoundSpec.model_validate(data)
    data["product"]["classification_code"] = "c3216"
    assert RoundSpec.model_validate(data).product.classification_code == "C3216"


def test_histogram_edges_must_increase_and_cover_the_bound(spec: RoundSpec) -> None:
    data = spec.model_dump()
    data["footprint"]["histogram_edges"] = [0.0, 10.0, 10.0, 60000.0]
    with pytest.raises(ValidationError, match="edge 2 \\(10\\) is not greater than edge 1"):
        RoundSpec.model_validate(data)
    data["footprint"]["histogram_edges"] = [0.0, 10.0, 40000.0]
    with pytest.raises(ValidationError, match="last edge 40000 is below the footprint bound 50000"):
        RoundSpec.model_validate(data)
    data["footprint"]["histogram_edges"] = [100.0, 50000.0]
    with pytest.raises(ValidationError, match="first edge 100"):
        RoundSpec.model_validate(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_participants", 2000, "min_participants 2000 exceeds max_participants 1000"),
        ("dominance_threshold", 1.5, "dominance_threshold"),
        ("p_percent", 0.0, "p_percent"),
        ("p_percent", 60.0, "p_percent"),
        ("protocol", "homomorphic", "protocol"),
        ("round_id", "bad id!", "round id"),
        ("statistics", ["mean", "mean"], "'mean' appears more than once"),
        ("deadline", datetime(2025, 6, 30, 16, 0), "deadline"),  # naive: refused
    ],
)
def test_inconsistent_round_fields_are_refused(spec: RoundSpec, field: str, value: object, message: str) -> None:
    data = spec.model_dump()
    data[field] = value
    with pytest.raises(ValidationError, match=message):
        RoundSpec.model_validate(data)


def test_component_scale_and_bound_must_be_positive_and_finite(spec: RoundSpec) -> None:
    for field, value in [("scale", 0), ("bound", 0.0), ("bound", float("inf")), ("flow", "not-a-uuid")]:
        data = spec.model_dump()
        data["components"][0][field] = value
        with pytest.raises(ValidationError):
            RoundSpec.model_validate(data)


def test_duplicate_components_and_foreign_background_factors_are_refused(spec: RoundSpec) -> None:
    data = spec.model_dump()
    data["components"].append(dict(data["components"][0]))
    with pytest.raises(ValidationError, match="appears more than once"):
        RoundSpec.model_validate(data)
    data = spec.model_dump()
    data["background_factors"]["00000000-0000-0000-0000-000000000000"] = {"CO2": 1.0}
    with pytest.raises(ValidationError, match="not a component"):
        RoundSpec.model_validate(data)
    data = spec.model_dump()
    flow = spec.components[0].flow
    data["background_factors"][flow] = {"SF6": 1.0}
    with pytest.raises(ValidationError, match="'SF6' is not one of footprint.gases"):
        RoundSpec.model_validate(data)


def test_validate_spec_rechecks_structure_bypassed_by_model_copy(spec: RoundSpec) -> None:
    broken = spec.model_copy(update={"min_participants": 5, "max_participants": 4})
    with pytest.raises(SpecError, match="min_participants 5 exceeds max_participants 4"):
        validate_spec(broken)


def test_deadline_is_normalised_to_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    a = example_spec(deadline=datetime(2025, 7, 1, 0, 0, tzinfo=beijing))
    b = example_spec(deadline=datetime(2025, 6, 30, 16, 0, tzinfo=UTC))
    assert a.deadline.tzinfo == UTC
    assert canonical_bytes(a) == canonical_bytes(b)


# -------------------------------------------------------------------------------------- overflow


def test_overflow_proof_refuses_bound_times_scale_times_participants_at_2_63_and_names_the_slot(
    spec: RoundSpec,
) -> None:
    # AC electricity: bound 5e4 kWh/t at scale 1e12 is 5e16 per firm; 2^63 / 5e16 = 184.47.
    fine = _with_component(spec, 2, scale=10**12).model_copy(update={"max_participants": 184})
    proof = validate_spec(fine)
    assert {s.name: s for s in proof.slots}["x[AC electricity]"].headroom_bits == 0
    over = fine.model_copy(update={"max_participants": 185})
    with pytest.raises(SpecError) as info:
        validate_spec(over)
    assert info.value.slot == "x[AC electricity]"
    message = str(info.value)
    for part in ("x[AC electricity]", "bound 50000 kWh/t", "scale 1000000000000", "max_participants 185", "2^63"):
        assert part in message
    assert "at most 184 participants" in message


def test_overflow_proof_checks_explicit_derived_slot_scales(spec: RoundSpec) -> None:
    ok = spec.model_copy(update={"slot_scale_exponents": {"wx2[AC electricity]": -2}})
    assert {s.name: s for s in validate_spec(ok).slots}["wx2[AC electricity]"].scale == Fraction(1, 100)
    over = spec.model_copy(update={"slot_scale_exponents": {"wx2[AC electricity]": 3}})
    with pytest.raises(SpecError, match=r"slot 'wx2\[AC electricity\]' can overflow") as info:
        validate_spec(over)
    assert info.value.slot == "wx2[AC electricity]"


def test_scale_overrides_must_name_a_derived_slot(spec: RoundSpec) -> None:
    with pytest.raises(SpecError, match="no slot named 'wx2\\[Bauxite\\]'"):
        validate_spec(spec.model_copy(update={"slot_scale_exponents": {"wx2[Bauxite]": 0}}))
    with pytest.raises(SpecError, match="base slot"):
        validate_spec(spec.model_copy(update={"slot_scale_exponents": {"x[Alumina]": 3}}))


def test_slot_that_rounds_to_nothing_is_refused(spec: RoundSpec) -> None:
    coarse = spec.model_copy(update={"slot_scale_exponents": {"wx[Alumina]": -9}})
    with pytest.raises(SpecError, match="carries nothing"):
        validate_spec(coarse)


@pytest.mark.parametrize("participants", [1, 10, 1000, 100_000])
def test_derived_scales_are_nominal_when_they_fit_else_the_largest_fitting_power_of_ten(participants: int) -> None:
    spec = example_spec(max_participants=participants, min_participants=1, statistics=list(ALL_STATISTICS))
    for slot in vector_layout(spec):
        assert participants * slot.bound_int <= INT64_MAX
        if slot.kind not in DERIVED_KINDS or slot.scale == slot.nominal_scale:
            continue
        assert slot.scale < slot.nominal_scale
        assert slot.scale.numerator == 1 or slot.scale.denominator == 1  # a power of ten
        finer = slot.scale * 10
        assert participants * round(slot.bound * finer) > INT64_MAX, slot.name
    wx = {s.name: s for s in vector_layout(spec)}["wx[Alumina]"]
    assert wx.scale == wx.nominal_scale == 10**6  # s_w * s_x when it fits


def test_bounds_are_taken_after_rounding(spec: RoundSpec) -> None:
    # |v| <= 0.0000015 t/t at scale 1e6 can round to 2 (1.5 -> 2), so the slot bound must be 2, not 1.5.
    odd = _with_component(spec, 0, bound=0.0000015)
    x = {s.name: s for s in vector_layout(odd)}["x[Alumina]"]
    assert x.bound_int == 2


# ------------------------------------------------------------------------------ canonical & signing


def test_canonical_bytes_are_the_tagged_rfc8785_form_and_stable_over_json(spec: RoundSpec) -> None:
    blob = canonical_bytes(spec)
    tag = b"pcf-dataspace/" + Kind.ROUND_SPEC.encode() + b"\x00"
    assert blob.startswith(tag)
    assert blob == encode(Kind.ROUND_SPEC, spec.model_dump(mode="json"))
    text = blob[len(tag) :].decode("utf-8")
    assert "氧化铝" in text and "\\u" not in text
    data = json.loads(text)
    assert "\n" not in text and '", "' not in text and '": ' not in text
    assert list(data) == sorted(data)
    again = RoundSpec.model_validate_json(spec.model_dump_json())
    assert canonical_bytes(again) == blob
    assert spec_hash(again) == spec_hash(spec) == hashlib.sha256(blob).hexdigest()
    assert len(spec_hash(spec)) == 64


def test_p_percent_is_signed_when_set_and_left_out_of_the_canonical_bytes_when_unset(spec: RoundSpec) -> None:
    text = canonical_bytes(spec).decode()
    assert '"p_percent"' not in text and '"dominance_threshold"' not in text
    assert spec.p_percent is None and spec.p_rule == Fraction(1, 10)
    strict = spec.model_copy(update={"p_percent": 12.5})
    assert '"p_percent":12.5' in canonical_bytes(strict).decode() and strict.p_rule == Fraction(1, 8)
    assert RoundSpec.model_validate_json(strict.model_dump_json()) == strict
    assert example_spec(p_percent=0.3).p_rule == Fraction(3, 1000)  # the decimal as written, not the binary float


def test_floats_are_written_by_ecmascript_rules(spec: RoundSpec) -> None:
    text = canonical_bytes(spec).decode()
    assert '"CO2":0.5703' in text
    assert '"bound":10000000,' in text  # weight bound 1e7: RFC 8785 writes integral floats without ".0"


def test_a_scale_the_canonical_encoding_cannot_carry_exactly_is_refused(spec: RoundSpec) -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1000000000000000"):
        RoundSpec.model_validate({**spec.model_dump(mode="json"), "weight": {"scale": 10**16}})


def test_signed_spec_verifies_and_returns_the_spec(spec: RoundSpec, association: Ed25519PrivateKey) -> None:
    signed = sign_spec(spec, association)
    assert verify_spec(signed, public_key_b64(association)) == spec
    wire = SignedSpec.model_validate_json(signed.model_dump_json())
    assert verify_spec(wire, public_key_b64(association)) == spec


@pytest.mark.parametrize(
    "change",
    [
        {"min_participants": 2},
        {"max_participants": 999},
        {"dominance_threshold": 0.61},
        {"p_percent": 12.5},
        {"statistics": ["weighted_mean"]},
        {"region": "CN-YN"},
        {"protocol": "paillier"},
        {"deadline": datetime(2025, 6, 30, 16, 0, 1, tzinfo=UTC)},
    ],
)
def test_changing_any_field_after_signing_raises_invalid_signature(
    spec: RoundSpec, association: Ed25519PrivateKey, change: dict[str, object]
) -> None:
    signed = sign_spec(spec, association)
    tampered = signed.model_copy(update={"spec": spec.model_copy(update=change)})
    with pytest.raises(InvalidSignature):
        verify_spec(tampered, public_key_b64(association))


def test_changing_a_component_bound_or_background_factor_raises_invalid_signature(
    spec: RoundSpec, association: Ed25519PrivateKey
) -> None:
    signed = sign_spec(spec, association)
    public = public_key_b64(association)
    looser = _with_component(spec, 2, bound=60_000.0)
    with pytest.raises(InvalidSignature):
        verify_spec(signed.model_copy(update={"spec": looser}), public)
    data = json.loads(signed.model_dump_json())
    flow = spec.components[2].flow
    data["spec"]["background_factors"][flow]["CO2"] = 0.5704
    with pytest.raises(InvalidSignature):
        verify_spec(SignedSpec.model_validate(data), public)


def test_spec_signed_by_another_key_is_refused_even_if_it_names_itself(
    spec: RoundSpec, association: Ed25519PrivateKey
) -> None:
    mallory = generate_identity()
    forged = sign_spec(spec, mallory)  # a valid signature, by the wrong key
    with pytest.raises(InvalidSignature):
        verify_spec(forged, public_key_b64(association))
    relabelled = forged.model_copy(update={"signer": public_key_b64(association)})
    with pytest.raises(InvalidSignature):
        verify_spec(relabelled, public_key_b64(association))
    with pytest.raises(InvalidSignature):
        verify_spec(forged, "not base64 !")


def test_verify_spec_validates_the_overflow_proof_unless_told_not_to(
    spec: RoundSpec, association: Ed25519PrivateKey
) -> None:
    risky = _with_component(spec, 2, scale=10**12)
    signed = sign_spec(risky, association)
    with pytest.raises(SpecError, match="x\\[AC electricity\\]"):
        verify_spec(signed, public_key_b64(association))
    assert verify_spec(signed, public_key_b64(association), validate=False) == risky
