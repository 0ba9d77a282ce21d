"""Footprint benchmark: our solver against bw2calc 3.1 on the same synthetic 20,000-process system.

Run: ``python bench/footprint_bench.py [--processes 20000] [--markets 300] [--sample 200]``.

The system is generated (seeded) as a :class:`~lca.model.Bundle` and goes through
:func:`lca.solver.build_system`; bw2calc gets the very same ``A``, ``B`` and ``c`` as
bw_processing datapackages, in the same run. Structure, after ecoinvent: a few hundred
*market* processes, each buying its product from all the producers of that product (tens of
inputs); every other process buys 1-12 inputs, 80 % from markets, 20 % from any process, so
the markets are hubs and most of the system is one strongly connected component. The inputs
per unit of output of a column sum to at most 0.98, so ``A`` is column diagonally dominant
and well posed. 50 elementary flows, 10 of them greenhouse gases (AR5 characterisation).

What is timed
-------------
* ours: ``build_system`` (from the bundle), ``factorize`` (the well-posedness check plus the
  SuperLU factorisation with our symmetric minimum-degree ordering, see ``lca.solver.system``;
  bw2calc uses SuperLU's default COLAMD column ordering of ``A^T``), one footprint (``A s = f`` with the factors, then
  ``c B s``), and the footprints of every product by one transposed solve
  ``A^T lambda = (c B)^T``.
* bw2calc 3.1 (SuperLU through scipy: neither pypardiso nor scikit-umfpack is installed, so its
  ``FastScoresOnlyMultiLCA`` adjoint mode is unavailable): ``LCA(...).lci(); lcia()`` for one
  demand from the datapackage (matrix construction and ``spsolve``), ``decompose_technosphere``
  (its ``factorize=True``), and then ``lci(demand); lcia_calculation()`` with the factorised
  matrix for a random sample of ``--sample`` products, whose mean time is extrapolated to all
  products (bw2calc's way of scoring many products one demand at a time).
"""

from __future__ import annotations

import argparse
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

from lca.gwp import characterisation_method
from lca.model import (
    Bundle,
    Exchange,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    Process,
    Unit,
    UnitGroup,
)
from lca.solver import TechnoSystem, build_system, footprint

__all__ = ["main", "make_bundle"]

T = TypeVar("T")

