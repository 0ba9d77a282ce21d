"""What the membership authority does: certify a firm's key, revoke a certificate, sign the revocation list.

Plain functions over the store and the authority's key; the CLI and the HTTP app are adapters.
One firm (USCC) holds at most one current certificate and one key is certified for at most one
firm, so a firm cannot enter a round twice under two keys; a firm that changes its key gets the
new certificate with ``replace``, which revokes the old one in the same transaction.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError
from sqlmodel import col, or_, select

from authority.errors import AlreadyCertified, NotCertifiable, UnknownSerial
from authority.store import AuthorityStore, CertificateRow, RevocationListRow
from keys import identity
from keys.errors import IdentityError
from protocols.certificates import (
    MemberCertificate,
    RevocationList,
    USCCError,
    issue_certificate,
    sign_revocation_list,
    validate_uscc,
)

__all__ = [
    "certify",
    "current_revocation_list",
    "issue_revocation_list",
    "load_key",
    "load_or_create_key",
    "revoke",
]


def load_or_create_key(path: str | os.PathLike[str]) -> tuple[identity.Ed25519PrivateKey, bool]:
    """The authority's signing key at ``path`` and whether it was created now (mode 0600)."""
    target = Path(path)
    if target.exists():
        return identity.load_private_key(target), False
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = identity.generate_identity()
    identity.save_private_key(key, target)
    return key, True


def load_key(path: str | os.PathLike[str]) -> identity.Ed25519PrivateKey:
    """The authority's signing key; raises ``IdentityError`` when absent (run ``pcf authority init``)."""
    return identity.load_private_key(path)


def _is_current(row: CertificateRow, now: datetime) -> bool:
    return row.revoked_at is None and row.expires_at > now


def certify(
    store: AuthorityStore,
    key: identity.Ed25519PrivateKey,
    *,
    uscc: str,
    legal_name_zh: str,
    legal_name_en: str,
    identity_public_key: str,
    now: datetime,
    valid_for: timedelta,
    replace: bool = False,
) -> MemberCertificate:
    """Issue a certificate binding ``identity_public_key`` to the firm ``uscc``.

    Raises
    ------
    NotCertifiable
        The USCC is malformed or a check character is wrong, a name is empty or holds control
        characters, or the key is not a base64url Ed25519 public key.
    AlreadyCertified
        The USCC holds a current certificate (for any key) and ``replace`` is false, or the key is
        certified for another USCC.
    """
    try:
        code = validate_uscc(uscc)
        identity.load_public_key_b64(identity_public_key)
    except (USCCError, IdentityError) as exc:
        raise NotCertifiable(str(exc)) from None
    try:
        cert = issue_certificate(key, identity_public_key, code, legal_name_zh.strip(), legal_name_en.strip(),
                                 issued_at=now, expires_at=now + valid_for)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NotCertifiable(f"cannot certify {code}: {problems}") from None
    with store.transaction() as s:
        rows = list(s.exec(select(CertificateRow).where(or_(
            col(CertificateRow.uscc) == code, col(CertificateRow.identity_public_key) == cert.identity_public_key))))
        for row in rows:
            if not _is_current(row, now):
                continue
            if row.uscc != code:
                raise AlreadyCertified(
                    f"identity key {identity.fingerprint(cert.identity_public_key)} is certified for USCC {row.uscc} "
                    f"(serial {row.serial}); one key is one firm: the firm generates a new key")
            if not replace:
                raise AlreadyCertified(
                    f"USCC {code} ({row.legal_name_en}) holds current certificate {row.serial} until "
                    f"{row.expires_at.isoformat()}; revoke it first, or certify with --replace")
            row.revoked_at = now
            row.revocation_reason = f"superseded by {cert.serial}"
            s.add(row)
        s.add(CertificateRow(serial=cert.serial, uscc=code, identity_public_key=cert.identity_public_key,
                             legal_name_zh=cert.legal_name_zh, legal_name_en=cert.legal_name_en,
                             issued_at=cert.issued_at, expires_at=cert.expires_at, document=cert.model_dump_json()))
    return cert


def revoke(store: AuthorityStore, serial: str, now: datetime, reason: str = "") -> CertificateRow:
    """Mark a certificate revoked (a no-op when it already is); the next revocation list names it.

    Raises
    ------
    UnknownSerial
        No certificate has this serial.
    """
    with store.transaction() as s:
        row = s.get(CertificateRow, serial.strip().lower())
        if row is None:
            raise UnknownSerial(f"no certificate with serial {serial!r}; `pcf authority show` lists them")
        if row.revoked_at is None:
            row.revoked_at = now
            row.revocation_reason = reason or None
            s.add(row)
        return row


def issue_revocation_list(store: AuthorityStore, key: identity.Ed25519PrivateKey, now: datetime,
                          valid_for: timedelta) -> RevocationList:
    """Sign a new revocation list of every revoked serial, numbered one above the last."""
    with store.transaction() as s:
        number = store.next_revocation_list_number(s)
        crl = sign_revocation_list(key, number, store.revoked_serials(), issued_at=now, next_update=now + valid_for)
        s.add(RevocationListRow(number=number, issued_at=crl.issued_at, next_update=crl.next_update,
                                document=crl.model_dump_json()))
    return crl


def current_revocation_list(store: AuthorityStore) -> RevocationList | None:
    """The newest revocation list signed, or ``None`` before the first."""
    row = store.latest_revocation_list()
    return None if row is None else RevocationList.model_validate(json.loads(row.document))
