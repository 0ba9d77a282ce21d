"""Contribution vectors: known answers for one firm, and refusals that name the component and never clip."""

from __future__ import annotations

import math
from typing import Any

import pytest
from example_round import FirmInput, example_firms, example_spec

from protocols.contribution import (
    Contribution,
    build_contribution,
    footprint_from_components,
    vector_layout,
)
from protocols.encoding import from_ring
from protocols.errors import ContributionError
from protocols.spec import ALL_STATISTICS, RoundSpec, spec_hash


@pytest.fixture(scope="module")
def spec() -> RoundSpec:
    """The example round with every statistic, so that every slot kind is encoded (hence 10 firms at least)."""
    return example_spec(statistics=list(ALL_STATISTICS), min_participants=10)


@pytest.fixture(scope="module")
def firm(spec: RoundSpec) -> FirmInput:
    return example_firms(spec)[0]


def _build(spec: RoundSpec, firm: FirmInput, **changes: Any) -> Contribution:
    args: dict[str, Any] = {
        "values": dict(firm.values), "weight": firm.weight, "footprint_by_gas": dict(firm.footprint_by_gas)
    }
    args.update(changes)
    return build_contribution(spec, **args)


def _flow(spec: RoundSpec, name: str) -> str:
    return next(c.flow for c in spec.components if c.name_en == name)


def test_known_answer_slots_of_smelter_a(spec: RoundSpec, firm: FirmInput) -> None:
    c = _build(spec, firm)
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert c.spec_hash == spec_hash(spec)
    assert len(c.ints) == len(vector_layout(spec))
    assert ints["count"] == 1
    assert ints["w"] == 1_200_000
    assert "w2" not in ints  # release 0.1's Σw² is no longer collected
    assert ints["x[Alumina]"] == 1_925_000  # 1.925 t/t at scale 1e6
    assert ints["wx[Alumina]"] == 2_310_000_000_000  # 1.2e6 t x 1.925 at scale 1e6
    assert ints["wx[AC electricity]"] == 16_020_000_000_000  # 1.2e6 x 13350 at scale 1e3
    # w x^2 of electricity: 1.2e6 x 13350^2 = 2.138670e14 at the fitted scale 1/10
    assert ints["wx2[AC electricity]"] == 21_386_700_000_000
    assert ints["x[CF4]"] == 32_000
    f_total = sum(firm.footprint_by_gas.values())
    assert f_total == pytest.approx(11_944.38)
    hist = {name: v for name, v in ints.items() if name.startswith("hist")}
    assert sum(hist.values()) == 1 and hist["hist[11000,12000)"] == 1
    assert ints["F"] == round(f_total * 1000)


def test_preview_rows_show_plaintext_value_unit_and_integer(spec: RoundSpec, firm: FirmInput) -> None:
    rows = {r.slot: r for r in _build(spec, firm).preview()}
    row = rows["x[AC electricity]"]
    assert (row.value, row.unit, row.integer) == (13350.0, "kWh/t", 13_350_000)
    assert rows["wx[Alumina]"].unit == "t·t/t"
    assert rows["wx2[AC electricity]"].value == pytest.approx(1.2e6 * 13350.0**2)
    assert rows["F"].unit == "kg CO2e/t"


def test_the_default_linear_round_encodes_only_counts_production_and_weighted_sums(firm: FirmInput) -> None:
    linear = example_spec()
    c = build_contribution(linear, firm.values, firm.weight, firm.footprint_by_gas)
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert {s.kind for s in c.slots} == {"count", "w", "n", "wx", "nF", "wF"}
    assert (ints["count"], ints["w"], ints["n[Alumina]"]) == (1, 1_200_000, 1)
    assert ints["wx[Alumina]"] == 2_310_000_000_000 and ints["wx[AC electricity]"] == 16_020_000_000_000
    assert ints["wF[CF4]"] == round(1_200_000 * 0.032 * 6630.0 * 1000)  # t × kg CO2e/t at scale 1e3


def test_ring_vector_round_trips(spec: RoundSpec, firm: FirmInput) -> None:
    c = _build(spec, firm)
    assert from_ring(c.to_ring()) == c.ints


def test_value_at_the_bound_is_accepted_and_just_above_is_refused(spec: RoundSpec, firm: FirmInput) -> None:
    alumina = _flow(spec, "Alumina")
    c = _build(spec, firm, values={**firm.values, alumina: 5.0})
    assert c.value("x[Alumina]") == 5.0
    with pytest.raises(ContributionError):
        _build(spec, firm, values={**firm.values, alumina: math.nextafter(5.0, 6.0)})


def test_out_of_bound_value_is_refused_naming_component_value_unit_and_bound(
    spec: RoundSpec, firm: FirmInput
) -> None:
    alumina = _flow(spec, "Alumina")
    with pytest.raises(ContributionError) as info:
        _build(spec, firm, values={**firm.values, alumina: 7.2})
    message = str(info.value)
    for part in ("'Alumina'", "氧化铝", alumina, "7.2 t/t", "bound 5 t/t", "not clipped"):
        assert part in message
    err = info.value
    assert (err.component, err.flow, err.value, err.unit, err.bound) == ("Alumina", alumina, 7.2, "t/t", 5.0)


