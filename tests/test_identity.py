"""Ed25519 identities: RFC 8032 known answers, storage with mode 0600, opaque verification failures."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.identity import (
    IdentityError,
    InvalidSignature,
    b64url_decode,
    b64url_encode,
    fingerprint,
    generate_identity,
    load_private_key,
    load_public_key_b64,
    public_key_b64,
    public_key_bytes,
    save_private_key,
    sign,
    verify,
)
from protocols import errors

# RFC 8032, section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
RFC2_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
RFC2_SIGNATURE = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


@pytest.fixture
def rfc_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(RFC_SEED)


def test_rfc8032_known_answer_public_key_and_signature(rfc_key: Ed25519PrivateKey) -> None:
    assert public_key_bytes(rfc_key) == RFC_PUBLIC
    assert public_key_b64(rfc_key) == b64url_encode(RFC_PUBLIC)
    assert sign(rfc_key, b"") == b64url_encode(RFC_SIGNATURE_EMPTY)
    verify(public_key_b64(rfc_key), b"", b64url_encode(RFC_SIGNATURE_EMPTY))


def test_rfc8032_second_vector_verifies() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC2_SEED)
    assert sign(key, b"\x72") == b64url_encode(RFC2_SIGNATURE)


def test_public_key_is_43_chars_unpadded_and_padded_input_is_refused(rfc_key: Ed25519PrivateKey) -> None:
    # Behaviour changed deliberately (issue 9, property 6): one key, one spelling.
    text = public_key_b64(rfc_key)
    assert len(text) == 43 and "=" not in text and "+" not in text and "/" not in text
    assert public_key_bytes(load_public_key_b64(text)) == RFC_PUBLIC
    with pytest.raises(IdentityError, match="canonical base64url"):
        load_public_key_b64(text + "=")


def test_fingerprint_is_first_16_hex_of_sha256_of_raw_key(rfc_key: Ed25519PrivateKey) -> None:
    expected = hashlib.sha256(RFC_PUBLIC).hexdigest()[:16]
    assert fingerprint(public_key_b64(rfc_key)) == expected
    with pytest.raises(IdentityError):
        fingerprint(public_key_b64(rfc_key) + "=")


def _respellings(text: str) -> list[str]:
    """Other texts that a lenient base64 reader decodes to the same bytes as ``text``."""
    standard = text.replace("-", "+").replace("_", "/")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(text[-1])
    # 86 characters carry 516 bits for 512: the last character's low 4 bits are unused padding bits
    trailing = text[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    variants = [text + "=", text + "==", " " + text, text + " ", text + "\n", text[:40] + " " + text[40:], trailing]
    return variants + ([standard] if standard != text else [])


def test_non_canonical_spellings_of_a_signature_are_refused() -> None:
    key = generate_identity()
    public = public_key_b64(key)
    message = b"payload"
    signature = sign(key, message)
    while "-" not in signature and "_" not in signature:  # so the standard-alphabet variant differs
        message = os.urandom(8)
        signature = sign(key, message)
    verify(public, message, signature)
    for variant in _respellings(signature):
        assert variant != signature
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode(variant)
        with pytest.raises(InvalidSignature):
            verify(public, message, variant)


def test_sign_verify_round_trip_with_generated_key() -> None:
    key = generate_identity()
    signature = sign(key, b"round spec bytes")
    verify(public_key_b64(key), b"round spec bytes", signature)


@pytest.mark.parametrize(
    "tamper",
    ["data", "other_key", "flipped_signature", "short_signature", "not_base64_signature", "bad_public_key"],
)
def test_every_verification_failure_raises_the_same_opaque_error(tamper: str) -> None:
    key, other = generate_identity(), generate_identity()
    data = b"payload"
    signature = sign(key, data)
    public = public_key_b64(key)
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 1
    cases = {
        "data": (public, b"payload!", signature),
        "other_key": (public_key_b64(other), data, signature),
        "flipped_signature": (public, data, b64url_encode(bytes(raw))),
        "short_signature": (public, data, signature[:40]),
        "not_base64_signature": (public, data, "!!!" + signature[3:]),
        "bad_public_key": ("AAAA", data, signature),
    }
    with pytest.raises(InvalidSignature) as info:
        verify(*cases[tamper])
    assert str(info.value) == "signature does not verify"
    shown_cause = info.value.__cause__ or (None if info.value.__suppress_context__ else info.value.__context__)
    assert shown_cause is None  # the traceback does not reveal what was wrong either


def test_invalid_signature_is_the_protocols_error_type() -> None:
    assert InvalidSignature is errors.InvalidSignature


def test_saved_key_has_mode_0600_and_loads_back(tmp_path: Path) -> None:
    key = generate_identity()
    path = save_private_key(key, tmp_path / "firm.pem")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert public_key_b64(load_private_key(path)) == public_key_b64(key)


def test_password_protected_key_needs_the_password(tmp_path: Path) -> None:
    key = generate_identity()
    path = save_private_key(key, tmp_path / "firm.pem", password=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert public_key_b64(load_private_key(path, b"correct horse")) == public_key_b64(key)
    with pytest.raises(IdentityError, match="firm.pem"):
        load_private_key(path, b"wrong")
    with pytest.raises(IdentityError, match="firm.pem"):
        load_private_key(path)


def test_existing_key_file_is_not_overwritten_by_default(tmp_path: Path) -> None:
    path = save_private_key(generate_identity(), tmp_path / "firm.pem")
    before = path.read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        save_private_key(generate_identity(), path)
    assert path.read_bytes() == before
    save_private_key(generate_identity(), path, overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["firm.pem"]  # no temporary file left behind


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = save_private_key(generate_identity(), tmp_path / "firm.pem")
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="0644"):
        load_private_key(path)
    load_private_key(path, check_mode=False)


def test_missing_or_non_ed25519_key_file_is_an_identity_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read"):
        load_private_key(tmp_path / "absent.pem")
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(IdentityError, match="junk.pem"):
        load_private_key(junk)


@pytest.mark.parametrize("bad", ["", "AAAA", "x" * 43 + "!", b64url_encode(bytes(33))])
def test_malformed_public_keys_are_refused(bad: str) -> None:
    with pytest.raises(IdentityError):
        load_public_key_b64(bad)


def test_protocol_code_catches_the_signature_error_keys_raises() -> None:
    # keys/ is the ground floor: the error classes live there and protocols.errors re-exports them.
    import keys.errors
    import protocols.errors

    key = generate_identity()
    assert protocols.errors.InvalidSignature is keys.errors.InvalidSignature
    assert protocols.errors.IdentityError is keys.errors.IdentityError
    with pytest.raises(protocols.errors.InvalidSignature):
        verify(public_key_b64(key), b"message", sign(generate_identity(), b"message"))
    assert issubclass(protocols.errors.InvalidSignature, protocols.errors.PROTOCOL_FAILURES)
