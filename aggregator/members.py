"""Membership of the data space: enrolment with proof of key possession, approval, and signed member requests.

A member request carries three headers:

``X-PCF-Key``
    fingerprint of the member's identity key (``keys.identity.fingerprint``);
``X-PCF-Timestamp``
    Unix time in seconds with microseconds (``1735689600.123456``; whole seconds are accepted).
    Ed25519 signatures are deterministic, so the fraction is what tells two identical requests
    apart: a signature seen before is refused as a replay;
``X-PCF-Signature``
    base64 Ed25519 signature over :func:`request_message` (``protocols.auth``): the canonical
    encoding of the method, the path with its query, the timestamp and the body's SHA-256.

Requests more than ``max_age`` away from the server's clock are refused as stale; a signature
seen before is refused as a replay.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel

from aggregator.errors import (
    Conflict,
    Forbidden,
    RegistrationFailed,
    ReplayedRequest,
    StaleRequest,
    Unauthorized,
)
from aggregator.store import MemberRow, Store, Transaction
from keys import identity
from protocols.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    EnrollmentRequest,
    enrollment_message,
    request_message,
    sign_enrollment,
    sign_request,
)
from protocols.errors import InvalidSignature

__all__ = [
    "HEADER_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "EnrollmentRequest",
    "MemberKey",
    "MemberPublic",
    "MemberRevocation",
    "MemberStatus",
    "SuperNodeRegistrar",
    "SuperNodeUnregistrar",
    "approve_member",
    "authenticate_member",
    "check_signed_request",
    "enroll",
    "enrollment_message",
    "list_member_keys",
    "list_members",
    "remember",
    "request_message",
    "revoke_member",
    "set_status",
    "sign_enrollment",
    "sign_request",
]


log = logging.getLogger(__name__)

MemberStatus = Literal["pending", "approved", "revoked"]

_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")


class MemberPublic(BaseModel):
    """A member as the association's administrators see it."""

    id: int
    fingerprint: str
    org_name_zh: str
    org_name_en: str
    identity_public_key: str
    supernode_public_key: str
    status: MemberStatus
    flower_node_id: str | None = None
    """Node id (decimal string, unsigned 64-bit) the SuperLink gave the member's SuperNode on approval;
    ``None`` while pending or when no SuperLink is configured."""
    created_at: datetime
    updated_at: datetime


SuperNodeRegistrar = Callable[[str], str]
"""``register(supernode_public_key) -> node id``: registers a SuperNode key with the SuperLink and returns
the node id it assigned (decimal string); raises ``RegistrationFailed`` (see ``aggregator.flower_runner``)."""

SuperNodeUnregistrar = Callable[[str], None]
"""``unregister(node_id)``: unregisters the SuperNode with that node id from the SuperLink; raises
``UnregistrationFailed`` (a ``RegistrationFailed``; see ``aggregator.flower_runner``)."""


class MemberRevocation(MemberPublic):
    """A revoked member, with what became of its SuperNode's registration at the SuperLink."""

    superlink_unregistered: bool | None = None
    """``True``: the SuperNode was unregistered now; ``False``: that failed (``unregister_error``
    says why) and the member is revoked all the same; ``None``: nothing to unregister (no node
    id, or no SuperLink configured)."""
    unregister_error: str | None = None


class MemberKey(BaseModel):
    """A member's identity key as anyone may fetch it to check log receipts."""

    fingerprint: str
    identity_public_key: str
    status: MemberStatus


def _public(row: MemberRow) -> MemberPublic:
    return MemberPublic.model_validate(row, from_attributes=True)


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
    _check_allowed(row, status)
    if row.status != status:
        row = tx.set_member_status(member_id, status, now)
    return _public(row)


def _check_allowed(row: MemberRow, status: str) -> None:
    if row.status not in _ALLOWED_FROM[status]:
        raise Conflict(
            f"member {row.id} is {row.status!r} and cannot become {status!r}; a revoked member enrols a new key"
        )


def approve_member(
    store: Store, member_id: int, now: datetime, register: SuperNodeRegistrar | None = None
) -> MemberPublic:
    """Approve a member; with ``register``, first register its SuperNode key with the SuperLink.

    The registration is a call to another service, so it runs outside any transaction; the member
    becomes ``approved`` together with its node id only once it succeeded, and a failed
    registration leaves the member ``pending``. Approving an approved member is a no-op, except
    that a member approved while no SuperLink was configured gets registered now.

    Raises
    ------
    NotFound
        For an unknown member id.
    Conflict
        When the member is revoked (before or during the registration), or the node id is taken.
    RegistrationFailed
        The SuperLink did not register the key (raised by ``register``).
    """
    with store.transaction() as tx:
        row = tx.get_member(member_id)
        _check_allowed(row, "approved")
        if register is None or row.flower_node_id is not None:
            return set_status(tx, member_id, "approved", now)
        supernode_key = row.supernode_public_key
    node_id = register(supernode_key)
    with store.transaction() as tx:
        _check_allowed(tx.get_member(member_id), "approved")
        return _public(tx.set_member_status(member_id, "approved", now, flower_node_id=node_id))


def revoke_member(
    store: Store, member_id: int, now: datetime, unregister: SuperNodeUnregistrar | None = None
) -> MemberRevocation:
    """Revoke a member; with ``unregister`` and a node id, then unregister its SuperNode from the SuperLink.

    The revocation is committed first, on its own: revoking MUST NOT depend on another service, so
    an unreachable or refusing SuperLink cannot keep a member in. The member is already shut out of
    every request and roster by its status; unregistering also stops its SuperNode connecting. A
    failed unregistration is logged and returned (``superlink_unregistered`` is ``False``, with
    ``unregister_error``), never raised. Revoking a revoked member is a no-op for its status and
    tries the unregistration again (a SuperNode already unregistered then reports that it is not
    found).

    Raises
    ------
    NotFound
        For an unknown member id.
    """
    with store.transaction() as tx:
        revoked = set_status(tx, member_id, "revoked", now)
    result = MemberRevocation.model_validate(revoked.model_dump())
    if unregister is None or revoked.flower_node_id is None:
        return result
    try:
        unregister(revoked.flower_node_id)
    except RegistrationFailed as exc:
        log.warning("member %s revoked, but its SuperNode is still registered: %s", member_id, exc.detail)
        return result.model_copy(update={"superlink_unregistered": False, "unregister_error": exc.detail})
    log.info("member %s revoked; SuperNode %s unregistered", member_id, revoked.flower_node_id)
    return result.model_copy(update={"superlink_unregistered": True})


def list_members(tx: Transaction, status: MemberStatus | None = None) -> list[MemberPublic]:
    return [_public(r) for r in tx.list_members(status)]


def list_member_keys(tx: Transaction) -> list[MemberKey]:
    """Every member's identity key (revoked ones too: their old receipts stay verifiable)."""
    return [
        MemberKey(fingerprint=r.fingerprint, identity_public_key=r.identity_public_key, status=r.status)  # type: ignore[arg-type]
        for r in tx.list_members()
    ]


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
