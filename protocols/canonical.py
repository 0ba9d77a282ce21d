"""The one encoding of everything signed or hashed: RFC 8785 canonical JSON behind a domain tag.

Every byte string that is signed, MACed or hashed anywhere in pcf-dataspace (round specs, rosters,
member requests, transparency-log entries, consents, custodian messages, contributions, dataset
digests, PACT tokens) is ``encode(kind, document)``:

    b"pcf-dataspace/" + kind + b"\\x00" + JCS(document)

where JCS is the JSON Canonicalization Scheme of RFC 8785 (sorted keys by UTF-16 code units, no
white space, ECMAScript number formatting, minimal string escapes). The tag separates the message
kinds, so a signature over one kind can never be replayed as another; the NUL ends it without
ambiguity (canonical JSON never holds a raw NUL) and a kind is checked to be a plain name.

Numbers that must be exact (fixed-point integers, ciphertexts, decimals) travel as integers of at
most 53 bits or as strings: RFC 8785 refuses larger integers (``IntegerDomainError``) rather than
round them, and this module refuses NaN and infinities. Floats that are measurements (a dataset's
amounts) are allowed and encode deterministically by RFC 8785's ECMAScript rules.

This module imports nothing of the project, so every layer (``lca`` for dataset digests included)
may use it.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any

import rfc8785

__all__ = ["CanonicalError", "Kind", "canonical_json", "digest", "encode"]

_PREFIX = b"pcf-dataspace/"
_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*(/[a-z0-9][a-z0-9.-]*)*$")


class Kind(StrEnum):
    """The message kinds: one tag per thing that is signed or hashed."""

    ROUND_SPEC = "round-spec/v1"
    ROSTER = "roster/v1"
    MEMBER_REQUEST = "member-request/v1"
    ENROLMENT = "enrolment/v1"
    LOG_ENTRY = "log-entry/v1"
    CONSENT = "consent/v1"
    CONTRIBUTION = "contribution/v1"
    CUSTODIAN_REQUEST = "custodian-request/v1"
    CUSTODIAN_PARTIAL = "custodian-partial/v1"
    KEY_SHARE = "key-share/v1"
    PAILLIER_KEY = "paillier-key/v1"
    DATASET = "dataset/v1"
    SECAGG = "secagg/v1"
    PACT_TOKEN = "pact-token/v1"
    FACTOR = "factor/v1"
    FACTOR_PACKAGE = "factor-package/v1"
    HISTOGRAM_COMMITMENT = "histogram-commitment/v1"
    MEMBER_CERTIFICATE = "member-certificate/v1"
    AGGREGATOR_CHALLENGE = "aggregator-challenge/v1"
    REVOCATION_LIST = "revocation-list/v1"
    STAGE_CONTEXT = "stage-context/v1"
    STAGE_COMMITMENT = "stage-commitment/v1"


class CanonicalError(ValueError):
    """A document cannot be put in canonical form (NaN, infinity, an integer over 2**53, a set...)."""


def canonical_json(document: Any) -> bytes:
    """RFC 8785 canonical JSON of ``document``, without a domain tag.

    Use it only where the bytes are a document in their own right (a stored or served canonical
    form); anything signed or hashed MUST go through :func:`encode` with its kind.
    """
    try:
        return rfc8785.dumps(document)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError(f"cannot encode canonically: {exc}") from None
    except (TypeError, ValueError) as exc:  # rfc8785 raises these for unsupported types
        raise CanonicalError(f"cannot encode canonically: {exc}") from None


def encode(kind: Kind | str, document: Any) -> bytes:
    """The bytes to sign, MAC or hash for a document of the given kind.

    Parameters
    ----------
    kind
        A :class:`Kind`, or a plain lower-case name with optional ``/`` parts (e.g. a protocol's
        own stage label, ``"secagg/v1/graph"``).
    document
        JSON data: dicts with string keys, lists, strings, booleans, ``None``, integers within
        ±(2**53 − 1), finite floats.

    Raises
    ------
    CanonicalError
        The kind is not a plain name, or the document has a value RFC 8785 cannot encode exactly.
    """
    tag = str(kind)
    if not _KIND_RE.match(tag):
        raise CanonicalError(f"message kind {tag!r} is not a plain lower-case name")
    return _PREFIX + tag.encode("ascii") + b"\x00" + canonical_json(document)


def digest(kind: Kind | str, document: Any) -> str:
    """Hex SHA-256 of :func:`encode` ``(kind, document)``."""
    return hashlib.sha256(encode(kind, document)).hexdigest()
