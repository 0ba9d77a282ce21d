"""The round roster: which Flower node ids take part, the Ed25519 identity key of each, and its certificate.

The aggregator fixes the roster when it opens a ``secagg`` round (approved members whose
SuperNode is registered with the SuperLink) and signs it together with the spec hash; a node
verifies the signature against the aggregator key it enrolled with and then trusts only the
keys of this roster when it checks other nodes' signed key advertisements. The roster is also
written to the transparency log, so a roster that names keys members never enrolled is evident
to anyone who checks the log.

The aggregator's signature says who it invited, not who they are: each member's membership
certificate (``protocols.certificates``) travels with the roster, and a node that pinned the
membership authority's key accepts the roster only if every member is certified for its own key
(:func:`verify_roster_certificates`), so members the aggregator invented are refused. The
signature covers the certificates' serials, so the log shows which certificates a round used.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from keys import identity
from protocols.canonical import Kind, encode
from protocols.certificates import MemberCertificate, RevocationList, check_cohort
from protocols.errors import InvalidSignature

__all__ = [
    "SignedRoster",
    "roster_from_log_payload",
    "roster_log_payload",
    "roster_message",
    "sign_roster",
    "verify_roster",
    "verify_roster_certificates",
]


class SignedRoster(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    round_id: str
    spec_hash: str
    roster: dict[str, str]
    """Flower node id (decimal string) -> base64url Ed25519 identity public key."""
    signature: str
    certificates: dict[str, MemberCertificate] = Field(default_factory=dict)
    """Flower node id -> the member's membership certificate (empty when the aggregator has none)."""


def roster_message(round_id: str, spec_hash: str, roster: dict[str, str],
                   certificates: dict[str, MemberCertificate] | None = None) -> bytes:
    """The bytes a roster signature covers: round id, spec hash, roster and (when any) the certificates' serials."""
    body: dict[str, object] = {"round_id": round_id, "spec_hash": spec_hash,
                               "roster": {str(k): v for k, v in roster.items()}}
    if certificates:
        body["certificates"] = {str(k): c.serial for k, c in certificates.items()}
    return encode(Kind.ROSTER, body)


def sign_roster(key: Ed25519PrivateKey, round_id: str, spec_hash: str,
                roster: dict[str, str], certificates: dict[str, MemberCertificate] | None = None) -> SignedRoster:
    roster = {str(k): v for k, v in roster.items()}
    certs = {str(k): c for k, c in (certificates or {}).items()}
    return SignedRoster(round_id=round_id, spec_hash=spec_hash, roster=roster, certificates=certs,
                        signature=identity.sign(key, roster_message(round_id, spec_hash, roster, certs)))


def verify_roster(signed: SignedRoster, aggregator_public_b64: str, round_id: str, spec_hash: str) -> dict[str, str]:
    """The roster, once its signature, round id and spec hash check out; raises InvalidSignature otherwise."""
    if signed.round_id != round_id or signed.spec_hash != spec_hash:
        raise InvalidSignature("roster signature does not verify")
    identity.verify(aggregator_public_b64,
                    roster_message(signed.round_id, signed.spec_hash, signed.roster, signed.certificates),
                    signed.signature)
    return dict(signed.roster)


def verify_roster_certificates(signed: SignedRoster, authority_public_key: str,
                               revocations: RevocationList | None = None, *,
                               now: datetime) -> dict[str, MemberCertificate]:
    """Every roster member's certificate, checked against the authority key the caller pinned.

    Raises
    ------
    protocols.certificates.CertificateRejected
        A member without a certificate, or whose certificate is not by the pinned authority, is
        expired or revoked, certifies another key, or shares its USCC with another member.
    """
    return check_cohort(signed.roster, dict(signed.certificates), authority_public_key, revocations, now=now)


def roster_log_payload(signed: SignedRoster) -> dict[str, object]:
    """The transparency-log payload of a roster (``protocols.translog.ROSTER``): everything its signature covers."""
    payload: dict[str, object] = {"round_id": signed.round_id, "spec_hash": signed.spec_hash,
                                  "roster": dict(signed.roster), "signature": signed.signature}
    if signed.certificates:
        payload["certificates"] = {k: c.model_dump(mode="json") for k, c in signed.certificates.items()}
    return payload


def roster_from_log_payload(payload: dict[str, object]) -> SignedRoster:
    """The signed roster a log entry records (:func:`roster_log_payload`); raises ``ValueError`` when malformed."""
    try:
        return SignedRoster.model_validate({k: payload[k] for k in ("round_id", "spec_hash", "roster", "signature")}
                                           | {"certificates": payload.get("certificates") or {}})
    except KeyError as exc:
        raise ValueError(f"roster log entry without {exc.args[0]!r}") from None
