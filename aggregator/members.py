"""Membership of the data space: enrolment with proof of key possession, approval, and signed member requests.

A member request carries three headers:

``X-PCF-Key``
    fingerprint of the member's identity key (``keys.identity.fingerprint``);
``X-PCF-Timestamp``
    Unix time in seconds with microseconds (``1735689600.123456``; whole seconds are accepted).
    Ed25519 signatures are deterministic, so the fraction is what tells two identical requests
    apart: a signature seen before is refused as a replay;
``X-PCF-Signature``
    base64 Ed25519 signature over :func:`request_message`:
    ``METHOD \\n PATH[?QUERY] \\n TIMESTAMP \\n hex(sha256(BODY))``.

Requests more than ``max_age`` away from the server's clock are refused as stale; a signature
seen before is refused as a replay.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from aggregator.errors import (
    Conflict,
    Forbidden,
    ReplayedRequest,
    StaleRequest,
    Unauthorized,
)
from aggregator.store import MemberRow, Transaction
from keys import identity
from protocols.errors import InvalidSignature

__all__ = [
    "HEADER_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "EnrollmentRequest",
    "MemberKey",
    "MemberPublic",
    "MemberStatus",
    "authenticate_member",
    "check_signed_request",
    "enroll",
    "enrollment_message",
    "list_member_keys",
    "list_members",
    "remember",
    "request_message",
    "set_status",
    "sign_enrollment",
    "sign_request",
]

HEADER_KEY: Final = "X-PCF-Key"
HEADER_TIMESTAMP: Final = "X-PCF-Timestamp"
HEADER_SIGNATURE: Final = "X-PCF-Signature"

MemberStatus = Literal["pending", "approved", "revoked"]

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
_B64URL = r"^[A-Za-z0-9_\-+/]+=*$"
_PEM_TEXT = r"^[\x20-\x7e\r\n\t]+$"
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")


class EnrollmentRequest(BaseModel):
    """Body of ``POST /api/v1/members/enroll``; ``signature`` is by the identity key over :func:`enrollment_message`."""

    org_name_zh: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    org_name_en: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    identity_public_key: str = Field(min_length=1, max_length=200, pattern=_B64URL)
    """Base64url Ed25519 public key (``keys.identity.public_key_b64``)."""
    supernode_public_key: str = Field(min_length=1, max_length=4000, pattern=_PEM_TEXT)
    """The public key the member's Flower SuperNode authenticates with (PEM or one line)."""
    signature: str = Field(min_length=1, max_length=200, pattern=_B64URL)


class MemberPublic(BaseModel):
    """A member as the association's administrators see it."""

    id: int
    fingerprint: str
    org_name_zh: str
    org_name_en: str
    identity_public_key: str
    supernode_public_key: str
    status: MemberStatus
    created_at: datetime
    updated_at: datetime


class MemberKey(BaseModel):
    """A member's identity key as anyone may fetch it to check log receipts."""

    fingerprint: str
    identity_public_key: str
    status: MemberStatus


def _public(row: MemberRow) -> MemberPublic:
    return MemberPublic.model_validate(row, from_attributes=True)


