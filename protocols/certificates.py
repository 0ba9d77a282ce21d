"""Membership certificates: a firm's identity key bound to its Unified Social Credit Code by an authority.

The membership authority (``authority/``, hosted by the national database) is a party independent
of the aggregator. It signs, with its own Ed25519 key, a :class:`MemberCertificate` binding a firm's
identity public key to its Unified Social Credit Code (统一社会信用代码, GB 32100-2015) and legal
names, and a :class:`RevocationList` of the serials it withdrew. Nodes and custodians pin the
authority's key out of band and accept a round's cohort only if every member holds a valid
certificate for exactly the key the roster names, at most one per code: an aggregator that invents
members (Sybils) cannot certify them.

Both documents are signed over ``protocols.canonical.encode`` (kinds ``member-certificate/v1`` and
``revocation-list/v1``) of every field but the signature. Wire format only: no I/O; time is a
parameter (``now=``).

Every refusal raises :class:`CertificateRejected`, whose ``reason`` is one of :data:`REASONS`; a
signature that does not verify says only that (never which byte was wrong).

USCC (GB 32100-2015), 18 characters over ``0123456789ABCDEFGHJKLMNPQRTUWXY`` (no I, O, S, V, Z):

====  =======================================================================================
1     registration authority (1 机构编制, 5 民政, 9 工商 (market regulation), Y other, ...)
2     organisation type within that authority (9 then 1: enterprise, 2: individual business...)
3-8   administrative division of the registering office (GB/T 2260), six digits
9-17  organisation code (GB 11714-1997): eight characters and a check character (mod 11:
      weights 3 7 9 10 5 8 4 2, letters A=10 .. Z=35, 10 -> ``X``, 11 -> ``0``)
18    check character: ``31 - (Σ value(c_i) · 3^i mod 31) mod 31`` over the first 17, as an
      index into the character set (``31`` -> ``0``)
====  =======================================================================================

Some codes issued by early pilot offices (e.g. Fujian 2015) do not satisfy the check digit; they
are refused here and need the authority's correction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from keys import identity
from protocols.canonical import Kind, encode
from protocols.errors import IdentityError, InvalidSignature, ProtocolError

__all__ = [
    "REASONS",
    "USCC_CHARSET",
    "USCC_PATTERN",
    "CertificateRejected",
    "MemberCertificate",
    "RevocationList",
    "USCCError",
    "certificate_message",
    "check_cohort",
    "issue_certificate",
    "new_serial",
    "organisation_code_check",
    "revocation_list_message",
    "sign_revocation_list",
    "uscc_check_character",
    "validate_uscc",
    "verify_certificate",
    "verify_revocation_list",
]

USCC_CHARSET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 characters of GB 32100-2015 (no I, O, S, V, Z); a character's value is its index."""
USCC_PATTERN: Final = r"^[1-9ANY][0-9A-HJ-NPQRTUWXY][0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"
"""The shape of a USCC (what a JSON schema can say); :func:`validate_uscc` also checks both check characters."""
_USCC_WEIGHTS: Final = tuple(pow(3, i, 31) for i in range(17))
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
_REGISTRATION_AUTHORITIES: Final = frozenset("123456789ANY")
"""Position 1: 1 机构编制, 2 外交, 3 司法行政, 4 文化, 5 民政, 6 旅游, 7 宗教, 8 工会, 9 工商/市场监管,
A 中央军委改革和编制办公室, N 农业, Y other registration authorities."""
_PROVINCES: Final = frozenset(
    {"10", "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
     "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"}
)
"""First two digits of a GB/T 2260 division (``10``: registered at national level, ``100000``)."""

SIGNATURE: Final = "signature"
WRONG_AUTHORITY: Final = "wrong-authority"
NOT_YET_VALID: Final = "not-yet-valid"
EXPIRED: Final = "expired"
REVOKED: Final = "revoked"
KEY_MISMATCH: Final = "key-mismatch"
MISSING: Final = "missing"
DUPLICATE_CODE: Final = "duplicate-code"
MALFORMED: Final = "malformed"
REASONS: Final = (SIGNATURE, WRONG_AUTHORITY, NOT_YET_VALID, EXPIRED, REVOKED, KEY_MISMATCH, MISSING,
                  DUPLICATE_CODE, MALFORMED)
"""Why a certificate (or a cohort, or a revocation list) was refused."""

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
_B64URL = r"^[A-Za-z0-9_-]+$"
_SERIAL = r"^[0-9a-f]{32}$"
_KEY_ID = r"^[0-9a-f]{16}$"


class USCCError(ProtocolError, ValueError):
    """A Unified Social Credit Code is malformed or its check character is wrong; the message says where."""


