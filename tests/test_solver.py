"""The inventory solver: linking, footprints, contribution trees, ill-posed systems, TianGong."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lca.errors import NoReferenceFlow, NotFound, SingularSystem
from lca.gwp import characterisation_method
from lca.io.ilcd import read_ilcd
from lca.model import (
    Bundle,
    Exchange,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    LifeCycleModel,
    ModelLink,
    Process,
    Unit,
    UnitGroup,
)
from lca.solver import (
    TechnoSystem,
    all_footprints,
    build_system,
    contribution_tree,
    footprint,
    resolve_method,
)

TIANGONG = Path(__file__).resolve().parent / "data" / "tiangong_sample" / "ILCD"

with warnings.catch_warnings():
    # bw2calc warns at import time that pypardiso is not installed.
    warnings.simplefilter("ignore")
    import bw2calc
    import bw_processing as bwp

# -- a hand-computable system ------------------------------------------------------------------
#
# Units: mass in kg (t = 1000 kg), energy in MJ (kWh = 3.6 MJ).
#
# P  power plant (CN): 10 MJ electricity out; 1 MJ electricity in (own use); 2 kg coal in;
#    4.5 kg CO2 fossil to air.                         -> A[E, P] = 10 - 1 = 9
# M  coal mine (CN): 1 t coal out (= 1000 kg); 100 kWh electricity in (= 360 MJ);
#    5 kg CH4 fossil to air.                           -> loop P <-> M
# R  biorefinery (CN), two reference flows, allocation 0.75 to ethanol (exchange "a"),
#    0.25 to heat (exchange "b"): 2 kg ethanol out, 10 MJ heat out; 9 MJ electricity in;
#    0.1 kg CH4 non-fossil to air; 3 kg CO2 taken from air; 1 kg CO2 biogenic to air;
#    0.5 kg enzyme in (no provider: cut off); 5 kg CO2 to water (not characterised).
# Q  a second power plant (DE, smaller UUID than P): 1 MJ electricity out, 2 kg CO2 fossil.
#
# Electricity, per MJ: A = [[9, -360], [-2, 1000]] (rows E, C; columns P, M).
#   A s = (1, 0):  s_M = 0.002 s_P;  9 s_P - 0.72 s_P = 1  ->  s_P = 1/8.28, s_M = 0.002/8.28
#   AR5: (4.5 + 5 * 0.002 * 28) / 8.28 = 4.78 / 8.28 = 0.57729468599...
#   AR6: (4.5 + 5 * 0.002 * 29.8) / 8.28 = 4.798 / 8.28
# Coal, per kg: s_P = 40 s_M; 1000 s_M - 80 s_M = 1 -> s_M = 1/920, s_P = 40/920
#   AR5: (4.5 * 40 + 5 * 28) / 920 = 320 / 920
# Ethanol, per kg: column a = 0.75 x the non-reference exchanges, diagonal 2 -> s_a = 0.5;
#   electricity 0.5 * 0.75 * 9 = 3.375 MJ;
#   direct AR5 = 0.5 * 0.75 * (0.1 * 28 - 3 + 1) = 0.3 (CH4 1.05, CO2 +0.375 - 1.125)
#   total AR5 = 3.375 * 4.78 / 8.28 + 0.3;   fossil = 3.375 * 4.78 / 8.28, biogenic = 0.3
#   CO2 = 3.375 * 4.5 / 8.28 - 0.75;  CH4 = 3.375 * 0.28 / 8.28 + 1.05
#   AR6 direct = 0.375 * (0.1 * 27.0 - 2) = 0.2625
# Heat, per MJ: s_b = 0.1; electricity 0.1 * 0.25 * 9 = 0.225 MJ;
#   direct AR5 = 0.1 * 0.25 * (2.8 - 2) = 0.02; total = 0.225 * 4.78 / 8.28 + 0.02

UG_MASS, UG_ENERGY, FP_MASS, FP_ENERGY = "ug-mass", "ug-energy", "fp-mass", "fp-energy"
E, C, ETH, HEAT, ENZ = "f-electricity", "f-coal", "f-ethanol", "f-heat", "f-enzyme"
CO2, CO2_BIO, CO2_AIR, CH4, CH4_BIO, CO2_WATER = "e-co2", "e-co2-bio", "e-co2-air", "e-ch4", "e-ch4-bio", "e-co2-w"
P, M, R = "00000000-0000-0000-0000-0000000000b1", "00000000-0000-0000-0000-0000000000c1", "00000000-0000-0000-0000-0000000000d1"
Q = "00000000-0000-0000-0000-0000000000a1"
AIR = ["Emissions", "Emissions to air", "Emissions to air, unspecified"]

ELEC_AR5 = 4.78 / 8.28
ELEC_AR6 = 4.798 / 8.28


def _x(iid: str, flow: str, direction: str, amount: float, unit: str, **kw: object) -> Exchange:
    return Exchange(internal_id=iid, flow=flow, direction=direction, amount=amount, unit=unit, **kw)  # type: ignore[arg-type]


def _flow(uuid: str, name: str, kind: str = "product", energy: bool = False, **kw: object) -> Flow:
    fp = FP_ENERGY if energy else FP_MASS
    return Flow(uuid=uuid, name={"en": name}, flow_type=kind,  # type: ignore[arg-type]
                properties=[FlowPropertyFactor(flow_property=fp, reference=True)], **kw)  # type: ignore[arg-type]


def hand_bundle() -> Bundle:
    b = Bundle()
    b.add(UnitGroup(uuid=UG_MASS, name={"en": "mass"}, reference_unit="kg",
                    units=[Unit(name="kg", factor=1.0), Unit(name="t", factor=1000.0)]))
    b.add(UnitGroup(uuid=UG_ENERGY, name={"en": "energy"}, reference_unit="MJ",
                    units=[Unit(name="MJ", factor=1.0), Unit(name="kWh", factor=3.6)]))
    b.add(FlowProperty(uuid=FP_MASS, name={"en": "Mass"}, unit_group=UG_MASS))
    b.add(FlowProperty(uuid=FP_ENERGY, name={"en": "Energy"}, unit_group=UG_ENERGY))
    for f in (
        _flow(E, "electricity", energy=True), _flow(C, "hard coal"), _flow(ETH, "ethanol"),
        _flow(HEAT, "heat", energy=True), _flow(ENZ, "enzyme"),
        _flow(CO2, "carbon dioxide (fossil)", "elementary", compartment=AIR, cas="124-38-9"),
        _flow(CO2_BIO, "carbon dioxide (biogenic)", "elementary", compartment=AIR, cas="124-38-9"),
        _flow(CO2_AIR, "carbon dioxide", "elementary", compartment=["Resources", "Resources from air"], cas="124-38-9"),
        _flow(CH4, "methane (fossil)", "elementary", compartment=AIR, cas="74-82-8"),
        _flow(CH4_BIO, "Methane, non-fossil", "elementary", compartment=AIR, cas="74-82-8"),
        _flow(CO2_WATER, "carbon dioxide", "elementary", compartment=["Emissions", "Emissions to water"], cas="124-38-9"),
    ):
        b.add(f)
    b.add(Process(uuid=P, name={"en": "power plant", "zh": "发电厂"}, location="CN", reference_exchanges=["1"],
                  exchanges=[_x("1", E, "output", 10, "MJ"), _x("2", E, "input", 1, "MJ"),
                             _x("3", C, "input", 2, "kg"), _x("4", CO2, "output", 4.5, "kg")]))
    b.add(Process(uuid=M, name={"en": "coal mine", "zh": "煤矿"}, location="CN", reference_exchanges=["1"],
                  exchanges=[_x("1", C, "output", 1, "t"), _x("2", E, "input", 100, "kWh"),
                             _x("3", CH4, "output", 5, "kg")]))
    share = {"a": 0.75, "b": 0.25}
    b.add(Process(uuid=R, name={"en": "biorefinery", "zh": "生物炼制"}, location="CN", reference_exchanges=["a", "b"],
                  exchanges=[_x("a", ETH, "output", 2, "kg"), _x("b", HEAT, "output", 10, "MJ"),
                             _x("c", E, "input", 9, "MJ", allocation=share),
                             _x("d", CH4_BIO, "output", 0.1, "kg", allocation=share),
                             _x("e", CO2_AIR, "input", 3, "kg", allocation=share),
                             _x("f", CO2_BIO, "output", 1, "kg", allocation=share),
                             _x("g", ENZ, "input", 0.5, "kg", allocation=share),
                             _x("h", CO2_WATER, "output", 5, "kg", allocation=share)]))
    b.add(Process(uuid=Q, name={"en": "power plant DE"}, location="DE", reference_exchanges=["1"],
                  exchanges=[_x("1", E, "output", 1, "MJ"), _x("2", CO2, "output", 2, "kg")]))
    return b


def test_footprint_of_a_loop_with_own_consumption_matches_the_hand_computation() -> None:
    b = hand_bundle()
    assert footprint(b, P, "AR5").total == pytest.approx(ELEC_AR5, rel=1e-12)
    assert footprint(b, P, "AR6").total == pytest.approx(ELEC_AR6, rel=1e-12)
    assert footprint(b, M, "AR5").total == pytest.approx(320 / 920, rel=1e-12)
    fp = footprint(b, P)
    assert fp.scaling == pytest.approx({P: 1 / 8.28, M: 0.002 / 8.28}, rel=1e-12)
    assert fp.by_gas == pytest.approx({"CO2": 4.5 / 8.28, "CH4": 0.28 / 8.28}, rel=1e-12)
    assert (fp.fossil, fp.biogenic, fp.land_use) == pytest.approx((ELEC_AR5, 0.0, 0.0), rel=1e-12)


def test_amounts_are_converted_to_the_reference_unit_of_the_flow() -> None:
    system = build_system(hand_bundle(), root=P)
    p, m = system.column_of(P), system.column_of(M)
    assert system.A[p, p] == 9  # 10 MJ out - 1 MJ own use
    assert system.A[m, m] == 1000  # 1 t
    assert system.A[p, m] == pytest.approx(-360)  # 100 kWh


def test_co_products_are_split_by_the_allocation_factors_of_the_data() -> None:
    b = hand_bundle()
    eth = footprint(b, R, "AR5", reference="a")
    assert eth.total == pytest.approx(3.375 * ELEC_AR5 + 0.3, rel=1e-12)
    assert eth.fossil == pytest.approx(3.375 * ELEC_AR5, rel=1e-12)
    assert eth.biogenic == pytest.approx(0.3, rel=1e-12)
    assert eth.by_gas == pytest.approx({"CO2": 3.375 * 4.5 / 8.28 - 0.75, "CH4": 3.375 * 0.28 / 8.28 + 1.05}, rel=1e-12)
    assert footprint(b, R, "AR6", reference="a").total == pytest.approx(3.375 * ELEC_AR6 + 0.2625, rel=1e-12)
    heat = footprint(b, R, "AR5", reference="b")
    assert heat.total == pytest.approx(0.225 * ELEC_AR5 + 0.02, rel=1e-12)
    assert footprint(b, R).total == eth.total  # the first reference exchange by default


def test_all_footprints_by_one_transposed_solve_equal_the_single_footprints() -> None:
    b = hand_bundle()
    everything = all_footprints(b, "AR5")
    assert set(everything) == {P, M, Q, f"{R}:a", f"{R}:b"}
    assert everything[P] == pytest.approx(ELEC_AR5, rel=1e-12)
    assert everything[f"{R}:a"] == pytest.approx(3.375 * ELEC_AR5 + 0.3, rel=1e-12)
    assert everything[f"{R}:b"] == pytest.approx(0.225 * ELEC_AR5 + 0.02, rel=1e-12)
    assert everything[Q] == pytest.approx(2.0)


def test_provider_in_the_consumers_location_is_preferred_over_the_smallest_uuid() -> None:
    system = build_system(hand_bundle(), root=R)
    link = next(lk for lk in system.links if lk.exchange == "c")
    assert (system.columns[link.provider].process, link.rule) == (P, "location")


def test_explicit_provider_is_preferred_and_smallest_uuid_breaks_remaining_ties() -> None:
    b = hand_bundle()
    b.processes[R].exchanges[2].provider = Q
    system = build_system(b, root=R)
    link = next(lk for lk in system.links if lk.exchange == "c")
    assert (system.columns[link.provider].process, link.rule) == (Q, "explicit")
    b.processes[R].exchanges[2].provider = None
    b.processes[R].location = "FR"
    system = build_system(b, root=R)
    link = next(lk for lk in system.links if lk.exchange == "c")
    assert (system.columns[link.provider].process, link.rule) == (Q, "smallest-uuid")


def test_unlinked_inputs_are_cut_off_and_listed_per_unit_of_product() -> None:
    fp = footprint(hand_bundle(), R, reference="a")
    assert fp.cutoffs == [{
        "process": R, "exchange": "g", "flow": ENZ, "flow_name": "enzyme", "kind": "input",
        "amount": pytest.approx(0.5 * 0.75 * 0.5), "unit": "kg", "reason": "no process in the bundle supplies it",
    }]


def test_waste_output_is_linked_to_its_treatment_and_a_by_product_is_not_credited() -> None:
    b = hand_bundle()
    b.add(_flow("f-ash", "ash", "waste"))
    b.add(Process(uuid="00000000-0000-0000-0000-0000000000e1", name={"en": "landfill"}, reference_exchanges=["1"],
                  exchanges=[_x("1", "f-ash", "input", 1, "kg"), _x("2", CO2, "output", 0.5, "kg")]))
    b.processes[Q].exchanges += [_x("3", "f-ash", "output", 0.1, "kg"), _x("4", HEAT, "output", 3, "MJ")]
    fp = footprint(b, Q)
    assert fp.total == pytest.approx(2 + 0.1 * 0.5)
    assert fp.scaling == pytest.approx({Q: 1.0, "00000000-0000-0000-0000-0000000000e1": 0.1})
    assert [(c["flow"], c["kind"], c["amount"]) for c in fp.cutoffs] == [(HEAT, "by-product", 3.0)]


def test_life_cycle_model_links_only_what_it_links() -> None:
    b = hand_bundle()
    b.add(LifeCycleModel(uuid="model-1", reference_process=R, processes=[R, P],
                         links=[ModelLink(provider=P, flow=E, recipient=R)]))
    system = build_system(b, model="model-1")
    assert {c.process for c in system.columns} == {R, P}
    # Without the mine the plant's coal is cut off: electricity is 4.5 / 9 kg CO2 per MJ.
    fp = footprint(b, R, "AR5", system=system)
    assert fp.total == pytest.approx(3.375 * 0.5 + 0.3, rel=1e-12)
    assert [c["flow"] for c in fp.cutoffs] == [ENZ, C]


def test_contribution_tree_adds_up_layer_by_layer_and_cuts_loops() -> None:
    b = hand_bundle()
    fp = footprint(b, R, "AR5", tree_depth=3, reference="a")
    tree = fp.tree
    assert tree is not None
    assert (tree.cumulative, tree.direct, tree.share) == pytest.approx((fp.total, 0.3, 1.0))
    [plant] = tree.children
    assert (plant.process, plant.name, plant.amount, plant.unit) == (P, {"en": "power plant", "zh": "发电厂"}, 3.375, "MJ")
    assert plant.direct == pytest.approx(4.5 * 3.375 / 9)
    [mine] = plant.children
    assert mine.process == M
    assert mine.amount == pytest.approx(0.75)
    [back] = mine.children
    assert back.process == P and back.loop and back.children == []
    assert back.amount == pytest.approx(0.27)
    assert back.cumulative == pytest.approx(0.27 * ELEC_AR5)
    for node in (tree, plant, mine):
        assert node.cumulative == pytest.approx(node.direct + sum(c.cumulative for c in node.children))
    # Expanding one layer at a time gives the same nodes.
    shallow = contribution_tree(build_system(b, root=R), R, 1, reference="a")
    assert shallow.children[0].expandable and shallow.children[0].children == []
    deeper = contribution_tree(build_system(b, root=R), P, 1, amount=3.375, total=fp.total,
                               path=shallow.children[0].path + (f"{R}:a",))
    assert deeper.children[0].cumulative == pytest.approx(mine.cumulative)
    assert deeper.share == pytest.approx(plant.share)


def test_footprint_to_dict_has_the_documented_keys() -> None:
    fp = footprint(hand_bundle(), P, "AR6", tree_depth=1)
    d = fp.to_dict()
    assert list(d) == ["process", "method", "gwp_set", "unit", "total", "by_gas", "fossil", "biogenic",
                       "land_use", "cutoffs", "tree"]
    assert (d["process"], d["gwp_set"], d["unit"]) == (P, "AR6", "kg CO2e")
    assert "tree" not in footprint(hand_bundle(), P).to_dict()


def test_unknown_method_or_process_is_refused() -> None:
    with pytest.raises(NotFound, match="AR5, AR6"):
        footprint(hand_bundle(), P, "AR9")
    with pytest.raises(NotFound, match="not in the bundle"):
        footprint(hand_bundle(), "nope")


# -- ill-posed systems ----------------------------------------------------------------------


def test_process_consuming_as_much_of_its_product_as_it_makes_is_named() -> None:
    b = hand_bundle()
    b.processes[P].exchanges[1].amount = 10  # 10 MJ out, 10 MJ own use
    with pytest.raises(SingularSystem, match="net output of its reference flow 'electricity' is 0") as err:
        footprint(b, R)
    assert err.value.processes == [P]


def test_process_whose_reference_product_is_an_input_is_named() -> None:
    b = hand_bundle()
    b.processes[M].exchanges[0].direction = "input"
    with pytest.raises(SingularSystem, match="is an input of product flow") as err:
        footprint(b, M)
    assert err.value.processes == [M]


def test_elementary_reference_flow_is_named() -> None:
    b = hand_bundle()
    b.processes[Q].reference_exchanges = ["2"]
    with pytest.raises(NoReferenceFlow, match="names elementary flow e-co2") as err:
        footprint(b, Q)
    assert err.value.processes == [Q]


def test_multi_output_process_without_allocation_factors_is_named() -> None:
    b = hand_bundle()
    b.processes[R].exchanges[3].allocation = {}
    with pytest.raises(NoReferenceFlow, match="exchange\\(s\\) d carry no allocation") as err:
        footprint(b, R)
    assert err.value.processes == [R]


@pytest.mark.parametrize("mine_needs_mj", [9000.0, 4500.0, 4500.0 * (1 - 1e-12)])
def test_loop_consuming_at_least_what_it_supplies_is_named(mine_needs_mj: float) -> None:
    # Loop gain = (2 kg coal / 9 MJ) * (x MJ / 1000 kg): 2 at 9000 MJ, 1 (exactly singular) at
    # 4500 MJ, 1 - 1e-12 (numerically singular) just below.
    b = hand_bundle()
    b.processes[M].exchanges[1] = _x("2", E, "input", mine_needs_mj, "MJ")
    with pytest.raises(SingularSystem, match="form a loop") as err:
        footprint(b, P)
    assert sorted(err.value.processes) == [P, M]


def test_skip_ill_posed_leaves_them_out_and_cuts_off_their_products() -> None:
    b = hand_bundle()
    b.processes[M].exchanges[0].direction = "input"
    system = build_system(b, skip_ill_posed=True)
    assert list(system.excluded) == [M]
    fp = footprint(b, P, system=system)
    assert fp.total == pytest.approx(4.5 / 9)
    assert [(c["flow"], c["reason"]) for c in fp.cutoffs] == [(C, "no process in the bundle supplies it")]
    with pytest.raises(NotFound, match=re.escape(f"left out as ill-posed: process {M} (coal mine)")):
        footprint(b, M, system=system)


# -- TianGong -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiangong() -> Bundle:
    bundle, _ = read_ilcd(TIANGONG)
    return bundle


ELEMENTARY_REFERENCE = ["31e4a22c", "4d048164", "4f665af1", "4fa6b080", "800e1f83", "a0594759"]
NEGATIVE_NET_OUTPUT = ["0092e030", "7509dc93", "f8812b3b"]
ZERO_NET_OUTPUT = ["119405cc"]  # consumes all the hard coal it mines


def _full(bundle: Bundle, prefix: str) -> str:
    return next(p for p in bundle.processes if p.startswith(prefix))


@pytest.mark.parametrize("prefix", ELEMENTARY_REFERENCE)
def test_tiangong_process_with_elementary_reference_flow_is_named(tiangong: Bundle, prefix: str) -> None:
    with pytest.raises(NoReferenceFlow, match="names elementary flow") as err:
        footprint(tiangong, _full(tiangong, prefix))
    assert err.value.processes == [_full(tiangong, prefix)]


@pytest.mark.parametrize("prefix", NEGATIVE_NET_OUTPUT + ZERO_NET_OUTPUT)
def test_tiangong_process_with_non_positive_net_output_is_named(tiangong: Bundle, prefix: str) -> None:
    with pytest.raises(SingularSystem, match="net output of its reference flow") as err:
        footprint(tiangong, _full(tiangong, prefix))
    assert err.value.processes == [_full(tiangong, prefix)]


def test_tiangong_consumer_of_an_ill_posed_provider_names_the_provider(tiangong: Bundle) -> None:
    paper = _full(tiangong, "76819b7b")  # copy paper, needs hard coal from 119405cc
    with pytest.raises(SingularSystem, match="supplies 7.3379e\\+11, consumes 7.3379e\\+11") as err:
        footprint(tiangong, paper)
    assert err.value.processes == [_full(tiangong, "119405cc")]
    assert footprint(tiangong, paper, skip_ill_posed=True).total > 0


def _bw2calc_scores(system: TechnoSystem, c: np.ndarray, columns: list[int]) -> list[float]:
    """Scores by bw2calc 3.1 on the same A, B and c, through bw_processing datapackages."""
    n = system.size
    A, B = system.A.tocoo(), system.B.tocoo()
    dp = bwp.create_datapackage()
    dp.add_persistent_vector(matrix="technosphere_matrix", name="A", data_array=A.data,
                             indices_array=np.array(list(zip(A.row, A.col, strict=True)), dtype=bwp.INDICES_DTYPE))
    dp.add_persistent_vector(matrix="biosphere_matrix", name="B", data_array=B.data,
                             indices_array=np.array(list(zip(B.row + n, B.col, strict=True)), dtype=bwp.INDICES_DTYPE))
    nz = np.flatnonzero(c)
    dp.add_persistent_vector(matrix="characterization_matrix", name="C", data_array=c[nz],
                             indices_array=np.array([(i + n, i + n) for i in nz], dtype=bwp.INDICES_DTYPE))
    lca = bw2calc.LCA({columns[0]: 1.0}, data_objs=[dp])
    lca.lci(factorize=True)
    lca.lcia()
    scores = []
    for j in columns:
        lca.lci({j: 1.0})
        lca.lcia_calculation()
        scores.append(float(lca.score))
    return scores


@pytest.mark.parametrize("gwp", ["AR5", "AR6", "6209b35f-9447-40b5-b68c-a1099e3674a0"])
def test_tiangong_footprints_agree_with_dense_numpy_and_bw2calc(tiangong: Bundle, gwp: str) -> None:
    system = build_system(tiangong, skip_ill_posed=True)
    assert len(system.excluded) == 10 and system.size == 30
    method = resolve_method(tiangong, gwp)
    ours = all_footprints(tiangong, method, system=system)
    c, _, _ = system.characterisation(method)
    dense = np.linalg.solve(system.A.toarray().T, system.B.toarray().T @ c)
    bw = _bw2calc_scores(system, c, list(range(system.size)))
    scale = max(abs(v) for v in ours.values())
    assert scale > 1
    for col in system.columns:
        roots = footprint(tiangong, col.process, method, skip_ill_posed=True).total  # reachable part only
        for other in (dense[col.index], bw[col.index], roots):
            assert ours[col.key] == pytest.approx(other, rel=1e-9, abs=1e-12 * scale)


def test_tiangong_ar6_and_ef31_agree_on_methane_and_nitrous_oxide(tiangong: Bundle) -> None:
    system = build_system(tiangong, skip_ill_posed=True)
    for col in system.columns:
        ours = footprint(tiangong, col.process, "AR6", system=system).by_gas
        ef = footprint(tiangong, col.process, "6209b35f-9447-40b5-b68c-a1099e3674a0", system=system).by_gas
        for gas in ("CH4", "N2O"):
            assert ours.get(gas, 0.0) == pytest.approx(ef.get(gas, 0.0), rel=1e-12)


def test_tiangong_biogenic_uptake_counts_minus_one_in_ours_and_zero_in_ef31(tiangong: Bundle) -> None:
    ours = characterisation_method(tiangong, "AR6")
    uptake = [cf for cf in ours.factors if tiangong.flows[cf.flow].compartment[:1] == ["Resources"]]
    assert [(cf.value, cf.origin) for cf in uptake] == [(-1.0, "biogenic")]
    ef = {cf.flow: cf.value for cf in tiangong.methods["6209b35f-9447-40b5-b68c-a1099e3674a0"].factors}
    assert ef[uptake[0].flow] == 0.0


def test_singular_matrix_found_by_the_factorisation_names_the_processes_involved() -> None:
    # Negative input amounts make positive off-diagonal entries, so the loop check does not
    # apply: A = [[9, 4500], [2, 1000]] is exactly singular (9 * 1000 = 2 * 4500).
    b = hand_bundle()
    b.processes[P].exchanges[2].amount = -2
    b.processes[M].exchanges[1] = _x("2", E, "input", -4500, "MJ")
    with pytest.raises(SingularSystem, match="singular \\(Factor is exactly singular\\)") as err:
        footprint(b, P)
    assert sorted(err.value.processes) == [P, M]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_productive_systems_agree_with_a_dense_solve(data: st.DataObject) -> None:
    # n single-output processes, each buying from up to 3 others with inputs per unit of output
    # summing to < 1 (so the system is productive), emitting CO2 and CH4.
    n = data.draw(st.integers(2, 8))
    b = hand_bundle()
    for p in list(b.processes):
        del b.processes[p]
    pids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(n)]
    products = [f"f-product-{i}" for i in range(n)]
    for fid in products:
        b.add(_flow(fid, fid))
    for j in range(n):
        out = data.draw(st.floats(0.1, 100))
        suppliers = data.draw(st.lists(st.integers(0, n - 1), max_size=3))
        shares = [data.draw(st.floats(0.0, 0.3)) for _ in suppliers]
        exchanges = [_x("0", products[j], "output", out, "kg"),
                     _x("1", CO2, "output", data.draw(st.floats(0, 10)), "kg"),
                     _x("2", CH4, "output", data.draw(st.floats(0, 1)), "kg")]
        exchanges += [_x(f"i{k}", products[i], "input", x * out, "kg") for k, (i, x) in enumerate(zip(suppliers, shares, strict=True))]
        b.add(Process(uuid=pids[j], name={"en": f"p{j}"}, reference_exchanges=["0"], exchanges=exchanges))
    system = build_system(b)
    method = resolve_method(b, "AR6")
    c, _, _ = system.characterisation(method)
    dense = np.linalg.solve(system.A.toarray().T, system.B.toarray().T @ c)
    everything = all_footprints(b, method, system=system)
    for col in system.columns:
        single = footprint(b, col.process, method).total
        assert everything[col.key] == pytest.approx(dense[col.index], rel=1e-9, abs=1e-9)
        assert single == pytest.approx(dense[col.index], rel=1e-9, abs=1e-9)
