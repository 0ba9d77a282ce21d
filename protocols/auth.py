"""Wire format of membership: enrolment with proof of key possession and signed member requests.

A member request carries three headers:

``X-PCF-Key``
    fingerprint of the member's identity key (``keys.identity.fingerprint``);
``X-PCF-Timestamp``
    Unix time in seconds with microseconds (``1735689600.123456``). Ed25519 signatures are
    deterministic, so the fraction tells two identical requests apart;
``X-PCF-Signature``
    Ed25519 signature over :func:`request_message`: the canonical encoding
    (``protocols.canonical``, kind ``member-request/v1``) of ``method``, ``path`` (with the query),
    ``timestamp`` and ``body_sha256`` (hex SHA-256 of the raw body). Canonical base64url of the 64
    raw bytes, 86 characters, no padding: any other spelling is refused
    (``keys.identity.b64url_decode``), so the replay cache, keyed on the decoded bytes, sees every
    copy of a request as the same request.

Both roles use this module: a node signs, the aggregator checks.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, Field

from keys import identity
from protocols.canonical import Kind, encode
from protocols.certificates import MemberCertificate

__all__ = [
    "HEADER_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "EnrollmentRequest",
    "enrollment_message",
    "request_message",
    "sign_enrollment",
    "sign_request",
]

HEADER_KEY: Final = "X-PCF-Key"
HEADER_TIMESTAMP: Final = "X-PCF-Timestamp"
HEADER_SIGNATURE: Final = "X-PCF-Signature"

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
_B64URL = r"^[A-Za-z0-9_-]+$"
"""Canonical base64url as :func:`keys.identity.b64url_encode` writes it: no padding, no ``+`` ``/``."""
_PEM_TEXT = r"^[\x20-\x7e\r\n\t]+$"


class EnrollmentRequest(BaseModel):
    """Body of ``POST /api/v1/members/enroll``; ``signature`` is by the identity key over :func:`enrollment_message`."""

    org_name_zh: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    org_name_en: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    identity_public_key: str = Field(min_length=1, max_length=200, pattern=_B64URL)
    """Base64url Ed25519 public key (``keys.identity.public_key_b64``)."""
    supernode_public_key: str = Field(min_length=1, max_length=4000, pattern=_PEM_TEXT)
    """The public key the member's Flower SuperNode authenticates with (PEM or one line)."""
    signature: str = Field(min_length=1, max_length=200, pattern=_B64URL)
    certificate: MemberCertificate | None = None
    """The membership authority's certificate for ``identity_public_key`` (``protocols.certificates``); it
    carries its own signature, so the enrolment signature need not cover it."""


def enrollment_message(
    org_name_zh: str, org_name_en: str, identity_public_key: str, supernode_public_key: str
) -> bytes:
    """The bytes an enrolment signature covers: the canonical encoding of the four enrolment fields."""
    fields = {
        "org_name_en": org_name_en,
        "org_name_zh": org_name_zh,
        "identity_public_key": identity_public_key,
        "supernode_public_key": supernode_public_key,
    }
    return encode(Kind.ENROLMENT, fields)


def sign_enrollment(key: Any, org_name_zh: str, org_name_en: str, supernode_public_key: str,
                    certificate: MemberCertificate | None = None) -> EnrollmentRequest:
    """Build a signed enrolment request (what a node sends).

    Parameters
    ----------
    key
        The organisation's Ed25519 identity private key.
    org_name_zh, org_name_en
        Registered names of the organisation.
    supernode_public_key
        Public key of the organisation's Flower SuperNode.
    certificate
        The membership authority's certificate for the identity key, if the firm has one.

    Returns
    -------
    EnrollmentRequest
    """
    pub = identity.public_key_b64(key)
    msg = enrollment_message(org_name_zh, org_name_en, pub, supernode_public_key)
    return EnrollmentRequest(
        org_name_zh=org_name_zh,
        org_name_en=org_name_en,
        identity_public_key=pub,
        supernode_public_key=supernode_public_key,
        signature=identity.sign(key, msg),
        certificate=certificate,
    )


def request_message(method: str, path: str, timestamp: str, body_sha256: str) -> bytes:
    """The bytes a member request signature covers.

    Parameters
    ----------
    method
        HTTP method, upper-cased by this function.
    path
        URL path including the query string if any (``/api/v1/rounds?state=open``).
    timestamp
        The ``X-PCF-Timestamp`` header value.
    body_sha256
        Lowercase hex SHA-256 of the raw body (of ``b""`` when there is none).
    """
    document = {"method": method.upper(), "path": path, "timestamp": timestamp, "body_sha256": body_sha256}
    return encode(Kind.MEMBER_REQUEST, document)


def sign_request(key: Any, method: str, path: str, body: bytes, now: datetime) -> dict[str, str]:
    """Headers that authenticate one member request (what a node sends).

    Parameters
    ----------
    key
        The member's Ed25519 identity private key.
    method, path
        As in :func:`request_message`; ``path`` includes the query string.
    body
        The exact bytes of the body.
    now
        Signing time (timezone-aware).

    Returns
    -------
    dict[str, str]
        ``X-PCF-Key``, ``X-PCF-Timestamp`` and ``X-PCF-Signature``.
    """
    ts = f"{now.timestamp():.6f}"
    msg = request_message(method, path, ts, hashlib.sha256(body).hexdigest())
    return {
        HEADER_KEY: identity.fingerprint(identity.public_key_b64(key)),
        HEADER_TIMESTAMP: ts,
        HEADER_SIGNATURE: identity.sign(key, msg),
    }