def test_negative_value_is_refused_where_the_spec_does_not_allow_it(spec: RoundSpec, firm: FirmInput) -> None:
    power = _flow(spec, "AC electricity")
    with pytest.raises(ContributionError, match=r"'AC electricity'.*-13350 kWh/t is negative") as info:
        _build(spec, firm, values={**firm.values, power: -13350.0})
    assert info.value.flow == power


def test_negative_value_is_encoded_where_the_spec_allows_it(spec: RoundSpec, firm: FirmInput) -> None:
    components = list(spec.components)
    components[3] = components[3].model_copy(update={"allow_negative": True})
    signed_spec = spec.model_copy(update={"components": components})
    co2 = components[3].flow
    c = _build(signed_spec, firm, values={**firm.values, co2: -12.5})
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert ints["x[CO2, process]"] == -12_500
    assert ints["wx[CO2, process]"] == -15_000_000_000
    assert ints["wx2[CO2, process]"] > 0
    assert from_ring(c.to_ring())[c.slots.index(next(s for s in c.slots if s.name == "x[CO2, process]"))] == -12_500


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.9", None])
def test_non_finite_or_non_numeric_value_is_refused(spec: RoundSpec, firm: FirmInput, bad: object) -> None:
    alumina = _flow(spec, "Alumina")
    with pytest.raises(ContributionError, match="'Alumina'.*not a finite number"):
        _build(spec, firm, values={**firm.values, alumina: bad})


def test_missing_component_is_refused_unless_confirmed_zero(spec: RoundSpec, firm: FirmInput) -> None:
    c2f6 = _flow(spec, "C2F6")
    values = {k: v for k, v in firm.values.items() if k != c2f6}
    with pytest.raises(ContributionError, match="'C2F6'.*no value.*confirmed_zeros") as info:
        _build(spec, firm, values=values)
    assert info.value.flow == c2f6
    c = _build(spec, firm, values=values, confirmed_zeros={c2f6.upper()})
    assert c.value("x[C2F6]") == 0.0
    explicit = _build(spec, firm, values={**values, c2f6: 0.0})
    assert explicit.ints == c.ints


def test_value_that_contradicts_a_confirmed_zero_is_refused(spec: RoundSpec, firm: FirmInput) -> None:
    c2f6 = _flow(spec, "C2F6")
    with pytest.raises(ContributionError, match="also confirmed as zero"):
        _build(spec, firm, confirmed_zeros={c2f6})


def test_unknown_flow_is_refused_and_flow_keys_are_case_insensitive(spec: RoundSpec, firm: FirmInput) -> None:
    with pytest.raises(ContributionError, match="not components"):
        _build(spec, firm, values={**firm.values, "00000000-0000-0000-0000-000000000000": 1.0})
    upper = {k.upper(): v for k, v in firm.values.items()}
    assert _build(spec, firm, values=upper).ints == _build(spec, firm).ints


@pytest.mark.parametrize(
    ("weight", "message"),
    [(0.0, "rounds to 0"), (0.4, "rounds to 0"), (-5.0, "negative"), (2e7, "exceeds"), (math.nan, "finite")],
)
def test_weight_must_be_positive_and_within_bound(
    spec: RoundSpec, firm: FirmInput, weight: float, message: str
) -> None:
    with pytest.raises(ContributionError, match=f"annual production.*{message}"):
        _build(spec, firm, weight=weight)


def test_footprint_gases_must_all_be_given_or_confirmed_zero(spec: RoundSpec, firm: FirmInput) -> None:
    partial = {g: v for g, v in firm.footprint_by_gas.items() if g != "N2O"}
    with pytest.raises(ContributionError, match="gas 'N2O': no value"):
        _build(spec, firm, footprint_by_gas=partial)
    c = _build(spec, firm, footprint_by_gas=partial, confirmed_zeros={"N2O"})
    assert c.value("wF[N2O]") == 0.0
    with pytest.raises(ContributionError, match="SF6"):
        _build(spec, firm, footprint_by_gas={**firm.footprint_by_gas, "SF6": 1.0})


def test_footprint_total_beyond_bound_is_refused_even_if_each_gas_fits(spec: RoundSpec, firm: FirmInput) -> None:
    gases = dict.fromkeys(spec.footprint.gases, 0.0) | {"CO2": 30_000.0, "CH4": 30_000.0}
    with pytest.raises(ContributionError, match="total over gases: value 60000 kg CO2e/t exceeds"):
        _build(spec, firm, footprint_by_gas=gases)


@pytest.mark.parametrize(
    ("total", "bin_name"),
    [
        (0.0, "hist[0,4000)"),
        (9000.0, "hist[9000,10000)"),
        (8999.999, "hist[8000,9000)"),
        (50000.0, "hist[30000,50000]"),
    ],
)
def test_histogram_is_one_hot_with_half_open_bins_and_a_closed_last_bin(
    spec: RoundSpec, firm: FirmInput, total: float, bin_name: str
) -> None:
    gases = dict.fromkeys(spec.footprint.gases, 0.0) | {"CO2": total}
    c = _build(spec, firm, footprint_by_gas=gases)
    hist = {s.name: i for s, i in zip(c.slots, c.ints, strict=True) if s.kind == "hist"}
    assert [name for name, v in hist.items() if v] == [bin_name]


