"""Cost of input-validity proofs for Paillier contributions: bit decomposition with CDS OR-proofs, measured.

Run ``python bench/range_proof_cost.py`` (about a minute; ``--quick`` times a 16-bit slot).

The prototype proves that a slot value ``v`` lies in ``[0, 2^k)``:

* per bit ``b_i`` of ``v``: a Paillier encryption ``c_i = g^{b_i}·r_i^n mod n²`` (``g = n + 1``) and a
  non-interactive OR-proof (Cramer, Damgård, Schoenmakers, CRYPTO '94) that ``c_i`` encrypts 0 or 1:
  ``c_i·g^{-j}`` is an n-th residue for ``j = b_i``, and the other branch is simulated. Each branch is
  the Σ-protocol for n-th residuosity (commit ``a = s^n``, respond ``z = s·r^e mod n``, verify
  ``z^n ≡ a·u^e mod n²``); the two branch challenges sum to the Fiat–Shamir challenge, the 256-bit
  digest (:func:`protocols.canonical.digest`, domain tag :data:`RANGE_KIND`) of the key, the
  context, ``c_i`` and both commitments, as in :mod:`protocols.paillier.proof`.
* the slot's ciphertext is then ``C = Π c_i^{2^i}`` (homomorphic, computed by the verifier by
  repeated squaring), which encrypts ``Σ 2^i b_i = v``; for a packed plaintext the bits of every slot
  go in at their packed positions, so the packed ciphertext needs no proof of its own (the bits'
  proofs also prove knowledge of its plaintext, which makes the plaintext-knowledge proof redundant).

Measured per bit at 2048 and 3072 bits: prove (encryption included), verify one by one, and verify
in a batch (random 128-bit linear combination of the ``z^n ≡ a·u^e`` equations, both sides squared
so that the elements of order 2 of ``Z*_{n²}`` cannot cancel: sound for keys whose ``p-1``, ``q-1``
have no other small factors, i.e. safe primes; a prototype, not a protocol). Extrapolated to the
bench's round sizes (bits per contribution × firms) and compared with the baseline measured in the
same run: the verification of the plaintext-knowledge proofs of one d = 1000 packed contribution
(``bench/paillier_bench.py``'s largest case). "Full validity" counts every relation a linear
contribution must satisfy (:func:`full_validity_bits`), not only the slots' ranges.

The last table estimates the Prio-style alternative (an FLP on additive shares held by the two
custodians) from pure-Python NTTs and field multiplications timed here (:func:`flp_estimate`).
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from keys.identity import generate_identity
from protocols.canonical import digest
from protocols.paillier import SplitPublicKey, encrypt_contribution, generate_split_key, gmpy2_active, make_layout
from protocols.paillier._wire import hex_int, mulmod, powmod
from protocols.paillier.proof import verify_plaintext_proof
from protocols.spec import RoundSpec, vector_layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from example_round import example_spec

RANGE_KIND = "bench/v1/range-proof-bit"
"""Domain tag of the bit proofs' Fiat–Shamir challenge."""
CHALLENGE_BITS = 256
BATCH_BITS = 128
BASELINE_D, BASELINE_BOUND, BASELINE_PARTICIPANTS = 1000, 2**40, 100
FIRMS = (3, 10, 50)


@dataclass(frozen=True)
class BitProof:
    """A ciphertext of one bit and the OR-proof that it encrypts 0 or 1 (``e1 = e - e0 mod 2^256``)."""

    c: int
    a0: int
    a1: int
    e0: int
    z0: int
    z1: int


def _unit(n: int) -> int:
    while True:
        r = secrets.randbelow(n - 2) + 2
        if r % n:
            return r


def _challenge(pk: SplitPublicKey, context: str, c: int, a0: int, a1: int) -> int:
    doc = {"key_id": pk.key_id, "context": context, "c": hex_int(c), "a0": hex_int(a0), "a1": hex_int(a1)}
    return int(digest(RANGE_KIND, doc), 16) % (1 << CHALLENGE_BITS)