def enrollment_message(
    org_name_zh: str, org_name_en: str, identity_public_key: str, supernode_public_key: str
) -> bytes:
    """The bytes an enrolment signature covers: canonical JSON of the four enrolment fields."""
    fields = {
        "org_name_en": org_name_en,
        "org_name_zh": org_name_zh,
        "identity_public_key": identity_public_key,
        "supernode_public_key": supernode_public_key,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_enrollment(key: Any, org_name_zh: str, org_name_en: str, supernode_public_key: str) -> EnrollmentRequest:
    """Build a signed enrolment request (what a node sends).

    Parameters
    ----------
    key
        The organisation's Ed25519 identity private key.
    org_name_zh, org_name_en
        Registered names of the organisation.
    supernode_public_key
        Public key of the organisation's Flower SuperNode.

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
    )


def enroll(tx: Transaction, req: EnrollmentRequest, now: datetime) -> MemberPublic:
    """Record a pending member after checking the proof of possession of its identity key.

    Raises
    ------
    Unauthorized
        If the signature does not verify with the enclosed identity key.
    Conflict
        If the key is already enrolled.
    """
    msg = enrollment_message(req.org_name_zh, req.org_name_en, req.identity_public_key, req.supernode_public_key)
    try:
        identity.verify(req.identity_public_key, msg, req.signature)
        fp = identity.fingerprint(req.identity_public_key)
    except (InvalidSignature, ValueError):
        raise Unauthorized(
            "enrolment signature does not verify with identity_public_key; sign the canonical JSON of "
            "org_name_zh, org_name_en, identity_public_key and supernode_public_key with the identity key"
        ) from None
    row = MemberRow(
        fingerprint=fp,
        org_name_zh=req.org_name_zh,
        org_name_en=req.org_name_en,
        identity_public_key=req.identity_public_key,
        supernode_public_key=req.supernode_public_key,
        status="pending",
        created_at=now,
        updated_at=now,
    )
    return _public(tx.add_member(row))


_ALLOWED_FROM: Final[dict[str, tuple[str, ...]]] = {
    "approved": ("pending", "approved"),
    "revoked": ("pending", "approved", "revoked"),
}


def set_status(tx: Transaction, member_id: int, status: Literal["approved", "revoked"], now: datetime) -> MemberPublic:
    """Approve or revoke a member; repeating the same decision is a no-op.

    Raises
    ------
    NotFound
        For an unknown member id.
    Conflict
        When approving a revoked member (revocation is final: the organisation enrols a new key).
    """
    row = tx.get_member(member_id)
    if row.status not in _ALLOWED_FROM[status]:
        raise Conflict(
            f"member {member_id} is {row.status!r} and cannot become {status!r}; a revoked member enrols a new key"
        )
    if row.status != status:
        row = tx.set_member_status(member_id, status, now)
    return _public(row)


def list_members(tx: Transaction, status: MemberStatus | None = None) -> list[MemberPublic]:
    return [_public(r) for r in tx.list_members(status)]


def list_member_keys(tx: Transaction) -> list[MemberKey]:
    """Every member's identity key (revoked ones too: their old receipts stay verifiable)."""
    return [
        MemberKey(fingerprint=r.fingerprint, identity_public_key=r.identity_public_key, status=r.status)  # type: ignore[arg-type]
        for r in tx.list_members()
    ]


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
    return f"{method.upper()}\n{path}\n{timestamp}\n{body_sha256}".encode()


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


def check_signed_request(
    method: str,
    path: str,
    headers: Mapping[str, str | None],
    body: bytes,
    now: datetime,
    max_age: timedelta,
    public_key_for: Callable[[str], str | None],
) -> tuple[str, str]:
    """Check the signature headers of a request against the key its ``X-PCF-Key`` names.

    Parameters
    ----------
    method, path
        Of the request; ``path`` includes the query string.
    headers
        ``X-PCF-Key``, ``X-PCF-Timestamp``, ``X-PCF-Signature`` (``None`` when absent).
    body
        Raw request body.
    now
        The server's clock.
    max_age
        Largest accepted distance between ``now`` and the signed timestamp.
    public_key_for
        Fingerprint -> base64url public key, ``None`` for an unknown fingerprint.

    Returns
    -------
    tuple[str, str]
        The fingerprint and the signature (to remember against replays).

    Raises
    ------
    Unauthorized, StaleRequest
        Missing or malformed headers, an unknown key, a bad signature, a stale timestamp.
    """
    fp, ts, sig = headers.get(HEADER_KEY), headers.get(HEADER_TIMESTAMP), headers.get(HEADER_SIGNATURE)
    if not fp or not ts or not sig:
        raise Unauthorized(
            f"signed request without {HEADER_KEY}, {HEADER_TIMESTAMP} and {HEADER_SIGNATURE} headers; "
            "sign METHOD, path, timestamp and the body's SHA-256 with your identity key"
        )
    if not _TIMESTAMP.match(ts):
        raise Unauthorized(f"{HEADER_TIMESTAMP} {ts[:40]!r} is not Unix time in seconds (e.g. '1735689600.123456')")
    if not _FINGERPRINT.match(fp):
        raise Unauthorized(f"{HEADER_KEY} {fp[:40]!r} is not a key fingerprint (16 lowercase hex digits)")
    signed_at = float(ts)
    skew = abs(now.timestamp() - signed_at)
    if skew > max_age.total_seconds():
        raise StaleRequest(
            f"{HEADER_TIMESTAMP} {ts} is {int(skew)} s away from the server clock; "
            f"accepted are at most {int(max_age.total_seconds())} s"
        )
    public = public_key_for(fp)
    if public is None:
        raise Unauthorized(f"{HEADER_KEY} {fp[:40]!r} is not a key known for this action")
    try:
        identity.verify(public, request_message(method, path, ts, hashlib.sha256(body).hexdigest()), sig)
    except InvalidSignature:
        raise Unauthorized("request signature does not verify") from None
    return fp, sig


def authenticate_member(
    tx: Transaction,
    method: str,
    path: str,
    headers: Mapping[str, str | None],
    body: bytes,
    now: datetime,
    max_age: timedelta,
    *,
    require_approved: bool = True,
) -> MemberRow:
    """Check a signed member request and return the member who sent it.

    Parameters
    ----------
    tx
        Open transaction; the signature is remembered in it for replay protection.
    method, path, headers, body, now, max_age
        As in :func:`check_signed_request`.
    require_approved
        Refuse pending and revoked members (403) when true.

    Raises
    ------
    Unauthorized, StaleRequest, ReplayedRequest
        Missing headers, unknown key, bad signature, stale or replayed request (401).
    Forbidden
        The member is not approved (403).
    """

    def lookup(fp: str) -> str | None:
        row = tx.find_member(fp)
        return None if row is None else row.identity_public_key

    fp, sig = check_signed_request(method, path, headers, body, now, max_age, lookup)
    member = tx.find_member(fp)
    assert member is not None  # lookup found it
    if require_approved and member.status != "approved":
        raise Forbidden(f"member {fp!r} is {member.status!r}; only approved members may do this")
    remember(tx, fp, sig, now, max_age)
    return member


def remember(tx: Transaction, fingerprint: str, signature: str, now: datetime, max_age: timedelta) -> None:
    """Record a verified request signature; raise ``ReplayedRequest`` if it was seen before."""
    if not tx.remember_request(signature, fingerprint, now, max_age):
        raise ReplayedRequest("this signed request was already received; sign each request afresh")
