"""Benchmark of a ``paillier`` round's disclosure stages: four encrypted sums against the single full-vector sum.

Run ``python bench/paillier_stages_bench.py`` (a few seconds; ``--firms 3,5,10``). Per cohort size,
on the aluminium sample spec (2048-bit key, two custodians), synthetic honest firms:

* baseline: what release 0.1 did, one contribution of the full vector per firm
  (``protocols.paillier.spec_layout``), both custodians' ``custodian_partial_decrypt`` and ``combine``;
* staged: the four disclosure stages (``protocols.disclosure``: screen, dominance, values, cells),
  each encrypted by every firm from the aggregator's signed stage context
  (``protocols.paillier.encrypt_stage``), decrypted by both custodians and combined, in order.

Only the cryptographic work in one process: no HTTP, log reads or share unlocking (a deployed
round adds one log read and one share unlock per custodian and stage). Ratios are staged /
baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import time

from rich.console import Console
from rich.table import Table

from keys.identity import Ed25519PrivateKey, generate_identity, public_key_b64
from pcf.samples import sample_spec
from protocols.contribution import build_contribution, footprint_from_components
from protocols.disclosure import StagedRound, stage_vector
from protocols.paillier import (
    combine,
    custodian_partial_decrypt,
    encrypt_contribution,
    encrypt_stage,
    generate_split_key,
    slots_packing,
    spec_layout,
)
from protocols.spec import RoundSpec


def _rows(spec: RoundSpec, n: int, rng: random.Random) -> dict[str, tuple[Ed25519PrivateKey, list[int]]]:
    """``n`` synthetic honest firms: identity key -> (key, full contribution integers)."""
    out: dict[str, tuple[Ed25519PrivateKey, list[int]]] = {}
    for _ in range(n):
        key = generate_identity()
        values = {c.flow: round(rng.uniform(0.01, 0.2) * min(c.bound, 1.0), 4) for c in spec.components}
        ints = list(build_contribution(spec, values, rng.uniform(3e5, 9e5), footprint_from_components(spec, values)).ints)
        out[public_key_b64(key)] = (key, ints)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", default="3,5,10", help="cohort sizes, comma-separated")
    args = parser.parse_args()
    public, shares = generate_split_key(2, 2048)
    spec = sample_spec("aluminium", protocol="paillier", paillier_key_id=public.key_id)
    rng = random.Random(10)
    table = Table(title="paillier round: four stage sums vs one full-vector sum (2048-bit key, 2 custodians)")
    for col in ("firms", "baseline s", "staged s", "ratio", "ciphertexts per firm (base → staged)"):
        table.add_column(col, justify="right")
    for n in (int(x) for x in args.firms.split(",")):
        rows = _rows(spec, n, rng)
        roster = frozenset(rows)
        t0 = time.perf_counter()
        layout = spec_layout(spec)
        posted = [encrypt_contribution(public, layout, ints, spec.round_id, key) for key, ints in rows.values()]
        partials = [custodian_partial_decrypt(s, public, posted, roster, 3, spec.round_id, ledger={}) for s in shares]
        combine(partials, public, layout, n)
        baseline = time.perf_counter() - t0
        t0 = time.perf_counter()
        staged, aggregator, cts = StagedRound(spec), generate_identity(), 0
        while (stage := staged.next_stage()) is not None:
            signed = staged.context(aggregator, stage)
            context = signed.context if signed is not None else None
            posted = [encrypt_stage(public, spec, stage, context, stage_vector(spec, ints, stage, context), key)
                      for key, ints in rows.values()]
            cts += len(posted[0].ciphertexts)
            partials = [custodian_partial_decrypt(s, public, posted, roster, 3, spec.round_id, ledger={},
                                                  stage=str(stage)) for s in shares]
            staged.record(stage, combine(partials, public, slots_packing(spec, staged.layout(stage)), n), list(rows))
        elapsed = time.perf_counter() - t0
        table.add_row(str(n), f"{baseline:.2f}", f"{elapsed:.2f}", f"{elapsed / baseline:.2f}",
                      f"{layout.n_ciphertexts} → {cts}" + ("" if staged.stopped is None else f" (stopped: {staged.stopped.rule})"))
    Console().print(table)


if __name__ == "__main__":
    main()