def prove_bit(pk: SplitPublicKey, context: str, bit: int) -> tuple[BitProof, int]:
    """Encrypt ``bit`` and prove it is 0 or 1; returns the proof and the encryption randomness."""
    n, n2 = pk.n, pk.nsquare
    r = _unit(n)
    c = mulmod(1 + bit * n, powmod(r, n, n2), n2)
    g_inv = (1 - n) % n2  # (1 + n)^{-1} mod n²
    u = (c, mulmod(c, g_inv, n2))  # u_j = c / g^j: an n-th residue exactly for j = bit
    e_sim, z_sim = secrets.randbelow(1 << CHALLENGE_BITS), _unit(n)
    a_sim = mulmod(powmod(z_sim, n, n2), powmod(u[1 - bit], -e_sim, n2), n2)
    s = _unit(n)
    a_real = powmod(s, n, n2)
    a0, a1 = (a_real, a_sim) if bit == 0 else (a_sim, a_real)
    e = _challenge(pk, context, c, a0, a1)
    e_real = (e - e_sim) % (1 << CHALLENGE_BITS)
    z_real = mulmod(s, powmod(r, e_real, n), n)
    if bit == 0:
        return BitProof(c, a0, a1, e_real, z_real, z_sim), r
    return BitProof(c, a0, a1, e_sim, z_sim, z_real), r


def _branches(pk: SplitPublicKey, context: str, p: BitProof) -> list[tuple[int, int, int, int]] | None:
    """``(z, a, u, e)`` per branch, or ``None`` when the proof is malformed."""
    n, n2 = pk.n, pk.nsquare
    if not all(0 < v < n2 for v in (p.c, p.a0, p.a1)) or not all(0 < z < n for z in (p.z0, p.z1)):
        return None
    e = _challenge(pk, context, p.c, p.a0, p.a1)
    e1 = (e - p.e0) % (1 << CHALLENGE_BITS)
    u1 = mulmod(p.c, (1 - n) % n2, n2)
    return [(p.z0, p.a0, p.c, p.e0), (p.z1, p.a1, u1, e1)]


def verify_bit(pk: SplitPublicKey, context: str, p: BitProof) -> bool:
    """Whether ``p`` shows that ``p.c`` encrypts 0 or 1 (two ``z^n mod n²`` and two short exponentiations)."""
    branches = _branches(pk, context, p)
    if branches is None:
        return False
    n2 = pk.nsquare
    return all(powmod(z, pk.n, n2) == mulmod(a, powmod(u, e, n2), n2) for z, a, u, e in branches)


def verify_bits_batch(pk: SplitPublicKey, contexts: Sequence[str], proofs: Sequence[BitProof]) -> bool:
    """All of ``proofs`` at once: ``(Π z^ρ)^{2n} ≡ (Π a^ρ·u^{eρ})^2`` with random 128-bit ``ρ`` per equation."""
    n, n2 = pk.n, pk.nsquare
    left_base, right = 1, 1
    for context, p in zip(contexts, proofs, strict=True):
        branches = _branches(pk, context, p)
        if branches is None:
            return False
        for z, a, u, e in branches:
            rho = secrets.randbits(BATCH_BITS) | 1
            left_base = mulmod(left_base, powmod(z, rho, n2), n2)
            right = mulmod(right, mulmod(powmod(a, rho, n2), powmod(u, e * rho, n2), n2), n2)
    return powmod(left_base, 2 * n, n2) == mulmod(right, right, n2)


def prove_range(pk: SplitPublicKey, context: str, value: int, k: int) -> list[BitProof]:
    """Bit proofs that ``value`` is in ``[0, 2^k)`` (least significant bit first)."""
    if not 0 <= value < 1 << k:
        raise ValueError(f"value {value} is not in [0, 2^{k}); accepted: 0 to {(1 << k) - 1}")
    return [prove_bit(pk, f"{context}/bit{i}", (value >> i) & 1)[0] for i in range(k)]


def slot_ciphertext(pk: SplitPublicKey, proofs: Sequence[BitProof]) -> int:
    """``Π c_i^{2^i} mod n²`` by Horner's rule (one squaring per bit): the ciphertext of the slot's value."""
    n2 = pk.nsquare
    acc = 1
    for p in reversed(proofs):
        acc = mulmod(mulmod(acc, acc, n2), p.c, n2)
    return acc


def verify_range(pk: SplitPublicKey, context: str, proofs: Sequence[BitProof], *, batch: bool) -> int | None:
    """The slot's ciphertext when every bit proof verifies, else ``None``."""
    contexts = [f"{context}/bit{i}" for i in range(len(proofs))]
    ok = (
        verify_bits_batch(pk, contexts, proofs)
        if batch
        else all(verify_bit(pk, ctx, p) for ctx, p in zip(contexts, proofs, strict=True))
    )
    return slot_ciphertext(pk, proofs) if ok else None


# ------------------------------------------------------------------------------------------ sizes


