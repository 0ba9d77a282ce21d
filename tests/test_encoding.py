"""Known-answer and property tests of the fixed-point and ring encodings."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.encoding import (
    INT64_MAX,
    INT64_MIN,
    RING_MODULUS,
    as_scale,
    decode,
    encode,
    from_ring,
    ring_sum,
    to_ring,
    to_signed,
)
from protocols.errors import EncodingError

int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)


@pytest.mark.parametrize(
    ("value", "scale", "expected"),
    [
        (0.5, 1, 0),  # half to even
        (1.5, 1, 2),
        (2.5, 1, 2),
        (-0.5, 1, 0),
        (-2.5, 1, -2),
        (-3.5, 1, -4),
        (0.375, 4, 2),  # 1.5 exactly
        (0.625, 4, 2),  # 2.5 exactly
        (2.675, 100, 267),  # 2.675 is 2.67499999999999982236431605997495353221893310546875
        (1.005, 100, 100),  # 1.00499999999999989341858963598497211933135986328125
        (123.4567, 1000, 123457),
        (13350.0, 1000, 13350000),
        (1e-7, 10**6, 0),
        (1.925, 10**6, 1925000),
        (25, Fraction(1, 10), 2),  # coarse derived scale: 2.5 -> 2
        (35, Fraction(1, 10), 4),  # 3.5 -> 4
        (Decimal("0.0005"), 1000, 0),
        (Decimal("0.0015"), 1000, 2),
        (Fraction(7, 2), 1, 4),
        (np.float64(2.5), 1, 2),
        (9.2e18, 1, 9200000000000000000),
    ],
)
def test_encode_known_answers_round_half_even_on_exact_product(value: object, scale: int, expected: int) -> None:
    assert encode(value, scale) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, Decimal("NaN"), True, "1.0", None])
def test_encode_refuses_non_finite_and_non_numbers(bad: object) -> None:
    with pytest.raises(EncodingError):
        encode(bad, 1000)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 0.1, Fraction(-1, 2), True, "1000", math.inf])
def test_scales_must_be_positive_integers_or_fractions(bad: object) -> None:
    with pytest.raises(EncodingError):
        as_scale(bad)


def test_integral_float_scale_is_accepted_as_integer() -> None:
    assert as_scale(1000.0) == 1000
    assert encode(1.2345, 1000.0) == 1234  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("integer", "scale", "expected"),
    [(1925000, 10**6, 1.925), (-2, 1, -2.0), (3, Fraction(1, 10), 30.0), (1, 3, 1 / 3), (0, 7, 0.0)],
)
def test_decode_known_answers(integer: int, scale: int, expected: float) -> None:
    assert decode(integer, scale) == expected


def test_to_ring_known_answers_twos_complement() -> None:
    ring = to_ring([0, 1, -1, INT64_MAX, INT64_MIN, -2])
    assert ring.dtype == np.uint64
    assert ring.tolist() == [0, 1, 2**64 - 1, 2**63 - 1, 2**63, 2**64 - 2]
    assert from_ring(ring) == [0, 1, -1, INT64_MAX, INT64_MIN, -2]


@pytest.mark.parametrize("bad", [2**63, INT64_MIN - 1, 2**64])
def test_to_ring_refuses_integers_outside_int64(bad: int) -> None:
    with pytest.raises(EncodingError, match="element 1"):
        to_ring([0, bad])


def test_to_ring_refuses_floats_and_bools() -> None:
    with pytest.raises(EncodingError):
        to_ring([1.0])  # type: ignore[list-item]
    with pytest.raises(EncodingError):
        to_ring([True])


def test_from_ring_accepts_python_ints_and_refuses_other_dtypes() -> None:
    assert from_ring([2**64 - 5, 7]) == [-5, 7]
    with pytest.raises(EncodingError):
        from_ring(np.array([1, 2], dtype=np.int64))
    with pytest.raises(EncodingError):
        from_ring([RING_MODULUS])
    assert to_signed(2**63) == INT64_MIN


@given(st.lists(int64s, max_size=20))
def test_ring_round_trip(values: list[int]) -> None:
    assert from_ring(to_ring(values)) == values


@given(st.lists(st.lists(st.integers(-(2**58), 2**58), min_size=3, max_size=3), min_size=1, max_size=16))
def test_ring_sum_decodes_to_the_signed_sum_when_it_fits(rows: list[list[int]]) -> None:
    total = ring_sum(to_ring(r) for r in rows)
    assert from_ring(total) == [sum(col) for col in zip(*rows, strict=True)]


def test_ring_sum_wraps_when_the_true_sum_leaves_int64() -> None:
    # Why validate_spec must prove its bounds: past 2^63 the decoded sum is silently wrong.
    assert from_ring(ring_sum([to_ring([INT64_MAX]), to_ring([1])])) == [INT64_MIN]


def test_masks_that_cancel_mod_2_64_leave_the_sum_exact() -> None:
    rng = np.random.default_rng(7)
    values = [[-5, 10, 123456789], [7, -20, 1], [0, 3, -99]]
    mask_a = rng.integers(0, 2**64, size=3, dtype=np.uint64, endpoint=False)
    mask_b = rng.integers(0, 2**64, size=3, dtype=np.uint64, endpoint=False)
    minus = np.zeros(3, dtype=np.uint64)
    masked = [
        to_ring(values[0]) + mask_a,
        to_ring(values[1]) + (minus - mask_a) + mask_b,
        to_ring(values[2]) + (minus - mask_b),
    ]
    assert from_ring(ring_sum(masked)) == [2, -7, 123456691]


def test_ring_sum_refuses_mismatched_vectors() -> None:
    with pytest.raises(EncodingError, match="length"):
        ring_sum([to_ring([1, 2]), to_ring([1])])
    with pytest.raises(EncodingError):
        ring_sum([np.array([1], dtype=np.int64)])
    with pytest.raises(EncodingError):
        ring_sum([])
