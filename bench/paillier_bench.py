"""Benchmark of protocol 2 (``paillier``): packed slots against one ciphertext per value, 2048-bit key.

Run ``python bench/paillier_bench.py`` (about a minute on one core) or ``--quick``, which times the
one-ciphertext-per-value baseline on a prefix of at most ``--sample`` values and scales it
linearly (every step is a per-ciphertext loop, so the cost is linear in the ciphertext count).

Measured for d ∈ {100, 1000} slots, each value bounded by 2⁴⁰ in absolute value, headroom for 100
participants:

* encryption: pack, encrypt and sign one contribution (best of a few runs);
* aggregation: verify and multiply 50 signed contributions (``protocols.paillier.aggregate``);
* decryption: both custodians' ``custodian_partial_decrypt`` (each re-verifies the 50
  contributions and recomputes the product) plus ``combine``, run one after the other.

The 50 aggregated contributions are built from real packed plaintexts but with obfuscators
``rⁿ`` (and the plaintext proofs' ``sⁿ``) drawn from a small pool, so that preparing them does not
take minutes; aggregation and decryption cost does not depend on how a ciphertext was randomised.
Both verify every ciphertext's proof of plaintext knowledge (one ``wⁿ mod n²`` each). Ratios are baseline / packed,
measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from keys.identity import generate_identity, public_key_b64
from protocols.paillier import (
    KeyShare,
    PackingLayout,
    SignedContribution,
    SplitPublicKey,
    aggregate,
    combine,
    custodian_partial_decrypt,
    encrypt_contribution,
    generate_split_key,
    gmpy2_active,
    make_layout,
    pack,
    prove_plaintext,
    sign_contribution,
)

BOUND = 2**40
MAX_PARTICIPANTS = 100
N_CONTRIBUTIONS = 50
MIN_PARTICIPANTS = 3
ROUND = "bench-round"


@dataclass
class Result:
    """Times of one (mode, d) case, already scaled to the full vector."""

    ciphertexts: int
    wire_bytes: int
    encrypt_s: float
    aggregate_s: float
    decrypt_s: float
    extrapolated: bool


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _pooled_contributions(
    public_key: SplitPublicKey, layout: PackingLayout, rng: random.Random, pool_size: int = 16
) -> tuple[list[SignedContribution], list[int]]:
    """N_CONTRIBUTIONS signed contributions of random valid vectors, with pooled obfuscators."""
    n, nsq = public_key.n, public_key.nsquare
    rs = [secrets.randbelow(n - 2) + 2 for _ in range(pool_size)]
    pool = [pow(r, n, nsq) for r in rs]
    units = [(r, n_th) for r, n_th in zip(rs[::-1], pool[::-1], strict=True)]  # bench only: pooled proof randomness
    identities = [generate_identity() for _ in range(N_CONTRIBUTIONS)]
    sums = [0] * layout.n_slots
    out = []
    for i, identity in enumerate(identities):
        vector = [rng.randint(-BOUND, BOUND) for _ in range(layout.n_slots)]
        sums = [s + v for s, v in zip(sums, vector, strict=True)]
        plaintexts = pack(vector, layout)
        picks = [(i * 7 + j) % pool_size for j in range(len(plaintexts))]
        cts = [(1 + n * m) * pool[k] % nsq for m, k in zip(plaintexts, picks, strict=True)]
        sender = public_key_b64(identity)
        proofs = [
            prove_plaintext(public_key, ROUND, sender, j, c, m, rs[k], unit=units[(k + 1) % pool_size])
            for j, (c, m, k) in enumerate(zip(cts, plaintexts, picks, strict=True))
        ]
        out.append(sign_contribution(public_key, ROUND, cts, identity, proofs))
    return out, sums


def run_case(
    public_key: SplitPublicKey, shares: list[KeyShare], d: int, packed: bool, sample: int | None, rng: random.Random
) -> Result:
    """Time one case; with ``sample``, the unpacked baseline runs on a prefix of ``sample`` slots."""
    full = make_layout([BOUND] * d, MAX_PARTICIPANTS, public_key.bits, packed=packed)
    k = d if packed or sample is None else min(d, sample)
    layout = full if k == d else make_layout([BOUND] * k, MAX_PARTICIPANTS, public_key.bits, packed=packed)
    scale = full.n_ciphertexts / layout.n_ciphertexts

    identity = generate_identity()
    vector = [rng.randint(-BOUND, BOUND) for _ in range(k)]
    repeat = 3 if layout.n_ciphertexts <= 100 else 1
    encrypt_s = _best_of(lambda: encrypt_contribution(public_key, layout, vector, ROUND, identity), repeat)

    contributions, sums = _pooled_contributions(public_key, layout, rng)
    roster = frozenset(c.sender for c in contributions)
    t = time.perf_counter()
    aggregate(contributions, public_key=public_key, layout=layout, roster=roster, round_id=ROUND)
    aggregate_s = time.perf_counter() - t

    t = time.perf_counter()
    partials = [
        custodian_partial_decrypt(s, public_key, contributions, roster, MIN_PARTICIPANTS, ROUND, ledger={})
        for s in shares
    ]
    result = combine(partials, public_key, layout, len(contributions))
    decrypt_s = time.perf_counter() - t
    if result != sums:
        raise SystemExit(f"d={d} packed={packed}: decrypted sums differ from the plain sums")

    wire = full.n_ciphertexts * public_key.ciphertext_bytes
    return Result(full.n_ciphertexts, wire, encrypt_s * scale, aggregate_s * scale, decrypt_s * scale, scale != 1)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run every case, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="time the unpacked baseline on a prefix and scale")
    parser.add_argument("--sample", type=int, default=100, help="prefix length for --quick (default 100)")
    parser.add_argument("--bits", type=int, default=2048, help="Paillier modulus size (default 2048)")
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args(argv)

    console = Console(width=130)
    rng = random.Random(args.seed)
    console.print(f"gmpy2 active in phe: [bold]{gmpy2_active()}[/bold]")
    t = time.perf_counter()
    public_key, shares = generate_split_key(2, args.bits)
    console.print(f"split key: {public_key.bits}-bit n, 2 custodians, generated in {time.perf_counter() - t:.2f} s")
    probe = make_layout([BOUND], MAX_PARTICIPANTS, public_key.bits)
    console.print(
        f"slot: |value| ≤ 2^40, {MAX_PARTICIPANTS} participants → {probe.slot_bits[0]} bits; "
        f"{(public_key.bits - 64) // probe.slot_bits[0]} slots per ciphertext; "
        f"{N_CONTRIBUTIONS} contributions aggregated"
    )

    table = Table(title="paillier: packed vs one ciphertext per value")
    for col in (
        "d",
        "mode",
        "ciphertexts",
        "binary size / contribution",
        "encrypt / contribution",
        "aggregate 50",
        "decrypt (2 custodians)",
    ):
        table.add_column(col, justify="right")
    ratios = Table(title="ratio baseline / packed (higher = packing saves more)")
    for col in ("d", "ciphertexts", "encrypt", "aggregate", "decrypt"):
        ratios.add_column(col, justify="right")

    for d in (100, 1000):
        packed = run_case(public_key, shares, d, True, None, rng)
        base = run_case(public_key, shares, d, False, args.sample if args.quick else None, rng)
        for name, r in (("packed", packed), ("1 per value", base)):
            mark = " *" if r.extrapolated else ""
            table.add_row(
                str(d),
                name,
                str(r.ciphertexts),
                f"{r.wire_bytes / 1024:.1f} KiB",
                f"{r.encrypt_s * 1e3:.1f} ms{mark}",
                f"{r.aggregate_s * 1e3:.1f} ms{mark}",
                f"{r.decrypt_s:.2f} s{mark}",
            )
        ratios.add_row(
            str(d),
            f"{base.ciphertexts / packed.ciphertexts:.1f}×",
            f"{base.encrypt_s / packed.encrypt_s:.1f}×",
            f"{base.aggregate_s / packed.aggregate_s:.1f}×",
            f"{base.decrypt_s / packed.decrypt_s:.1f}×",
        )
    console.print(table)
    console.print(ratios)
    if args.quick:
        console.print(f"* timed on the first {args.sample} values and scaled linearly (--quick)")


if __name__ == "__main__":
    main()
