"""Both protocols on real data: a TianGong unit process mapped to a round, against plaintext numpy.

TianGong's "Methanol production; syngas to methanol route" (23c16cbf, Guangdong) is one real
firm; three more firms are derived from it by changing its amounts and production (the real data
has one process per product). Each firm is mapped to the round's schema by the node's code
(units converted through unit groups, footprint by the inventory solver on the TianGong
supply chain), aggregated by secagg and by paillier, and the statistics must equal a plaintext
computation to within the spec's fixed-point resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stage_runner import run_in_clear

from keys.identity import generate_identity, public_key_b64
from lca.io.ilcd import read_ilcd
from lca.model import Bundle, Process
from lca.refdata import reference_bundle, stable_uuid
from node.contribute import make_contribution, map_process
from pcf.samples import spec_for_processes
from protocols import paillier
from protocols.contribution import Contribution
from protocols.disclosure import Stage, StagedRound, stage_round_id, stage_vector
from protocols.secagg import (
    RoundParams,
    SecAggClient,
    SecAggServer,
    run_in_process,
    to_signed,
)
from protocols.spec import RoundSpec
from protocols.stats import AggregateStatistics, staged_statistics

TIANGONG = Path(__file__).resolve().parent / "data" / "tiangong_sample" / "ILCD"
METHANOL = "23c16cbf"
# (amount multiplier per exchange index, annual production in kg: the unit of the reference exchange)
FIRMS = [(None, 120e6), ((1.04, 0.9, 1.1, 0.97, 1.0, 1.2), 80e6),
         ((0.96, 1.15, 0.8, 1.08, 0.9, 0.85), 150e6), ((1.01, 1.0, 1.05, 0.92, 1.1, 1.3), 60e6)]


@pytest.fixture(scope="module")
def round_setup() -> tuple[RoundSpec, Bundle, list[Process]]:
    bundle, _diags = read_ilcd(TIANGONG)
    view = reference_bundle()
    view.merge(bundle)
    real = next(p for u, p in view.processes.items() if u.startswith(METHANOL))
    firms = []
    for i, (factors, production) in enumerate(FIRMS):
        exchanges = [
            e if factors is None or e.internal_id in real.reference_exchanges
            else e.model_copy(update={"amount": e.amount * factors[k % len(factors)]})
            for k, e in enumerate(real.exchanges)
        ]
        uuid = real.uuid if i == 0 else stable_uuid("test-firm", "methanol", str(i))
        firm = real.model_copy(update={"uuid": uuid, "exchanges": exchanges, "annual_production": production})
        view.add(firm)
        firms.append(firm)
    spec = spec_for_processes(view, firms, name_en="Methanol", name_zh="甲醇", code="2614",
                              round_id="tiangong-methanol", region="CN-GD", reference_unit="t",
                              scales={"kg": (10**3, 1e4), "MJ": (10**2, 1e4), "m3": (10**3, 5e3)},
                              footprint_bound=1e4, production_bound=1e6, histogram_edges=[0, 500, 1000, 2000, 5000, 1e4])
    return spec, view, firms


def contributions(spec: RoundSpec, view: Bundle, firms: list[Process]) -> list[Contribution]:
    return [make_contribution(spec, map_process(spec, view, f.uuid), confirm_zeros=True) for f in firms]


def plaintext(spec: RoundSpec, view: Bundle, firms: list[Process]) -> dict[str, np.ndarray]:
    maps = [map_process(spec, view, f.uuid) for f in firms]
    w = np.array([m.weight for m in maps])
    x = np.array([[m.values.get(c.flow, 0.0) for c in spec.components] for m in maps])
    f = np.array([m.footprint_total for m in maps])
    return {"w": w, "x": x, "f": f}


def check(stats: AggregateStatistics, spec: RoundSpec, ref: dict[str, np.ndarray]) -> None:
    w, x, f = ref["w"], ref["x"], ref["f"]
    assert stats.n == 4 and stats.production == pytest.approx(w.sum())
    shown = [(j, c) for j, c in enumerate(stats.components) if not c.withheld]
    assert shown, "every component withheld: nothing compared"
    for j, c in shown:
        wm = (w * x[:, j]).sum() / w.sum()
        assert c.resolution is not None
        assert c.weighted_mean == pytest.approx(wm, rel=1e-6, abs=2 * c.resolution)
        if c.mean is not None:  # dispersion statistics only in rounds that ask for them (min_participants >= 10)
            assert c.mean == pytest.approx(x[:, j].mean(), rel=1e-6, abs=2 * c.resolution)
        if c.weighted_sd is not None:
            sd = np.sqrt(max((w * x[:, j] ** 2).sum() / w.sum() - wm**2, 0.0))
            assert c.weighted_sd == pytest.approx(sd, rel=1e-3, abs=1e-3 * max(abs(wm), 1.0))
    assert stats.footprint.weighted_mean == pytest.approx((w * f).sum() / w.sum(), rel=1e-6, abs=0.05)
    if stats.footprint.mean is not None:
        assert stats.footprint.mean == pytest.approx(f.mean(), rel=1e-6, abs=0.05)


def test_methanol_round_maps_real_exchanges_through_units(round_setup: tuple[RoundSpec, Bundle, list[Process]]) -> None:
    spec, view, firms = round_setup
    m = map_process(spec, view, firms[0].uuid)
    syngas = next(c for c in spec.components if c.name_en == "Syngas")
    # 4820 kg syngas per 4480 kg methanol, per t of methanol: 4820 / 4.48 kg
    assert m.values[syngas.flow] == pytest.approx(4820 / 4.48, rel=1e-12)
    assert m.footprint_total > 0


def test_secagg_aggregate_of_real_data_equals_plaintext(round_setup: tuple[RoundSpec, Bundle, list[Process]]) -> None:
    # Prepare: the four real firms' vectors; every disclosure stage is one secure sum of its own
    spec, view, firms = round_setup
    vectors = contributions(spec, view, firms)
    nodes = [11, 12, 13, 14]
    keys = {n: generate_identity() for n in nodes}
    roster = {n: k.public_key() for n, k in keys.items()}
    rows = {n: list(v.ints) for n, v in zip(nodes, vectors, strict=True)}
    aggregator = generate_identity()

    # Execute: screen, dominance, values, cells, each masked and unmasked by the SecAgg protocol
    staged = StagedRound(spec)
    while (stage := staged.next_stage()) is not None:
        signed_context = staged.context(aggregator, stage)
        context = signed_context.context if signed_context is not None else None
        inputs = {n: np.array(stage_vector(spec, rows[n], stage, context), dtype=np.int64) for n in nodes}
        params = RoundParams.create(stage_round_id(spec.round_id, stage), nodes, len(staged.layout(stage)))
        clients = {n: SecAggClient(n, keys[n], roster) for n in nodes}
        result = run_in_process(SecAggServer(params, roster), clients, inputs)
        summed = [int(v) for v in to_signed(result.total)]
        assert summed == [sum(col) for col in zip(*inputs.values(), strict=True)]
        staged.record(stage, summed, [public_key_b64(keys[n]) for n in result.contributors])

    # Assert: published, and the statistics are the plaintext ones
    assert staged.stopped is None
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
    check(stats, spec, plaintext(spec, view, firms))


def test_paillier_aggregate_of_real_data_equals_plaintext(round_setup: tuple[RoundSpec, Bundle, list[Process]]) -> None:
    # Prepare: the four firms' vectors, the custodians' key, and the stages run in the clear for comparison
    spec, view, firms = round_setup
    vectors = contributions(spec, view, firms)
    public, shares = paillier.generate_split_key(2, bits=2048)
    spec = spec.model_copy(update={"protocol": "paillier",
                                   "paillier": spec.paillier.model_copy(update={"key_id": public.key_id})})
    ids = [generate_identity() for _ in firms]
    rows = {public_key_b64(k): list(v.ints) for v, k in zip(vectors, ids, strict=True)}
    aggregator = generate_identity()
    clear = run_in_clear(spec, rows, aggregator)

    # Execute: every disclosure stage encrypted by each firm, decrypted by both custodians, in order
    staged = StagedRound(spec)
    while (stage := staged.next_stage()) is not None:
        signed_context = staged.context(aggregator, stage)
        context = signed_context.context if signed_context is not None else None
        signed = [paillier.encrypt_stage(public, spec, stage, context, stage_vector(spec, rows[public_key_b64(k)],
                                                                                      stage, context), k) for k in ids]
        partials = [paillier.custodian_partial_decrypt(s, public, signed, list(rows), 3, spec.round_id, ledger={},
                                                       stage=str(stage)) for s in shares]
        summed = paillier.combine(partials, public, paillier.slots_packing(spec, staged.layout(stage)), len(signed))
        staged.record(stage, summed, [c.sender for c in signed])

    # Assert: the encrypted stages give the sums in the clear, and the statistics the plaintext ones
    assert staged.stopped is None and staged.sums == clear.sums
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
    check(stats, spec, plaintext(spec, view, firms))