def bits_per_slot(bound_int: int, signed: bool) -> int:
    """Bits a slot's range proof covers: ``[0, 2^k) ⊇ [0, B]`` for a non-negative slot, ``[0, 2B]`` shifted when signed.

    ``[0, 2^k)`` contains the bound rounded up to a power of two; proving exactly ``[0, B]`` takes a
    second decomposition of ``B - v`` (twice the bits) or a bound chosen as ``2^k - 1``.
    """
    return (2 * bound_int if signed else bound_int).bit_length()


def round_bits(spec: RoundSpec) -> tuple[int, int]:
    """(slots, bits) of one contribution of ``spec``: every slot of its layout range-proved."""
    slots = vector_layout(spec)
    return len(slots), sum(bits_per_slot(s.bound_int, s.signed) for s in slots)


def full_validity_bits(spec: RoundSpec) -> tuple[int, int]:
    """(range-proved bits, multiplication proofs) for every relation of a linear-statistics contribution (design).

    Per firm: ``w`` in ``[1, B_w]``; each hidden ``x_c`` (encrypted for the proof only, never summed)
    in ``[0, B_c]``, its reporter bit with ``n_c <= x_c <= n_c·B_c`` (two more ranges) and
    ``wx_c = w·x_c`` (a multiplication proof); the same per gas for ``F_g``, ``nF_g``, ``wF_g``, plus
    ``Σ_g F_g <= B_F``; the two dominance bits of the production cell and of every value cell, each a
    comparison of the firm's value with the signed bracket (a bit and a range of the difference).
    """
    slots = vector_layout(spec)
    w_bits = round(spec.weight.bound * spec.weight.scale).bit_length()
    bits, mults = w_bits, 0
    for c in spec.components:
        x_bits = round(c.bound * c.scale).bit_length()
        bits += 3 * x_bits + 1
        mults += 1
    f_bits = round(spec.footprint.bound * spec.footprint.scale).bit_length()
    bits += len(spec.footprint.gases) * (3 * f_bits + 1) + f_bits
    mults += len(spec.footprint.gases)
    bits += 2 * (1 + w_bits + 2)  # production cell: b and m against the bracket, (2 + p)·w needs two more bits
    for s in slots:
        if s.kind in ("wx", "wF"):
            bits += 2 * (1 + s.bound_int.bit_length() + 2)
    return bits, mults


# ------------------------------------------------------------------------------ FLP (Prio) estimate

FIELD128 = 2**66 * 4611686018427387897 + 1
"""The prime of Prio3's ``Field128`` (draft-irtf-cfrg-vdaf); its multiplicative group has a subgroup of order ``2^66``."""


