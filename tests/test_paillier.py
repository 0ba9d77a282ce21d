"""Tests of protocol 2 (``paillier``): split key, packing, contributions, aggregation, custodians."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from example_round import example_firms, example_spec
from paillier_log import paillier_spec, round_log
from stage_runner import run_in_clear

from custodian.ceremony import custodian_init
from custodian.decrypt import custodian_decrypt
from custodian.errors import CustodianKeyError, ShareUnlockFailed
from custodian.store import ledger_path, load_public_key, load_share, save_share
from keys.identity import Ed25519PrivateKey, generate_identity, public_key_b64
from protocols.contribution import build_contribution
from protocols.disclosure import Stage, StagedRound, cells_of, count_layout, screen_layout, stage_vector
from protocols.errors import ProtocolError
from protocols.paillier import (
    CombineFailed,
    ContributionRejected,
    CustodianRefused,
    KeyShare,
    LayoutError,
    PackingLayout,
    PartialDecryption,
    RoundAccumulator,
    SignedContribution,
    SplitPublicKey,
    aggregate,
    check_slot_values,
    combine,
    custodian_partial_decrypt,
    deal_exponent_shares,
    encrypt_contribution,
    encrypt_stage,
    generate_split_key,
    gmpy2_active,
    make_layout,
    pack,
    sign_contribution,
    slots_packing,
    spec_layout,
    unpack,
    verify_contribution,
)
from protocols.paillier import contribute as paillier_contribute
from protocols.spec import vector_layout
from protocols.stats import staged_statistics

ROUND = "2025-Q1-cement-clinker"
TEST_BITS = 1024  # production ceremonies use ≥ 2048; 1024 keeps the suite fast
# Mixed magnitudes: tonnes of clinker in grams, kWh in Wh, a tiny ratio, a count.
BOUNDS = [10**12, 10**9, 50, 1, 2**62 - 1, 10**6]
VECTORS = [
    [734_000_000_000, -12_345_678, 50, -1, 2**62 - 1, 0],
    [1, 999_999_999, -50, 1, -(2**62 - 1), 17],
    [-(10**12), 0, 3, 0, 123_456_789_012_345, -999_999],
    [10**12, -(10**9), -7, 1, 2**61, 10**6],
    [42, 500_000_000, 0, -1, -(2**60) + 5, -3],
]


@pytest.fixture(scope="module")
def split_key() -> tuple[SplitPublicKey, list[KeyShare]]:
    return generate_split_key(2, TEST_BITS)


@pytest.fixture(scope="module")
def public_key(split_key: tuple[SplitPublicKey, list[KeyShare]]) -> SplitPublicKey:
    return split_key[0]


@pytest.fixture(scope="module")
def shares(split_key: tuple[SplitPublicKey, list[KeyShare]]) -> list[KeyShare]:
    return split_key[1]


@pytest.fixture(scope="module")
def firms() -> list[Ed25519PrivateKey]:
    return [generate_identity() for _ in VECTORS]


@pytest.fixture(scope="module")
def roster(firms: list[Ed25519PrivateKey]) -> frozenset[str]:
    return frozenset(public_key_b64(f) for f in firms)


@pytest.fixture(scope="module")
def layout(public_key: SplitPublicKey) -> PackingLayout:
    return make_layout(BOUNDS, max_participants=10, key_bits=public_key.bits)


@pytest.fixture(scope="module")
def contributions(
    public_key: SplitPublicKey, layout: PackingLayout, firms: list[Ed25519PrivateKey]
) -> list[SignedContribution]:
    return [encrypt_contribution(public_key, layout, v, ROUND, f) for v, f in zip(VECTORS, firms, strict=True)]


def _partials(
    shares: list[KeyShare],
    public_key: SplitPublicKey,
    contributions: list[SignedContribution],
    roster: frozenset[str],
) -> list[PartialDecryption]:
    return [custodian_partial_decrypt(s, public_key, contributions, roster, 3, ROUND, ledger={}) for s in shares]


# --------------------------------------------------------------------------- keys


def test_phe_uses_gmpy2_when_it_is_importable() -> None:
    assert gmpy2_active() == (importlib.util.find_spec("gmpy2") is not None)


def test_dealt_exponent_known_answer_for_small_primes() -> None:
    # Prepare: n = 11·13 = 143, λ = lcm(10, 12) = 60, d = 60·(60⁻¹ mod 143) = 1860.
    p, q, n = 11, 13, 143
    nsq = n * n

    # Execute
    shares = deal_exponent_shares(p, q, 3, randbits=lambda k: (1 << (k - 1)) | 12345)

    # Assert
    assert sum(shares) == 1860
    assert 1860 % 60 == 0 and 1860 % n == 1
    assert shares[0] == shares[1] == (1 << (1860).bit_length() + 127) | 12345
    c = (1 + n * 42) * pow(5, n, nsq) % nsq  # Enc(42) with r = 5
    assert c == 1841
    x = 1
    for s in shares:
        x = x * pow(c, s, nsq) % nsq
    assert (x - 1) % n == 0 and (x - 1) // n == 42


def test_split_key_needs_two_custodians_and_a_real_modulus() -> None:
    with pytest.raises(LayoutError, match="at least 2"):
        generate_split_key(1, TEST_BITS)
    with pytest.raises(LayoutError, match="bits"):
        generate_split_key(2, 512)


def test_key_share_repr_does_not_print_the_exponent(shares: list[KeyShare]) -> None:
    assert str(shares[0].exponent) not in repr(shares[0])


# --------------------------------------------------------------------------- packing


def test_pack_unpack_known_answer() -> None:
    # Prepare: widths bitlen(2·2·3)=4, bitlen(2·2·100)=9, bitlen(2·2·1)=3
    layout = make_layout([3, 100, 1], max_participants=2, key_bits=1024)
    assert layout.slot_bits == (4, 9, 3)
    assert layout.slots_per_ciphertext == (3,)

    # Execute: offsets give slots 0, 142, 2 → 0 + 142·2⁴ + 2·2¹³
    packed = pack([-3, 42, 1], layout)

    # Assert
    assert packed == [18656]
    assert unpack(packed, layout, 1) == [-3, 42, 1]
    assert unpack([18656 + pack([3, -100, -1], layout)[0]], layout, 2) == [0, -58, 0]


def test_unpacked_layout_puts_one_slot_per_ciphertext() -> None:
    layout = make_layout([3, 100, 1], max_participants=2, key_bits=1024, packed=False)
    assert layout.slots_per_ciphertext == (1, 1, 1)
    assert pack([-3, 42, 1], layout) == [0, 142, 2]


def test_packing_fills_plaintexts_up_to_the_safety_margin() -> None:
    layout = make_layout([2**40] * 200, max_participants=100, key_bits=2048)
    width = layout.slot_bits[0]
    assert width == (2 * 100 * 2**40).bit_length() == 48
    assert layout.slots_per_ciphertext[0] == (2048 - 64) // width
    assert sum(layout.slots_per_ciphertext) == 200


def test_headroom_holds_max_participants_times_max_value_exactly() -> None:
    # Prepare
    layout = make_layout([1000, 7], max_participants=4, key_bits=1024)
    top, bottom = pack([1000, -7], layout), pack([-1000, 7], layout)

    # Execute: the extreme sums of exactly max_participants contributions
    high = unpack([top[0] * 4], layout, 4)
    low = unpack([bottom[0] * 4], layout, 4)

    # Assert
    assert high == [4000, -28]
    assert low == [-4000, 28]


def test_headroom_one_more_is_refused_by_the_layout() -> None:
    layout = make_layout([1000, 7], max_participants=4, key_bits=1024)
    with pytest.raises(LayoutError, match="slot 0"):
        pack([1001, 0], layout)
    with pytest.raises(LayoutError, match="slot 1"):
        pack([0, -8], layout)
    with pytest.raises(LayoutError, match="n_participants"):
        unpack(pack([0, 0], layout), layout, 5)
    with pytest.raises(LayoutError, match="slot_bits"):
        PackingLayout((1000, 7), 5, 1024, layout.slot_bits, layout.slots_per_ciphertext)


def test_unpack_detects_a_sum_that_left_its_slot() -> None:
    layout = make_layout([1000], max_participants=4, key_bits=1024)
    with pytest.raises(CombineFailed):
        unpack([pack([1000], layout)[0] * 5], layout, 4)


def test_layout_refuses_a_slot_wider_than_the_key() -> None:
    with pytest.raises(LayoutError, match="does not fit"):
        make_layout([2**2000], max_participants=2, key_bits=2048)


# --------------------------------------------------------------------------- end to end


def test_sum_of_five_firms_equals_the_plain_sum_exactly(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    # Execute
    agg = aggregate(contributions, public_key=public_key, layout=layout, roster=roster, round_id=ROUND)
    partials = _partials(shares, public_key, contributions, roster)
    sums = combine(partials, public_key, layout, len(contributions))

    # Assert
    assert sums == [sum(col) for col in zip(*VECTORS, strict=True)]
    assert layout.n_ciphertexts < layout.n_slots  # really packed
    assert len(agg.ciphertexts) == layout.n_ciphertexts
    assert set(agg.contribution_digests) == set(partials[0].contribution_digests)


def test_custodians_recompute_the_same_product_as_the_aggregator(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    agg = aggregate(reversed(contributions), public_key=public_key, layout=layout, roster=roster, round_id=ROUND)
    partial = custodian_partial_decrypt(shares[0], public_key, contributions, roster, 3, ROUND, ledger={})
    expected = [pow(c, shares[0].exponent, public_key.nsquare) for c in agg.ciphertexts]
    assert list(partial.partials) == expected


def test_a_single_custodians_partial_does_not_decrypt(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    # Prepare: the packed plaintexts the full key reveals (sums of the packed vectors)
    expected = [sum(col) for col in zip(*(pack(v, layout) for v in VECTORS), strict=True)]
    partials = _partials(shares, public_key, contributions, roster)
    n, nsq = public_key.n, public_key.nsquare

    # Execute: apply the decryption function L(x) = (x − 1)/n to one custodian's partial alone
    alone = [(x - 1) // n % n for x in partials[0].partials]
    together = [(a * b % nsq - 1) // n for a, b in zip(partials[0].partials, partials[1].partials, strict=True)]

    # Assert
    assert together == expected
    assert alone != expected
    assert all((x - 1) % n != 0 for x in partials[0].partials)
    with pytest.raises(CombineFailed, match="each of the 2 custodians"):
        combine(partials[:1], public_key, layout, len(contributions))


def test_combine_detects_a_wrong_partial(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    wrong = dataclasses.replace(shares[1], exponent=shares[1].exponent + 1)
    partials = [
        custodian_partial_decrypt(shares[0], public_key, contributions, roster, 3, ROUND, ledger={}),
        custodian_partial_decrypt(wrong, public_key, contributions, roster, 3, ROUND, ledger={}),
    ]
    with pytest.raises(CombineFailed, match="not 1 mod n"):
        combine(partials, public_key, layout, len(contributions))


def test_combine_refuses_a_partial_with_a_bad_signature(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    partials = _partials(shares, public_key, contributions, roster)
    forged = dataclasses.replace(partials[1], signature=partials[0].signature)
    with pytest.raises(CombineFailed, match="bad signature"):
        combine([partials[0], forged], public_key, layout, len(contributions))


def test_combine_refuses_partials_over_different_contribution_sets(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    a = custodian_partial_decrypt(shares[0], public_key, contributions, roster, 3, ROUND, ledger={})
    b = custodian_partial_decrypt(shares[1], public_key, contributions[:4], roster, 3, ROUND, ledger={})
    with pytest.raises(CombineFailed, match="another round"):
        combine([a, b], public_key, layout, 5)


def test_messages_survive_a_json_round_trip(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    contributions: list[SignedContribution],
) -> None:
    partials = _partials(shares, public_key, contributions, roster)
    assert SplitPublicKey.from_dict(json.loads(json.dumps(public_key.to_dict()))) == public_key
    assert PackingLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    assert SignedContribution.from_dict(json.loads(json.dumps(contributions[0].to_dict()))) == contributions[0]
    assert PartialDecryption.from_dict(json.loads(json.dumps(partials[0].to_dict()))) == partials[0]


# --------------------------------------------------------------------------- aggregator


def test_aggregator_rejects_a_replayed_contribution(
    public_key: SplitPublicKey, layout: PackingLayout, roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    acc = RoundAccumulator(ROUND, public_key, layout, roster)
    acc.accept(contributions[0])
    product = list(acc.product or [])
    with pytest.raises(ContributionRejected, match="replay"):
        acc.accept(contributions[0])
    assert acc.product == product and len(acc.contributions) == 1


def test_aggregator_rejects_a_second_contribution_from_the_same_member(
    public_key: SplitPublicKey, layout: PackingLayout, roster: frozenset[str], firms: list[Ed25519PrivateKey]
) -> None:
    acc = RoundAccumulator(ROUND, public_key, layout, roster)
    acc.accept(encrypt_contribution(public_key, layout, VECTORS[0], ROUND, firms[0]))
    with pytest.raises(ContributionRejected, match="already contributed"):
        acc.accept(encrypt_contribution(public_key, layout, VECTORS[1], ROUND, firms[0]))


def test_aggregator_rejects_a_contribution_for_another_round(
    public_key: SplitPublicKey, layout: PackingLayout, roster: frozenset[str], firms: list[Ed25519PrivateKey]
) -> None:
    other = encrypt_contribution(public_key, layout, VECTORS[0], "2024-Q4-cement-clinker", firms[0])
    with pytest.raises(ContributionRejected, match="round_id"):
        aggregate([other], public_key=public_key, layout=layout, roster=roster, round_id=ROUND)


def test_aggregator_rejects_a_sender_outside_the_roster(
    public_key: SplitPublicKey, layout: PackingLayout, roster: frozenset[str]
) -> None:
    outsider = encrypt_contribution(public_key, layout, VECTORS[0], ROUND, generate_identity())
    with pytest.raises(ContributionRejected, match="roster"):
        aggregate([outsider], public_key=public_key, layout=layout, roster=roster, round_id=ROUND)


def test_aggregator_rejects_tampered_ciphertexts(
    public_key: SplitPublicKey, layout: PackingLayout, roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    c = contributions[0]
    tampered = dataclasses.replace(c, ciphertexts=(c.ciphertexts[0] * 2 % public_key.nsquare, *c.ciphertexts[1:]))
    with pytest.raises(ContributionRejected, match="digest"):
        aggregate([tampered], public_key=public_key, layout=layout, roster=roster, round_id=ROUND)


def test_aggregator_rejects_contributions_after_the_window_closes(
    public_key: SplitPublicKey, layout: PackingLayout, roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    closes = datetime(2025, 4, 1, tzinfo=UTC)
    acc = RoundAccumulator(ROUND, public_key, layout, roster, closes_at=closes)
    acc.accept(contributions[0], now=closes - timedelta(seconds=1))
    with pytest.raises(ContributionRejected, match="closed"):
        acc.accept(contributions[1], now=closes)


def test_aggregator_refuses_more_contributions_than_the_layout_headroom(
    public_key: SplitPublicKey, roster: frozenset[str], firms: list[Ed25519PrivateKey]
) -> None:
    small = make_layout([1000, 7], max_participants=4, key_bits=public_key.bits)
    cs = [encrypt_contribution(public_key, small, [1000, -7], ROUND, f) for f in firms]
    acc = RoundAccumulator(ROUND, public_key, small, roster)
    for c in cs[:4]:
        acc.accept(c)
    with pytest.raises(ContributionRejected, match="full"):
        acc.accept(cs[4])


def test_aggregator_rejects_a_copied_ciphertext(
    public_key: SplitPublicKey,
    layout: PackingLayout,
    roster: frozenset[str],
    firms: list[Ed25519PrivateKey],
    contributions: list[SignedContribution],
) -> None:
    # the victim's ciphertexts and proofs under another member's signature: the proofs name the victim
    copy = sign_contribution(public_key, ROUND, contributions[0].ciphertexts, firms[1], contributions[0].proofs)
    with pytest.raises(ContributionRejected, match="proof that the sender knows its plaintext"):
        aggregate([contributions[0], copy], public_key=public_key, layout=layout, roster=roster, round_id=ROUND)


# --------------------------------------------------------------------------- custodian safety rule


def test_custodian_refuses_one_contribution_when_three_are_required(
    public_key: SplitPublicKey, shares: list[KeyShare], roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    with pytest.raises(CustodianRefused, match="at least 3"):
        custodian_partial_decrypt(shares[0], public_key, contributions[:1], roster, 3, ROUND, ledger={})


def test_custodian_refuses_a_minimum_below_the_floor(
    public_key: SplitPublicKey, shares: list[KeyShare], roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    with pytest.raises(CustodianRefused, match="floor"):
        custodian_partial_decrypt(shares[0], public_key, contributions[:2], roster, 2, ROUND, ledger={})


def test_custodian_refuses_a_forged_signature(
    public_key: SplitPublicKey, shares: list[KeyShare], roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    forged = dataclasses.replace(contributions[2], signature=contributions[1].signature)
    with pytest.raises(CustodianRefused, match="bad signature"):
        custodian_partial_decrypt(
            shares[0], public_key, [*contributions[:2], forged, *contributions[3:]], roster, 3, ROUND, ledger={}
        )


def test_custodian_refuses_a_duplicated_sender(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    firms: list[Ed25519PrivateKey],
    contributions: list[SignedContribution],
) -> None:
    second = encrypt_contribution(public_key, layout, VECTORS[3], ROUND, firms[0])
    with pytest.raises(CustodianRefused, match="more than once"):
        custodian_partial_decrypt(shares[0], public_key, [*contributions[:3], second], roster, 3, ROUND, ledger={})
    with pytest.raises(CustodianRefused, match="more than once"):
        custodian_partial_decrypt(
            shares[0], public_key, [*contributions[:3], contributions[0]], roster, 3, ROUND, ledger={}
        )


def test_custodian_refuses_a_contribution_for_another_round(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    layout: PackingLayout,
    roster: frozenset[str],
    firms: list[Ed25519PrivateKey],
    contributions: list[SignedContribution],
) -> None:
    stale = encrypt_contribution(public_key, layout, VECTORS[4], "2024-Q4-cement-clinker", firms[4])
    with pytest.raises(CustodianRefused, match="round_id"):
        custodian_partial_decrypt(shares[0], public_key, [*contributions[:4], stale], roster, 3, ROUND, ledger={})


def test_custodian_refuses_a_second_set_for_the_same_round(
    public_key: SplitPublicKey, shares: list[KeyShare], roster: frozenset[str], contributions: list[SignedContribution]
) -> None:
    # Prepare
    ledger: dict[str, str] = {}
    first = custodian_partial_decrypt(shares[0], public_key, contributions, roster, 3, ROUND, ledger=ledger)

    # Execute / Assert: a custodian answers once per round: the same set again and a subset are refused
    with pytest.raises(CustodianRefused, match="already decrypted"):
        custodian_partial_decrypt(shares[0], public_key, contributions[::-1], roster, 3, ROUND, ledger=ledger)
    with pytest.raises(CustodianRefused, match="already decrypted"):
        custodian_partial_decrypt(shares[0], public_key, contributions[:4], roster, 3, ROUND, ledger=ledger)
    assert ledger == {ROUND: first.set_digest}


def test_refusals_belong_to_the_protocol_error_tree() -> None:
    assert issubclass(CustodianRefused, ProtocolError)
    assert issubclass(ContributionRejected, ProtocolError)


# --------------------------------------------------------------------------- share storage and CLI functions

PASSWORDS = ["association-correct-horse", "national-db-battery-staple"]


def test_saved_share_is_private_and_opens_only_with_its_password(
    tmp_path: Path, public_key: SplitPublicKey, shares: list[KeyShare]
) -> None:
    # Execute
    path = save_share(shares[0], tmp_path / "c0.share", PASSWORDS[0], public_key=public_key)

    # Assert
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert str(shares[0].exponent) not in path.read_text()
    loaded, pk = load_share(path, PASSWORDS[0])
    assert (loaded.index, loaded.exponent, pk) == (shares[0].index, shares[0].exponent, public_key)
    assert public_key_b64(loaded.signing_key) == public_key.custodians[0]
    with pytest.raises(ShareUnlockFailed):
        load_share(path, PASSWORDS[1])
    with pytest.raises(CustodianKeyError, match="already exists"):
        save_share(shares[0], path, PASSWORDS[0], public_key=public_key)


def test_edited_share_header_does_not_open(tmp_path: Path, public_key: SplitPublicKey, shares: list[KeyShare]) -> None:
    path = save_share(shares[0], tmp_path / "c0.share", PASSWORDS[0], public_key=public_key)
    body = json.loads(path.read_text())
    body["custodian_index"] = 1
    path.write_text(json.dumps(body))
    with pytest.raises(ShareUnlockFailed):
        load_share(path, PASSWORDS[0])


def test_share_readable_by_others_is_refused(
    tmp_path: Path, public_key: SplitPublicKey, shares: list[KeyShare]
) -> None:
    path = save_share(shares[0], tmp_path / "c0.share", PASSWORDS[0], public_key=public_key)
    path.chmod(0o644)
    with pytest.raises(CustodianKeyError, match="mode 0644"):
        load_share(path, PASSWORDS[0])


def test_ceremony_and_custodian_decrypt_end_to_end(
    tmp_path: Path, firms: list[Ed25519PrivateKey], roster: frozenset[str]
) -> None:
    # Prepare: a real 2048-bit ceremony with two custodians, a round logged as the aggregator logs it
    out = custodian_init(tmp_path / "ceremony", 2, 2048, passwords=PASSWORDS)
    public_key = load_public_key(out.public_key_path)
    spec = paillier_spec(ROUND, public_key.key_id)
    layout = spec_layout(spec)
    aggregator = generate_identity()
    vectors = [[min(bound, x) for bound in layout.bounds] for x in (7, 5, 1, 0)]
    cs = [encrypt_contribution(public_key, layout, v, ROUND, f) for v, f in zip(vectors, firms, strict=False)]
    log = round_log(aggregator, spec, firms, list(zip(firms, cs, strict=False))).entries
    bodies = [c.to_dict() for c in cs]
    key = public_key_b64(aggregator)

    # Execute
    answers = [
        custodian_decrypt(path, pw, ROUND, log=log, aggregator_key=key, bodies=bodies)
        for path, pw in zip(out.share_paths, PASSWORDS, strict=True)
    ]
    partials = [PartialDecryption.from_dict(json.loads(a)) for a in answers]

    # Assert
    assert combine(partials, public_key, layout, len(cs)) == [sum(column) for column in zip(*vectors, strict=True)]
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in out.share_paths)
    assert json.loads(ledger_path(out.share_paths[0]).read_text()) == {ROUND: partials[0].set_digest}
    with pytest.raises(CustodianRefused, match="already decrypted"):
        custodian_decrypt(out.share_paths[0], PASSWORDS[0], ROUND, log=log, aggregator_key=key, bodies=bodies)
    strict = paillier_spec("other", public_key.key_id, min_participants=5)
    log5 = round_log(aggregator, strict, firms, list(zip(firms, cs, strict=False))).entries
    with pytest.raises(CustodianRefused, match="at least 5"):  # the signed spec's minimum applies
        custodian_decrypt(out.share_paths[1], PASSWORDS[1], "other", log=log5, aggregator_key=key, bodies=bodies)


def test_ceremony_refuses_weak_keys_and_short_passwords(tmp_path: Path) -> None:
    with pytest.raises(CustodianKeyError, match="2048"):
        custodian_init(tmp_path, 2, 1024, passwords=PASSWORDS)
    with pytest.raises(CustodianKeyError, match="passwords\\[1\\]"):
        custodian_init(tmp_path, 2, 2048, passwords=[PASSWORDS[0], "short"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- canonical encodings


def test_key_id_contribution_digest_and_partial_are_canonical_encodings(
    public_key: SplitPublicKey,
    shares: list[KeyShare],
    contributions: list[SignedContribution],
    roster: frozenset[str],
) -> None:
    # Prepare: what an independent verifier would compute from the wire forms alone (RFC 8785 + tag).
    from protocols.canonical import Kind, digest, encode

    c = contributions[0]
    expected_key_id = digest(Kind.PAILLIER_KEY, {"n": format(public_key.n, "x"), "custodians": list(public_key.custodians)})
    wire = c.to_dict()
    expected_digest = digest(
        Kind.CONTRIBUTION,
        {k: wire[k] for k in ("protocol", "round_id", "stage", "key_id", "sender", "ciphertexts")},
    )

    # Execute
    partial = custodian_partial_decrypt(shares[0], public_key, contributions, roster, 3, ROUND, ledger={})
    signed = partial.signed_bytes()

    # Assert
    assert public_key.key_id == expected_key_id
    assert c.digest == expected_digest
    assert signed.startswith(b"pcf-dataspace/" + Kind.CUSTODIAN_PARTIAL.encode() + b"\x00")
    assert signed == encode(
        Kind.CUSTODIAN_PARTIAL,
        {
            "round_id": ROUND,
            "stage": "screen",
            "key_id": public_key.key_id,
            "custodian_index": 0,
            "contribution_set": partial.set_digest,
            "product_digest": partial.product_digest,
            "partials": [format(p, "x") for p in partial.partials],
        },
    )


def test_a_contribution_signature_does_not_verify_as_another_rounds(
    public_key: SplitPublicKey, layout: PackingLayout, firms: list[Ed25519PrivateKey], roster: frozenset[str]
) -> None:
    # A malicious aggregator relabels a contribution for another round, keeping digest and signature.
    c = encrypt_contribution(public_key, layout, VECTORS[0], ROUND, firms[0])
    relabelled = dataclasses.replace(c, round_id="2025-Q2-other")

    with pytest.raises(ContributionRejected, match="digest|signature"):
        aggregate([relabelled], public_key=public_key, layout=layout, roster=roster, round_id="2025-Q2-other")


def test_a_version_1_share_file_is_refused_by_name(
    tmp_path: Path, public_key: SplitPublicKey, shares: list[KeyShare]
) -> None:
    path = save_share(shares[0], tmp_path / "c0.share", PASSWORDS[0], public_key=public_key)
    body = json.loads(path.read_text())
    body["format"] = "pcf-paillier-share-v1"
    path.write_text(json.dumps(body))
    path.chmod(0o600)

    with pytest.raises(CustodianKeyError, match="pcf-paillier-share-v2"):
        load_share(path, PASSWORDS[0])


# --------------------------------------------------------------------------- disclosure stages


def test_the_honest_node_refuses_a_negative_value_in_a_non_negative_slot_before_encrypting(
    public_key: SplitPublicKey, firms: list[Ed25519PrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a screen vector with production -5 t (issue 10: packing offsets every slot by its bound, so it
    # would encode -5 as readily as +5), and a dominance vector with a count of -1; nothing may be encrypted
    spec = paillier_spec(ROUND, public_key.key_id)
    slots = screen_layout(spec)
    negative_w = [1 if s.kind == "count" else -5 if s.kind == "w" else 0 for s in slots]
    too_large_count = [2 if s.kind == "count" else 0 for s in slots]

    def no_encryption(*_args: object) -> None:
        raise AssertionError("a value its slot refuses reached the encryption")

    monkeypatch.setattr(paillier_contribute, "encrypt_with_randomness", no_encryption)

    # Execute / Assert
    with pytest.raises(LayoutError, match=r"slot w: value -5 is negative; accepted: 0 to \d+"):
        encrypt_stage(public_key, spec, Stage.SCREEN, None, negative_w, firms[0])
    with pytest.raises(LayoutError, match="slot count: value 2 outside the slot's bound; accepted: 0 to 1"):
        encrypt_stage(public_key, spec, Stage.SCREEN, None, too_large_count, firms[0])
    counts = count_layout(cells_of(spec, Stage.DOMINANCE, set(), []))
    with pytest.raises(LayoutError, match=r"slot b\[production\]: value -1 is negative"):
        check_slot_values(counts, [-1, 1])
    check_slot_values(counts, [1, 0])  # an honest count vector passes


@pytest.fixture(scope="module")
def key_2048() -> tuple[SplitPublicKey, list[KeyShare]]:
    return generate_split_key(2, 2048)


def test_four_encrypted_stage_sums_equal_the_stages_in_the_clear_and_the_plaintext_weighted_mean(
    key_2048: tuple[SplitPublicKey, list[KeyShare]],
) -> None:
    # Prepare: four smelters, their full contribution vectors, and the stages run in the clear
    public, custodian_shares = key_2048
    spec = example_spec(round_id=ROUND, protocol="paillier", paillier={"key_bits": 2048, "key_id": public.key_id})
    inputs = example_firms(spec)
    keys = {f.name: generate_identity() for f in inputs}
    rows = {public_key_b64(keys[f.name]): build_contribution(spec, f.values, f.weight, f.footprint_by_gas).ints
            for f in inputs}
    aggregator = generate_identity()
    clear = run_in_clear(spec, rows, aggregator)
    roster = frozenset(rows)

    # Execute: each stage encrypted by every firm, decrypted by both custodians, recorded in order
    staged = StagedRound(spec)
    ledger: dict[str, str] = {}
    while (stage := staged.next_stage()) is not None:
        signed = staged.context(aggregator, stage)
        context = signed.context if signed is not None else None
        posted = [encrypt_stage(public, spec, stage, context, stage_vector(spec, rows[k], stage, context), key)
                  for k, key in ((public_key_b64(key), key) for key in keys.values())]
        partials = [custodian_partial_decrypt(s, public, posted, roster, 3, ROUND, ledger=ledger if s.index == 0 else {},
                                              stage=str(stage)) for s in custodian_shares]
        summed = combine(partials, public, slots_packing(spec, staged.layout(stage)), len(posted))
        staged.record(stage, summed, [c.sender for c in posted])

    # Assert: the same sums as in the clear, one ledger entry per stage, and the exact plaintext weighted mean
    assert staged.sums == clear.sums and staged.stopped is None
    assert sorted(ledger) == sorted([ROUND, *(f"{ROUND}/{s}" for s in ("dominance", "values", "cells"))])
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
    layout = vector_layout(spec)
    total_w = sum(Fraction(r[next(i for i, s in enumerate(layout) if s.kind == "w")]) for r in rows.values())
    for c, comp in enumerate(stats.components):
        wx = next(i for i, s in enumerate(layout) if s.kind == "wx" and s.component == c)
        scale_w = next(s.scale for s in layout if s.kind == "w")
        exact = Fraction(sum(r[wx] for r in rows.values())) / layout[wx].scale / (total_w / scale_w)
        assert comp.weighted_mean == float(exact), comp.name_en


def test_a_stage_bound_into_the_digest_cannot_be_relabelled(
    public_key: SplitPublicKey, firms: list[Ed25519PrivateKey], roster: frozenset[str], layout: PackingLayout
) -> None:
    # A malicious aggregator relabels a firm's screen contribution as its values contribution
    c = encrypt_contribution(public_key, layout, VECTORS[0], ROUND, firms[0])
    relabelled = dataclasses.replace(c, stage="values")

    with pytest.raises(ContributionRejected, match="digest"):
        verify_contribution(relabelled, public_key, roster, ROUND, stage="values")
    with pytest.raises(ContributionRejected, match="it is for stage 'screen', expected stage 'values'"):
        verify_contribution(c, public_key, roster, ROUND, stage="values")
