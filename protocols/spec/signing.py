"""The association's signature on a round spec: sign, and verify against the key a member trusts."""

from __future__ import annotations

import hmac

from keys.identity import Ed25519PrivateKey, b64url_decode, public_key_b64, sign, verify
from protocols.errors import InvalidSignature
from protocols.spec.model import RoundSpec, _Model, canonical_bytes
from protocols.spec.proof import validate_spec

__all__ = ["SignedSpec", "sign_spec", "verify_spec"]

class SignedSpec(_Model):
    """A round spec with the association's Ed25519 signature over its canonical bytes."""

    spec: RoundSpec
    signature: str
    """Base64url signature over :func:`canonical_bytes` (tagged ``round-spec/v1``, so never replayable as another kind)."""
    signer: str
    """Base64url raw public key of the signer."""


def sign_spec(spec: RoundSpec, key: Ed25519PrivateKey) -> SignedSpec:
    """Sign ``spec`` with ``key`` (over :func:`canonical_bytes`, domain-separated by its tag)."""
    signature = sign(key, canonical_bytes(spec))
    return SignedSpec(spec=spec, signature=signature, signer=public_key_b64(key))


def verify_spec(signed: SignedSpec, expected_public_b64: str, *, validate: bool = True) -> RoundSpec:
    """The spec of ``signed`` if the expected signer signed exactly it.

    Parameters
    ----------
    signed
        The signed spec as received.
    expected_public_b64
        The association's public key the caller trusts (from its configuration, never from
        ``signed.signer``, which is only a hint).
    validate
        Also run :func:`validate_spec` (default): a node MUST NOT contribute to a spec whose sums
        could overflow.

    Raises
    ------
    InvalidSignature
        Another signer, a malformed key or signature, or any change to the spec after signing.
    SpecError
        The signature holds but the spec fails :func:`validate_spec` (only when ``validate``).
    """
    try:
        same_signer = hmac.compare_digest(b64url_decode(signed.signer), b64url_decode(expected_public_b64))
    except ValueError:
        raise InvalidSignature() from None
    if not same_signer:
        raise InvalidSignature()
    verify(expected_public_b64, canonical_bytes(signed.spec), signed.signature)
    if validate:
        validate_spec(signed.spec)
    return signed.spec
