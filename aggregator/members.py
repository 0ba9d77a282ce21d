"""Membership of the data space: enrolment with proof of key possession, approval, and signed member requests.

A member request carries three headers:

``X-PCF-Key``
    fingerprint of the member's identity key (``keys.identity.fingerprint``);
``X-PCF-Timestamp``
    Unix time in seconds with microseconds (``1735689600.123456``; whole seconds are accepted).
    Ed25519 signatures are deterministic, so the fraction is what tells two identical requests
    apart: a signature seen before is refused as a replay;
``X-PCF-Signature``
    Ed25519 signature over :func:`request_message` (``protocols.auth``): the canonical
    encoding of the method, the path with its query, the timestamp and the body's SHA-256; canonical
    unpadded base64url only (any other spelling is refused).

Requests more than ``max_age`` away from the server's clock are refused as stale; a signature
seen before is refused as a replay, keyed on its decoded bytes.
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
from protocols.certificates import (
    CertificateRejected,
    MemberCertificate,
    USCCError,
    validate_uscc,
    verify_certificate,
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
    "certified_members",
    "check_signed_request",
    "enroll",
    "enrollment_message",
    "list_member_keys",
    "list_members",
    "member_certificate",
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
    uscc: str | None = None
    """Unified Social Credit Code of the membership certificate the member enrolled with."""


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
    certificate: MemberCertificate | None = None
    """The membership authority's certificate the member enrolled with (check it against the authority key)."""


def _public(row: MemberRow) -> MemberPublic:
    return MemberPublic.model_validate(row, from_attributes=True)


def enroll(tx: Transaction, req: EnrollmentRequest, now: datetime, *,
           authority_public_key: str | None = None) -> MemberPublic:
    """Record a pending member after checking the proof of possession of its identity key and its certificate.

    Parameters
    ----------
    authority_public_key
        The membership authority's key the association pinned (``PCF_AGG_AUTHORITY_PUBLIC_KEY``): when
        given, the request MUST carry that authority's current certificate for its identity key, and
        the enrolment names are the certificate's legal names.

    Raises
    ------
    Unauthorized
        If the signature does not verify with the enclosed identity key.
    Forbidden
        A certificate is required and missing, not by the pinned authority, expired, or for another
        key; or the names differ from the certificate's.
    Conflict
        If the key is already enrolled, or another member (not revoked) holds the same USCC.
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
    if authority_public_key is not None:
        _check_certificate(req, authority_public_key, now)
    if req.certificate is not None:
        try:
            validate_uscc(req.certificate.uscc)
        except USCCError as exc:
            raise Forbidden(f"membership certificate refused (malformed): {exc}") from None
        holder = next((m for m in tx.list_members() if m.uscc == req.certificate.uscc and m.status != "revoked"), None)
        if holder is not None:
            raise Conflict(
                f"USCC {req.certificate.uscc} is already enrolled as member {holder.id} ({holder.fingerprint}); "
                "one firm is one member: the association revokes the old member before the firm enrols a new key"
            )
    row = MemberRow(
        fingerprint=fp,
        org_name_zh=req.org_name_zh,
        org_name_en=req.org_name_en,
        identity_public_key=req.identity_public_key,
        supernode_public_key=req.supernode_public_key,
        status="pending",
        created_at=now,
        updated_at=now,
        certificate=req.certificate.model_dump_json() if req.certificate is not None else None,
        uscc=req.certificate.uscc if req.certificate is not None else None,
    )
    return _public(tx.add_member(row))


def _check_certificate(req: EnrollmentRequest, authority_public_key: str, now: datetime) -> None:
    if req.certificate is None:
        raise Forbidden(
            "enrolment needs a membership certificate: the firm's identity key certified by the membership "
            "authority against its USCC (`pcf authority certify`, then `pcf node enroll --certificate FILE`)"
        )
    try:
        cert = verify_certificate(req.certificate, authority_public_key, now=now,
                                  identity_public_key=req.identity_public_key)
    except CertificateRejected as exc:
        raise Forbidden(f"membership certificate refused ({exc.reason}): {exc}") from None
    if (req.org_name_zh, req.org_name_en) != (cert.legal_name_zh, cert.legal_name_en):
        raise Forbidden(
            f"the enrolment names ({req.org_name_zh!r}, {req.org_name_en!r}) are not the certificate's legal names "
            f"({cert.legal_name_zh!r}, {cert.legal_name_en!r}); enrol under the certified names"
        )


def member_certificate(row: MemberRow) -> MemberCertificate | None:
    """The certificate a member enrolled with, or ``None``."""
    return None if row.certificate is None else MemberCertificate.model_validate_json(row.certificate)


def certified_members(rows: list[MemberRow], authority_public_key: str | None,
                      now: datetime) -> tuple[list[MemberRow], dict[str, MemberCertificate]]:
    """The members a roster may hold and their certificates by fingerprint.

    Without an authority key every member is kept (with whatever certificate it enrolled with);
    with one, only members whose certificate is current for their key, so a roster never names a
    member that nodes pinning the authority would refuse (one whose certificate expired since
    enrolment is left out and logged).
    """
    kept: list[MemberRow] = []
    certs: dict[str, MemberCertificate] = {}
    for row in rows:
        cert = member_certificate(row)
        if authority_public_key is not None:
            try:
                cert = verify_certificate(cert, authority_public_key, now=now, identity_public_key=row.identity_public_key)
            except CertificateRejected as exc:
                log.warning("member %s (%s) left out of the roster: %s", row.id, row.fingerprint, exc)
                continue
        kept.append(row)
        if cert is not None:
            certs[row.fingerprint] = cert
    return kept, certs


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
        MemberKey(fingerprint=r.fingerprint, identity_public_key=r.identity_public_key, status=r.status,  # type: ignore[arg-type]
                  certificate=member_certificate(r))
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
        The fingerprint and the replay key: the decoded signature bytes in canonical base64url
        (to remember against replays; the same for every spelling of one signature).

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
        raise Unauthorized(
            "request signature does not verify; accepted: the Ed25519 signature as canonical base64url "
            "(86 characters, no '=' padding, no '+' '/', no whitespace)"
        ) from None
    # The replay cache keys on the signature's bytes, re-encoded, never on the text as received.
    return fp, identity.b64url_encode(identity.signature_bytes(sig))


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