def _root_of_unity(order: int) -> int:
    g = 3
    while pow(g, (FIELD128 - 1) // 2, FIELD128) == 1:
        g += 1
    return pow(g, (FIELD128 - 1) // order, FIELD128)


def ntt(values: list[int], root: int) -> list[int]:
    """Iterative radix-2 number-theoretic transform over ``FIELD128`` (``len(values)`` a power of two)."""
    p, size = FIELD128, len(values)
    out = list(values)
    j = 0
    for i in range(1, size):
        bit = size >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            out[i], out[j] = out[j], out[i]
    length = 2
    while length <= size:
        w_len = pow(root, size // length, p)
        half = length // 2
        for start in range(0, size, length):
            w = 1
            for k in range(start, start + half):
                u, v = out[k], out[k + half] * w % p
                out[k], out[k + half] = (u + v) % p, (u - v) % p
                w = w * w_len % p
        length <<= 1
    return out


@dataclass
class FlpEstimate:
    entries: int
    """Field elements of the validity circuit's input (one per bit of every range, plus the values)."""
    chunk: int
    calls: int
    proof_elements: int
    prove_s: float
    verify_s: float
    """Per aggregator (each custodian does it on its share)."""
    upload_bytes: int


def flp_estimate(bits: int, mults: int) -> FlpEstimate:
    """Prover and verifier time of an FLP (Boneh et al., CRYPTO 2019) with a ParallelSum(Mul) gadget, in Python.

    The circuit checks ``b·(b - 1) = 0`` for every bit (combined by joint randomness, as Prio3SumVec)
    and ``wx - w·x = 0`` for every product: ``M = bits + mults`` gadget inputs in ``K = ceil(M / L)``
    calls of a gadget summing ``L = ceil(sqrt(M))`` products. Prover: interpolate the ``2L`` wire
    polynomials (inverse NTT of size ``P >= K + 1``), multiply pairwise through NTTs of size ``2P``:
    timed on this machine with pure-Python NTTs over Field128. Verifier: one evaluation of the
    ``2L`` wires and of the gadget polynomial at a random point (``O(M)`` multiplications), timed
    as field multiplications. Upload: the input and proof shares (one share is a 16-byte seed).
    """
    m = bits + mults
    chunk = max(1, math.isqrt(m - 1) + 1)
    calls = -(-m // chunk)
    size = 1 << (calls + 1 - 1).bit_length()
    root_p, root_2p = _root_of_unity(size), _root_of_unity(2 * size)
    sample = [secrets.randbelow(FIELD128) for _ in range(size)]
    t = time.perf_counter()
    ntt(sample, root_p)
    ntt_p = time.perf_counter() - t
    t = time.perf_counter()
    ntt(sample + sample, root_2p)
    ntt_2p = time.perf_counter() - t
    prove_s = 2 * chunk * ntt_p + (2 * chunk + 1) * ntt_2p
    xs = [secrets.randbelow(FIELD128) for _ in range(4 * m)]
    t = time.perf_counter()
    acc = 1
    for x in xs:
        acc = acc * x % FIELD128
    verify_s = (time.perf_counter() - t) / len(xs) * (4 * m + 2 * chunk * (calls + 1) + 4 * calls)
    proof_elements = 2 * chunk + 2 * calls + 1
    return FlpEstimate(m, chunk, calls, proof_elements, prove_s, verify_s, 16 * (m + proof_elements) + 16)


@dataclass
class Timing:
    bits: int
    prove_bit_s: float
    verify_bit_s: float
    batch_bit_s: float
    baseline_s: float
    baseline_ciphertexts: int
    proof_bytes_per_bit: int


def measure(bits: int, k: int, rng_value: int) -> Timing:
    """Time a ``k``-bit slot's proof at ``bits``-bit keys, and the baseline at the same key size."""
    pk, _ = generate_split_key(2, bits)
    value = rng_value % (1 << k)
    t = time.perf_counter()
    proofs = prove_range(pk, "bench/slot0", value, k)
    prove_s = time.perf_counter() - t
    t = time.perf_counter()
    single = verify_range(pk, "bench/slot0", proofs, batch=False)
    verify_s = time.perf_counter() - t
    t = time.perf_counter()
    batched = verify_range(pk, "bench/slot0", proofs, batch=True)
    batch_s = time.perf_counter() - t
    if single is None or batched is None or single != batched:
        raise SystemExit(f"{bits}-bit key: an honest range proof did not verify")
    _check_soundness(pk, k)

    layout = make_layout([BASELINE_BOUND] * BASELINE_D, BASELINE_PARTICIPANTS, pk.bits)
    ints = [secrets.randbelow(2 * BASELINE_BOUND + 1) - BASELINE_BOUND for _ in range(BASELINE_D)]
    contribution = encrypt_contribution(pk, layout, ints, "bench-round", generate_identity())
    t = time.perf_counter()
    for idx, (ct, proof) in enumerate(zip(contribution.ciphertexts, contribution.proofs, strict=True)):
        if not verify_plaintext_proof(pk, contribution.round_id, contribution.sender, idx, ct, proof):
            raise SystemExit("baseline: a plaintext proof did not verify")
    baseline_s = time.perf_counter() - t
    n_bytes, n2_bytes = (pk.bits + 7) // 8, (2 * pk.bits + 7) // 8
    size = n2_bytes * 3 + n_bytes * 2 + CHALLENGE_BITS // 8  # c, a0, a1, z0, z1, e0
    return Timing(bits, prove_s / k, verify_s / k, batch_s / k, baseline_s, layout.n_ciphertexts, size)


def _check_soundness(pk: SplitPublicKey, k: int) -> None:
    """An encryption of 2 with a proof made as for 1 (or 0) must fail, one by one and in a batch."""
    n, n2 = pk.n, pk.nsquare
    forged, _ = prove_bit(pk, "bench/forge", 1)
    r = _unit(n)
    two = mulmod(1 + 2 * n, powmod(r, n, n2), n2)
    bad = BitProof(two, forged.a0, forged.a1, forged.e0, forged.z0, forged.z1)
    honest = prove_range(pk, "bench/ok", 1, min(k, 4))
    contexts = [f"bench/ok/bit{i}" for i in range(len(honest))]
    if verify_bit(pk, "bench/forge", bad) or verify_bits_batch(pk, [*contexts, "bench/forge"], [*honest, bad]):
        raise SystemExit("a forged bit proof verified")


def _fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    """Measure at 2048 and 3072 bits, print the per-bit costs and the extrapolation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="time a 16-bit slot instead of a 42-bit one")
    args = parser.parse_args(argv)
    console = Console(width=200)
    k = 16 if args.quick else (2 * BASELINE_BOUND).bit_length()
    console.print(f"gmpy2 active in phe: [bold]{gmpy2_active()}[/bold]; one slot of k = {k} bits per key size")
    timings = [measure(bits, k, secrets.randbits(64)) for bits in (2048, 3072)]

    per_bit = Table(title=f"range proof of one {k}-bit slot (bit decomposition + CDS OR-proofs), per bit")
    for col in ("key", "prove / bit", "verify / bit", "batch verify / bit", f"slot of {k} bits: prove", "verify",
                "batch verify", "proof bytes / bit"):  # fmt: skip
        per_bit.add_column(col, justify="right")
    for t in timings:
        per_bit.add_row(
            f"{t.bits}", _fmt_s(t.prove_bit_s), _fmt_s(t.verify_bit_s), _fmt_s(t.batch_bit_s),
            _fmt_s(t.prove_bit_s * k), _fmt_s(t.verify_bit_s * k), _fmt_s(t.batch_bit_s * k),
            f"{t.proof_bytes_per_bit:,}",
        )  # fmt: skip
    console.print(per_bit)

    spec = example_spec(statistics=["weighted_mean", "footprint_weighted_mean"])
    slots, example_bits = round_bits(spec)
    full_bits, full_mults = full_validity_bits(spec)
    cases = [
        (f"example round ({slots} slots)", example_bits),
        ("example round, full validity", full_bits + 2 * full_mults),
        (f"d = {BASELINE_D}, |v| ≤ 2^40", BASELINE_D * (2 * BASELINE_BOUND).bit_length()),
    ]
    extra = Table(
        title="extrapolated: range proofs on every slot (bits × per-bit cost); ratio to the baseline of the same key"
    )
    for col in ("key", "contribution", "bits", "prove / firm", "verify / firm", "batch / firm", "baseline verify",
                "verify / baseline", "batch / baseline", "wire / firm", *[f"batch, {f} firms" for f in FIRMS]):  # fmt: skip
        extra.add_column(col, justify="right")
    for t in timings:
        for name, bits in cases:
            extra.add_row(
                str(t.bits), name, f"{bits:,}", _fmt_s(t.prove_bit_s * bits), _fmt_s(t.verify_bit_s * bits),
                _fmt_s(t.batch_bit_s * bits), f"{_fmt_s(t.baseline_s)} ({t.baseline_ciphertexts} ct)",
                f"{t.verify_bit_s * bits / t.baseline_s:,.0f}×", f"{t.batch_bit_s * bits / t.baseline_s:,.0f}×",
                f"{t.proof_bytes_per_bit * bits / 2**20:,.1f} MiB",
                *[_fmt_s(t.batch_bit_s * bits * f) for f in FIRMS],
            )  # fmt: skip
    console.print(extra)
    console.print(
        f"[dim]full validity (design): every relation of the example round's contribution, {full_bits:,} bits "
        f"and {full_mults} multiplication proofs (about two bits' cost each)[/dim]"
    )
    flp = Table(title="secagg rounds: Prio-style FLP on shares held by the two custodians (estimate, pure Python)")
    for col in ("statement", "circuit inputs M", "gadget L × calls K", "proof elements", "prove / firm",
                "verify / firm / custodian", "upload / firm", "verify, 50 firms", "Paillier batch verify / firm (2048)"):  # fmt: skip
        flp.add_column(col, justify="right")
    for name, bits, mults in (
        ("example round, full validity", full_bits, full_mults),
        (f"d = {BASELINE_D}, 42-bit ranges", BASELINE_D * (2 * BASELINE_BOUND).bit_length(), 0),
    ):
        est = flp_estimate(bits, mults)
        paillier = timings[0].batch_bit_s * (bits + 2 * mults)
        flp.add_row(
            name, f"{est.entries:,}", f"{est.chunk} × {est.calls}", f"{est.proof_elements:,}", _fmt_s(est.prove_s),
            _fmt_s(est.verify_s), f"{est.upload_bytes / 1024:,.0f} KiB", _fmt_s(50 * est.verify_s), _fmt_s(paillier),
        )  # fmt: skip
    console.print(flp)
    console.print(
        "[dim]verify / firm is what the aggregator and each custodian would add per contribution; the baseline is "
        "the plaintext-knowledge proofs of one d = 1000 packed contribution, verified in the same run.[/dim]"
    )


if __name__ == "__main__":
    main()