class CertificateRejected(ProtocolError):
    """A membership certificate, a cohort or a revocation list is refused; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(message)


# -- USCC ----------------------------------------------------------------------------------------


def uscc_check_character(first17: str) -> str:
    """The 18th character of a USCC whose first 17 are ``first17`` (GB 32100-2015, mod 31)."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def organisation_code_check(first8: str) -> str:
    """The 9th character of an organisation code whose first 8 are ``first8`` (GB 11714-1997, mod 11)."""
    total = sum((int(c) if c.isdigit() else ord(c) - ord("A") + 10) * w
                for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def validate_uscc(code: str) -> str:
    """``code`` if it is a well-formed USCC with both check characters right; raise :class:`USCCError` otherwise.

    Surrounding white space is ignored; letters must be upper case (the standard's form).
    """
    c = code.strip()
    if len(c) != 18:
        raise USCCError(f"USCC {c!r} has {len(c)} characters; accepted: 18 (GB 32100-2015)")
    bad = [(i + 1, ch) for i, ch in enumerate(c) if ch not in USCC_CHARSET]
    if bad:
        pos, ch = bad[0]
        raise USCCError(f"USCC {c!r}: character {pos} {ch!r} is not in the code's character set "
                        f"{USCC_CHARSET} (upper case; no I, O, S, V, Z)")
    if c[0] not in _REGISTRATION_AUTHORITIES:
        raise USCCError(f"USCC {c!r}: character 1 {c[0]!r} is no registration authority; accepted: "
                        + ", ".join(sorted(_REGISTRATION_AUTHORITIES)))
    if not c[2:8].isdigit() or c[2:4] not in _PROVINCES:
        raise USCCError(f"USCC {c!r}: characters 3-8 {c[2:8]!r} are not an administrative division code "
                        "(six digits, GB/T 2260, starting with a province code such as 11, 31, 44)")
    org_check = organisation_code_check(c[8:16])
    if c[16] != org_check:
        raise USCCError(f"USCC {c!r}: the organisation code {c[8:17]!r} (characters 9-17) has check character "
                        f"{c[16]!r}; GB 11714 gives {org_check!r}")
    check = uscc_check_character(c[:17])
    if c[17] != check:
        raise USCCError(f"USCC {c!r}: check character (18) is {c[17]!r}; GB 32100-2015 gives {check!r}")
    return c


# -- certificates --------------------------------------------------------------------------------


def _utc_seconds(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC).replace(microsecond=0)
    except OverflowError:  # the year 1 or 9999 at an offset: kept as given (and never current)
        return value.replace(microsecond=0)


class MemberCertificate(BaseModel):
    """The authority's statement: this identity key is the firm with this USCC and these legal names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    serial: str = Field(pattern=_SERIAL)
    identity_public_key: str = Field(min_length=43, max_length=44, pattern=_B64URL)
    """Base64url of the firm's raw Ed25519 identity public key (``keys.identity.public_key_b64``)."""
    uscc: str = Field(min_length=18, max_length=18, pattern=USCC_PATTERN)
    """Checked in full (division code, both check characters) by :func:`verify_certificate`."""
    legal_name_zh: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    legal_name_en: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    authority_key_id: str = Field(pattern=_KEY_ID)
    """Fingerprint of the authority key that signed (``keys.identity.fingerprint``)."""
    signature: str = Field(min_length=1, max_length=128, pattern=_B64URL)

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _utc_seconds(value)

    def body(self) -> dict[str, Any]:
        """Every field but the signature, as JSON data (what the signature covers)."""
        return self.model_dump(mode="json", exclude={"signature"})

    def summary(self) -> dict[str, str]:
        """Who the certificate names, for people: legal names, code, serial, expiry."""
        return {"legal_name_zh": self.legal_name_zh, "legal_name_en": self.legal_name_en, "uscc": self.uscc,
                "serial": self.serial, "expires_at": self.expires_at.isoformat()}


def certificate_message(body: Mapping[str, Any]) -> bytes:
    """The bytes a certificate signature covers."""
    return encode(Kind.MEMBER_CERTIFICATE, dict(body))


def new_serial() -> str:
    """A fresh random serial: 128 bits as 32 lower-case hex digits."""
    return secrets.token_hex(16)


def issue_certificate(
    authority_key: Ed25519PrivateKey,
    identity_public_key: str,
    uscc: str,
    legal_name_zh: str,
    legal_name_en: str,
    *,
    issued_at: datetime,
    expires_at: datetime,
    serial: str | None = None,
) -> MemberCertificate:
    """Sign a certificate (what the authority does once it checked the firm's registration).

    Raises
    ------
    USCCError
        The code is malformed or a check character is wrong.
    IdentityError
        ``identity_public_key`` is not a base64url Ed25519 public key.
    ValueError
        ``expires_at`` is not after ``issued_at``.
    """
    identity.load_public_key_b64(identity_public_key)
    if _utc_seconds(expires_at) <= _utc_seconds(issued_at):
        raise ValueError(f"expires_at {expires_at.isoformat()} is not after issued_at {issued_at.isoformat()}")
    body = {
        "version": 1,
        "serial": serial or new_serial(),
        "identity_public_key": identity.b64url_encode(identity.b64url_decode(identity_public_key)),
        "uscc": validate_uscc(uscc),
        "legal_name_zh": legal_name_zh,
        "legal_name_en": legal_name_en,
        "issued_at": _utc_seconds(issued_at),
        "expires_at": _utc_seconds(expires_at),
        "authority_key_id": identity.fingerprint(identity.public_key_b64(authority_key)),
    }
    unsigned = MemberCertificate.model_validate({**body, "signature": "x"})
    return unsigned.model_copy(update={"signature": identity.sign(authority_key, certificate_message(unsigned.body()))})


# -- revocation lists ----------------------------------------------------------------------------


class RevocationList(BaseModel):
    """The serials an authority revoked, as of ``issued_at``; the next list is due by ``next_update``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    authority_key_id: str = Field(pattern=_KEY_ID)
    number: int = Field(ge=1, le=2**53 - 1)
    """Increases with every list the authority issues, so an older list cannot replace a newer one."""
    issued_at: AwareDatetime
    next_update: AwareDatetime
    revoked: list[str] = Field(default_factory=list, max_length=1_000_000)
    """Revoked serials, sorted."""
    signature: str = Field(min_length=1, max_length=128, pattern=_B64URL)

    @field_validator("issued_at", "next_update")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _utc_seconds(value)

    @field_validator("revoked")
    @classmethod
    def _serials(cls, value: list[str]) -> list[str]:
        for s in value:
            if not re.match(_SERIAL, s):
                raise ValueError(f"revoked serial {s[:40]!r}: accepted: 32 lower-case hex digits")
        return sorted(set(value))

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"signature"})

    def is_stale(self, now: datetime) -> bool:
        """Past ``next_update``: still honoured (revocations are final), but a newer list should be fetched."""
        return now > self.next_update


def revocation_list_message(body: Mapping[str, Any]) -> bytes:
    """The bytes a revocation list signature covers."""
    return encode(Kind.REVOCATION_LIST, dict(body))


def sign_revocation_list(authority_key: Ed25519PrivateKey, number: int, revoked: Iterable[str], *,
                         issued_at: datetime, next_update: datetime) -> RevocationList:
    body = {
        "version": 1,
        "authority_key_id": identity.fingerprint(identity.public_key_b64(authority_key)),
        "number": number,
        "issued_at": _utc_seconds(issued_at),
        "next_update": _utc_seconds(next_update),
        "revoked": sorted(set(revoked)),
    }
    unsigned = RevocationList.model_validate({**body, "signature": "x"})
    return unsigned.model_copy(
        update={"signature": identity.sign(authority_key, revocation_list_message(unsigned.body()))})


def _key_id(authority_public_key: str) -> str:
    try:
        return identity.fingerprint(authority_public_key)
    except IdentityError:
        raise CertificateRejected(MALFORMED, f"the pinned authority key {authority_public_key[:60]!r} is not "
                                             "a base64url Ed25519 public key") from None


def verify_revocation_list(crl: RevocationList | Mapping[str, Any], authority_public_key: str) -> RevocationList:
    """The revocation list, once it verifies with the pinned authority key.

    Raises
    ------
    CertificateRejected
        ``malformed``, ``wrong-authority`` or ``signature``.
    """
    try:
        doc = crl if isinstance(crl, RevocationList) else RevocationList.model_validate(crl)
    except ValueError as exc:
        raise CertificateRejected(MALFORMED, f"not a revocation list: {exc}") from None
    if doc.authority_key_id != _key_id(authority_public_key):
        raise CertificateRejected(WRONG_AUTHORITY, f"revocation list by authority {doc.authority_key_id}, not the "
                                                   f"pinned authority {_key_id(authority_public_key)}")
    try:
        identity.verify(authority_public_key, revocation_list_message(doc.body()), doc.signature)
    except InvalidSignature:
        raise CertificateRejected(SIGNATURE, "revocation list signature does not verify with the pinned "
                                             "authority key") from None
    return doc


def verify_certificate(
    cert: MemberCertificate | Mapping[str, Any] | None,
    authority_public_key: str,
    revocations: RevocationList | None = None,
    *,
    now: datetime,
    identity_public_key: str | None = None,
) -> MemberCertificate:
    """The certificate, once it is signed by the pinned authority, current, not revoked and (when given) for that key.

    Parameters
    ----------
    cert
        The certificate (a model or its JSON data); ``None`` is refused as ``missing``.
    authority_public_key
        The authority key the caller pinned out of band (base64url), never one the sender supplies.
    revocations
        A revocation list the caller already verified (:func:`verify_revocation_list`).
    now
        The caller's clock.
    identity_public_key
        The key the certificate must name (the enrolling key, the roster's key).

    Raises
    ------
    CertificateRejected
        With ``reason`` one of ``missing``, ``malformed``, ``wrong-authority``, ``signature``,
        ``not-yet-valid``, ``expired``, ``revoked``, ``key-mismatch``.
    """
    if cert is None:
        raise CertificateRejected(MISSING, "no membership certificate")
    try:
        doc = cert if isinstance(cert, MemberCertificate) else MemberCertificate.model_validate(cert)
    except ValueError as exc:
        raise CertificateRejected(MALFORMED, f"not a membership certificate: {exc}") from None
    try:
        validate_uscc(doc.uscc)
    except USCCError as exc:
        raise CertificateRejected(MALFORMED, f"certificate {doc.serial[:12]}: {exc}") from None
    who = f"certificate {doc.serial[:12]} ({doc.legal_name_en}, USCC {doc.uscc})"
    pinned = _key_id(authority_public_key)
    if doc.authority_key_id != pinned:
        raise CertificateRejected(WRONG_AUTHORITY, f"{who} names authority {doc.authority_key_id}, not the pinned "
                                                   f"membership authority {pinned}")
    try:
        identity.verify(authority_public_key, certificate_message(doc.body()), doc.signature)
    except InvalidSignature:
        raise CertificateRejected(SIGNATURE, f"{who}: signature does not verify with the pinned membership "
                                             "authority key") from None
    if now < doc.issued_at:
        raise CertificateRejected(NOT_YET_VALID, f"{who} is valid from {doc.issued_at.isoformat()}")
    if now >= doc.expires_at:
        raise CertificateRejected(EXPIRED, f"{who} expired at {doc.expires_at.isoformat()}")
    if revocations is not None and doc.serial in revocations.revoked:
        raise CertificateRejected(REVOKED, f"{who} is revoked (revocation list {revocations.number} of "
                                           f"{revocations.issued_at.isoformat()})")
    if identity_public_key is not None and not _same_key(identity_public_key, doc.identity_public_key):
        raise CertificateRejected(KEY_MISMATCH, f"{who} certifies another identity key, not "
                                                f"{_fingerprint_or_text(identity_public_key)}")
    return doc


def _same_key(a: str, b: str) -> bool:
    try:
        return identity.b64url_decode(a) == identity.b64url_decode(b)
    except ValueError:
        return False


def _fingerprint_or_text(key: str) -> str:
    try:
        return identity.fingerprint(key)
    except IdentityError:
        return repr(key[:60])


def check_cohort(
    members: Mapping[str, str],
    certificates: Mapping[str, MemberCertificate | Mapping[str, Any] | None],
    authority_public_key: str,
    revocations: RevocationList | None = None,
    *,
    now: datetime,
) -> dict[str, MemberCertificate]:
    """Every member certified for its own key, at most one member per USCC; the certificates by member.

    Parameters
    ----------
    members
        Member name (a roster's Flower node id, a roster file's entry) -> identity public key.
    certificates
        Member name -> its certificate (a member without one is refused).

    Raises
    ------
    CertificateRejected
        At the first member whose certificate is refused (the message names the member), or
        ``duplicate-code`` when two members carry the same USCC (one firm posing as several).
    """
    checked: dict[str, MemberCertificate] = {}
    by_code: dict[str, str] = {}
    for name, key in members.items():
        try:
            cert = verify_certificate(certificates.get(name), authority_public_key, revocations, now=now,
                                      identity_public_key=key)
        except CertificateRejected as exc:
            raise CertificateRejected(exc.reason, f"member {name} ({_fingerprint_or_text(key)}): {exc}") from None
        if cert.uscc in by_code:
            raise CertificateRejected(DUPLICATE_CODE, f"members {by_code[cert.uscc]} and {name} both carry USCC "
                                                      f"{cert.uscc}: one firm counts once")
        by_code[cert.uscc] = name
        checked[name] = cert
    return checked
