"""Known-answer tests of the canonical encoding (RFC 8785's own examples) and its domain tags."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from protocols.canonical import CanonicalError, Kind, canonical_json, digest, encode

# RFC 8785, section 3.2.2 (the sample input and its canonical output).
RFC_322_INPUT = (
    '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
    '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
    '  "literals": [null, true, false]\n}'
)
RFC_322_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)

# RFC 8785, appendix B: IEEE 754 bit patterns and their ECMAScript serialisation.
RFC_APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_rfc8785_sample_canonicalises_to_the_rfc_output() -> None:
    assert canonical_json(json.loads(RFC_322_INPUT)) == RFC_322_OUTPUT.encode("utf-8")


@pytest.mark.parametrize(("bits", "expected"), RFC_APPENDIX_B)
def test_rfc8785_number_serialisation(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected.encode("ascii")


def test_rfc8785_property_sorting_is_by_utf16_code_units() -> None:
    # RFC 8785, section 3.2.3: the emoji (surrogates D83D DE00) sorts before U+FB33,
    # although its code point is larger; sorting by code points would put it last.
    doc = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(doc)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_encode_prefixes_the_domain_tag_and_a_nul() -> None:
    blob = encode(Kind.ROUND_SPEC, {"b": 1, "a": "铝"})
    assert blob == b"pcf-dataspace/round-spec/v1\x00" + '{"a":"铝","b":1}'.encode()
    assert digest(Kind.ROUND_SPEC, {"a": "铝", "b": 1}) == hashlib.sha256(blob).hexdigest()


def test_same_document_under_two_kinds_gives_different_bytes() -> None:
    doc = {"round_id": "r1", "ints": ["1", "2"]}
    assert encode(Kind.CONSENT, doc) != encode(Kind.CONTRIBUTION, doc)
    assert len({digest(kind, doc) for kind in Kind}) == len(Kind)


def test_key_order_and_white_space_do_not_change_the_bytes() -> None:
    assert encode(Kind.ROSTER, json.loads('{"b": [1, 2], "a": {"y": null, "x": true}}')) == encode(
        Kind.ROSTER, {"a": {"x": True, "y": None}, "b": [1, 2]}
    )


@pytest.mark.parametrize(
    "document",
    [float("nan"), float("inf"), -float("inf"), 2**53, -(2**53), {"slot": 2**63 - 1}, {1: "int key"}, {"s": {1}}],
)
def test_values_that_cannot_be_exact_are_refused(document: object) -> None:
    with pytest.raises(CanonicalError):
        encode(Kind.CONTRIBUTION, document)


def test_largest_safe_integer_is_accepted_and_exact_values_travel_as_strings() -> None:
    assert canonical_json(2**53 - 1) == b"9007199254740991"
    assert canonical_json({"slot": str(2**63 - 1)}) == b'{"slot":"9223372036854775807"}'


@pytest.mark.parametrize("kind", ["", "Round", "a b", "a\x00b", "../x", "a//b"])
def test_kind_must_be_a_plain_name(kind: str) -> None:
    with pytest.raises(CanonicalError):
        encode(kind, {})