def test_footprint_from_components_applies_the_round_background(spec: RoundSpec, firm: FirmInput) -> None:
    by_gas = footprint_from_components(spec, firm.values)
    power = _flow(spec, "AC electricity")
    alumina = _flow(spec, "Alumina")
    anode = _flow(spec, "Carbon anode, net")
    co2 = _flow(spec, "CO2, process")
    expected_co2 = (
        firm.values[alumina] * 1050.0
        + firm.values[anode] * 560.0
        + firm.values[power] * 0.5703
        + firm.values[co2] * 1.0
    )
    assert by_gas["CO2"] == pytest.approx(expected_co2, rel=1e-15)
    assert by_gas["CF4"] == pytest.approx(0.032 * 6630.0, rel=1e-15)
    assert set(by_gas) == set(spec.footprint.gases)


@pytest.mark.parametrize(
    ("value", "flag"),
    [(0.032, 1), (0.0, 0), (0.0000004, 0), (0.0000005, 0), (0.0000006, 1)],  # CF4 at scale 1e6
)
def test_reporter_slot_is_one_exactly_when_the_quantised_value_is_not_zero(
    spec: RoundSpec, firm: FirmInput, value: float, flag: int
) -> None:
    values = dict(firm.values) | {_flow(spec, "CF4"): value}
    c = _build(spec, firm, values=values)
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert ints["n[CF4]"] == flag
    assert (ints["x[CF4]"] != 0) == bool(flag)  # a value that rounds to 0 adds nothing to the sums
    assert ints["n[Alumina]"] == 1


def test_reporter_slot_is_one_for_a_negative_value_and_zero_for_a_confirmed_zero(spec: RoundSpec, firm: FirmInput) -> None:
    signed = spec.model_copy(
        update={"components": [c.model_copy(update={"allow_negative": c.name_en == "CO2, process"}) for c in spec.components]}
    )
    co2, cf4 = _flow(signed, "CO2, process"), _flow(signed, "CF4")
    values = {k: v for k, v in firm.values.items() if k != cf4} | {co2: -12.5}
    c = build_contribution(signed, values, firm.weight, firm.footprint_by_gas, confirmed_zeros=[cf4])
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert (ints["n[CO2, process]"], ints["x[CO2, process]"]) == (1, -12_500)
    assert (ints["n[CF4]"], ints["x[CF4]"], ints["wx[CF4]"]) == (0, 0, 0)


def test_a_value_given_under_an_alias_flow_is_refused_with_the_component_flow(spec: RoundSpec, firm: FirmInput) -> None:
    alias = "aaaaaaaa-0000-4000-8000-000000000001"
    power = _flow(spec, "AC electricity")
    merged = spec.model_copy(
        update={"components": [c.model_copy(update={"aliases": [alias]}) if c.flow == power else c for c in spec.components]}
    )
    values = {k: v for k, v in firm.values.items() if k != power} | {alias: 13_350.0}
    with pytest.raises(ContributionError, match=f"alias of component 'AC electricity'.*under its flow {power}"):
        build_contribution(merged, values, firm.weight, firm.footprint_by_gas)


@pytest.mark.parametrize(
    ("value", "flag"),
    [(31.0, 1), (0.0, 0), (0.0004, 0), (0.00049, 0), (0.00051, 1)],  # footprint scale 1e3
)
def test_gas_reporter_slot_is_one_exactly_when_the_quantised_footprint_of_the_gas_is_not_zero(
    spec: RoundSpec, firm: FirmInput, value: float, flag: int
) -> None:
    # Prepare
    gases = dict(firm.footprint_by_gas) | {"N2O": value}

    # Execute
    c = _build(spec, firm, footprint_by_gas=gases)

    # Assert
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert ints["nF[N2O]"] == flag
    assert (ints["wF[N2O]"] != 0) == bool(flag)  # a footprint that rounds to 0 adds nothing to the sums
    assert ints["nF[CO2]"] == ints["nF[C2F6]"] == 1


def test_gas_reporter_slot_counts_a_negative_footprint_and_not_a_confirmed_zero(spec: RoundSpec, firm: FirmInput) -> None:
    # Prepare: a round that allows negative footprints (biogenic removals)
    signed = spec.model_copy(update={"footprint": spec.footprint.model_copy(update={"allow_negative": True})})
    gases = {g: v for g, v in firm.footprint_by_gas.items() if g != "CF4"} | {"N2O": -2.5}

    # Execute
    c = build_contribution(signed, firm.values, firm.weight, gases, confirmed_zeros=["CF4"])

    # Assert
    ints = dict(zip([s.name for s in c.slots], c.ints, strict=True))
    assert (ints["nF[N2O]"], ints["wF[N2O]"]) == (1, round(-2.5 * firm.weight * 1000))
    assert (ints["nF[CF4]"], ints["wF[CF4]"]) == (0, 0)