GHGS = [  # (name, CAS, compartment)
    ("carbon dioxide (fossil)", "124-38-9", "air"),
    ("carbon dioxide (biogenic)", "124-38-9", "air"),
    ("carbon dioxide", "124-38-9", "from air"),
    ("methane (fossil)", "74-82-8", "air"),
    ("methane (biogenic)", "74-82-8", "air"),
    ("nitrous oxide", "10024-97-2", "air"),
    ("sulfur hexafluoride", "2551-62-4", "air"),
    ("HFC-134a", "811-97-2", "air"),
    ("tetrafluoromethane", "75-73-0", "air"),
    ("nitrogen trifluoride", "7783-54-2", "air"),
]
COMPARTMENTS = {
    "air": ["Emissions", "Emissions to air", "Emissions to air, unspecified"],
    "from air": ["Resources", "Resources from air"],
    "water": ["Emissions", "Emissions to water", "Emissions to water, unspecified"],
}


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def make_bundle(processes: int = 20_000, markets: int = 300, elementary: int = 50, seed: int = 20240426) -> Bundle:
    """A seeded synthetic technosphere with market hubs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    b = Bundle()
    b.add(UnitGroup(uuid="ug-mass", name={"en": "mass"}, reference_unit="kg",
                    units=[Unit(name="kg", factor=1.0), Unit(name="t", factor=1000.0)]))
    b.add(FlowProperty(uuid="fp-mass", name={"en": "Mass"}, unit_group="ug-mass"))
    mass = [FlowPropertyFactor(flow_property="fp-mass", reference=True)]
    elem: list[str] = []
    for k in range(elementary):
        name, cas, comp = GHGS[k] if k < len(GHGS) else (f"substance {k}", None, "water")
        fid = _uuid(rng)
        b.add(Flow(uuid=fid, name={"en": name}, flow_type="elementary", cas=cas,
                   compartment=COMPARTMENTS[comp], properties=mass))
        elem.append(fid)
    pids = [_uuid(rng) for _ in range(processes)]
    products = [_uuid(rng) for _ in range(processes)]
    for i, fid in enumerate(products):
        b.add(Flow(uuid=fid, name={"en": f"product {i}"}, flow_type="product", properties=mass))
    category = rng.integers(0, markets, size=processes)
    producers: list[list[int]] = [[] for _ in range(markets)]
    for j in range(markets, processes):
        producers[category[j]].append(j)
    output = rng.lognormal(0.0, 1.0, size=processes)
    for j in range(processes):
        if j < markets:
            suppliers = np.array(producers[j] or [markets + j], dtype=int)
            shares = rng.dirichlet(np.ones(len(suppliers))) * 0.98  # 2 % market losses
            emissions = [(0, 0.01)]
        else:
            k = min(1 + rng.poisson(3.5), 12)
            from_market = rng.random(k) < 0.8
            suppliers = np.where(from_market, rng.integers(0, markets, size=k), rng.integers(markets, processes, size=k))
            suppliers[suppliers == j] = (j + 1) % processes
            shares = rng.dirichlet(np.ones(k)) * rng.uniform(0.2, 0.85)
            flows = rng.choice(elementary, size=int(rng.integers(2, 5)), replace=False)
            emissions = [(int(f), float(rng.lognormal(-1.0, 1.5))) for f in flows]
        d = float(output[j])
        exchanges = [Exchange(internal_id="0", flow=products[j], direction="output", amount=d, unit="kg")]
        for n, (i, x) in enumerate(zip(suppliers, shares, strict=True)):
            exchanges.append(Exchange(internal_id=f"i{n}", flow=products[int(i)], direction="input",
                                      amount=float(x) * d, unit="kg"))
        for n, (f, amount) in enumerate(emissions):
            uptake = f < len(GHGS) and GHGS[f][2] == "from air"
            exchanges.append(Exchange(internal_id=f"e{n}", flow=elem[f], direction="input" if uptake else "output",
                                      amount=amount * d, unit="kg"))
        b.add(Process(uuid=pids[j], name={"en": f"{'market' if j < markets else 'process'} {j}"},
                      location="CN", reference_exchanges=["0"], exchanges=exchanges))
    return b


def _timed(fn: Callable[[], T], repeat: int = 1) -> tuple[T, float]:
    """Result of ``fn`` and its best wall time in seconds over ``repeat`` runs."""
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def _datapackage(system: TechnoSystem, c: np.ndarray) -> Any:
    import bw_processing as bwp

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
    return dp


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=20_000)
    parser.add_argument("--markets", type=int, default=300)
    parser.add_argument("--sample", type=int, default=200, help="products bw2calc scores one by one")
    parser.add_argument("--seed", type=int, default=20240426)
    args = parser.parse_args(argv)
    console = Console(width=130)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bw2calc warns that pypardiso is missing
        import bw2calc

    bundle, t_gen = _timed(lambda: make_bundle(args.processes, args.markets, seed=args.seed))
    method = characterisation_method(bundle, "AR5")
    system, t_build = _timed(lambda: build_system(bundle))
    A = system.A
    console.print(
        f"system: {system.size:,} columns, A {A.nnz:,} nonzeros ({A.nnz / system.size:.1f} per column), "
        f"B {system.B.shape[0]} x {system.B.shape[1]:,} ({system.B.nnz:,} nonzeros), "
        f"{len(method.factors)} GHG factors; generated in {_ms(t_gen)}"
    )

    # ours
    _, t_fact = _timed(system.factorize)
    _, t_check = _timed(system.check_loops, repeat=3)
    c, _, _ = system.characterisation(method)
    rng = np.random.default_rng(args.seed + 1)
    root = int(rng.integers(system.size))

    def one() -> float:
        f = np.zeros(system.size)
        f[root] = 1.0
        return float(c @ (system.B @ system.solve(f)))

    ours_one, t_one = _timed(one, repeat=5)
    _, t_one_full = _timed(lambda: footprint(bundle, system.columns[root].process, method, system=system), repeat=3)

    def everything() -> np.ndarray:
        return system.footprints(method, refresh=True)  # time the solve, not the cache

    lam, t_all = _timed(everything, repeat=3)

    # The adjoint gain alone: every product by forward solves with our own factors (sampled).
    sample_fw = np.random.default_rng(args.seed + 2).choice(system.size, size=min(args.sample, system.size), replace=False)
    t0 = time.perf_counter()
    h = system.direct_impacts(method)
    for j in sample_fw:
        f = np.zeros(system.size)
        f[j] = 1.0
        assert abs(h @ system.solve(f) - lam[j]) <= 1e-9 * max(1.0, abs(lam[j]))
    t_fw_all = (time.perf_counter() - t0) / len(sample_fw) * system.size

    def ours_cold() -> float:
        cold_sys = TechnoSystem(bundle, system.columns, system.A, system.B, system.elementary, [], [], [], {}, None)
        f = np.zeros(cold_sys.size)
        f[root] = 1.0
        return float(c @ (cold_sys.B @ cold_sys.solve(f)))

    _, t_ours_cold = _timed(ours_cold)

    # bw2calc on the same matrices
    dp, t_dp = _timed(lambda: _datapackage(system, c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def bw_cold() -> float:
            lca = bw2calc.LCA({root: 1.0}, data_objs=[dp])
            lca.lci()
            lca.lcia()
            return float(lca.score)

        bw_one, t_bw_cold = _timed(bw_cold)
        lca = bw2calc.LCA({root: 1.0}, data_objs=[dp])
        lca.lci()
        lca.lcia()
        _, t_bw_fact = _timed(lca.decompose_technosphere)
        sample = rng.choice(system.size, size=min(args.sample, system.size), replace=False)
        bw_scores = np.empty(len(sample))
        t0 = time.perf_counter()
        for n, j in enumerate(sample):
            lca.lci({int(j): 1.0})
            lca.lcia_calculation()
            bw_scores[n] = lca.score
        t_bw_each = (time.perf_counter() - t0) / len(sample)
    t_bw_all = t_bw_each * system.size

    rel = np.abs(bw_scores - lam[sample]) / np.maximum(np.abs(lam[sample]), 1e-300)
    table = Table(title=f"Footprints of a {system.size:,}-process system: ours vs bw2calc {bw2calc.__version__}")
    table.add_column("step")
    table.add_column("ours", justify="right")
    table.add_column("bw2calc", justify="right")
    table.add_column("bw2calc / ours", justify="right")
    rows = [
        ("factorise A (ours: check + min-degree order + SuperLU; bw2calc: SuperLU COLAMD of A^T)", t_fact, t_bw_fact),
        ("one footprint, cold (factorise + solve + score)", t_ours_cold, t_bw_cold),
        ("one footprint, factors reused", t_one, t_bw_each),
        (f"all {system.size:,} products, factors reused (bw2calc: {len(sample)} sampled x {system.size:,})",
         t_all, t_bw_all),
        ("all products including the factorisation", t_fact + t_all, t_bw_fact + t_bw_all),
    ]
    extra = [
        ((f"all products by forward solves, our factors ({len(sample_fw)} sampled x {system.size:,}) "
         "vs our one transposed solve"), t_all, t_fw_all),
    ]
    for label, ours, theirs in rows:
        table.add_row(label, _ms(ours), _ms(theirs), f"{theirs / ours:,.1f}x")
    console.print(table)
    adjoint = Table(title="The transposed (adjoint) solve alone, same factors")
    adjoint.add_column("step")
    adjoint.add_column("one transposed solve", justify="right")
    adjoint.add_column("forward solves", justify="right")
    adjoint.add_column("ratio", justify="right")
    for label, ours, theirs in extra:
        adjoint.add_row(label, _ms(ours), _ms(theirs), f"{theirs / ours:,.1f}x")
    console.print(adjoint)
    console.print(
        f"Not compared: ours build_system from the Bundle {_ms(t_build)}; bw2calc datapackage from "
        f"our A, B, c {_ms(t_dp)}. Of our factorisation, the well-posedness check (strong components, "
        f"loop gains) takes {_ms(t_check)}. "
        f"A full Footprint (by gas, origin split, cut-offs, scaling) with reused factors: {_ms(t_one_full)}.\n"
        f"Agreement: one footprint ours {ours_one:.12g} vs bw2calc {bw_one:.12g}; the {len(sample)} "
        f"sampled products: max relative difference {rel.max():.2e}."
    )


if __name__ == "__main__":
    main()
