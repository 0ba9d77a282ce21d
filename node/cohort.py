"""Who else is in a round: the node checks every roster member's certificate against the authority key it pinned.

The firm pins the membership authority's public key at enrolment (``pcf node enroll
--authority-key``) and may load the authority's signed revocation list (``pcf node crl FILE``).
From then on an invitation whose roster holds a member without a current certificate of that
authority for exactly its roster key (a Sybil the aggregator invented, a firm whose certificate was
revoked or expired, one firm under two keys) is refused with the reason, and nothing is sent for
the round. The certified names and codes are kept with the invitation, so the preview shows the
firm the cohort it joins; the check is repeated at preview and approval, so a revocation loaded
later still stops the contribution.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from keys import identity
from node.store import NodeStore
from protocols.certificates import (
    MALFORMED,
    CertificateRejected,
    RevocationList,
    verify_revocation_list,
)
from protocols.roster import SignedRoster, verify_roster_certificates

__all__ = [
    "AUTHORITY_CRL_SETTING",
    "AUTHORITY_KEY_SETTING",
    "OWN_CERTIFICATE_SETTING",
    "check_roster",
    "load_revocation_list",
    "pin_authority_key",
    "pinned_authority_key",
    "revocation_list",
]

AUTHORITY_KEY_SETTING = "authority_public_key"
"""The membership authority's Ed25519 public key this node pinned (base64url)."""
AUTHORITY_CRL_SETTING = "authority_revocation_list"
"""The newest revocation list of that authority this node loaded (JSON)."""
OWN_CERTIFICATE_SETTING = "membership_certificate"
"""This firm's own certificate (JSON), as sent at enrolment."""


def pin_authority_key(store: NodeStore, key: str) -> str:
    """Pin the membership authority's key (as it published it); returns it.

    Raises
    ------
    CertificateRejected
        ``malformed``: not a base64url Ed25519 public key.
    """
    try:
        identity.load_public_key_b64(key.strip())
    except identity.IdentityError as exc:
        raise CertificateRejected(MALFORMED, f"--authority-key: {exc}") from None
    store.set_setting(AUTHORITY_KEY_SETTING, key.strip())
    return key.strip()


def pinned_authority_key(store: NodeStore) -> str | None:
    return store.get_setting(AUTHORITY_KEY_SETTING)


def revocation_list(store: NodeStore) -> RevocationList | None:
    raw = store.get_setting(AUTHORITY_CRL_SETTING)
    return None if raw is None else RevocationList.model_validate(json.loads(raw))


def load_revocation_list(store: NodeStore, doc: dict[str, Any]) -> RevocationList:
    """Verify a revocation list against the pinned authority key and keep it unless an older one than held.

    Raises
    ------
    CertificateRejected
        No authority key pinned (``malformed``), a bad signature or another authority, or a list
        numbered below the one this node holds (a rollback would un-revoke).
    """
    key = pinned_authority_key(store)
    if key is None:
        raise CertificateRejected(MALFORMED, "no membership authority key pinned (pcf node enroll --authority-key)")
    crl = verify_revocation_list(doc, key)
    held = revocation_list(store)
    if held is not None and crl.number < held.number:
        raise CertificateRejected(MALFORMED, f"revocation list {crl.number} is older than the one this node holds "
                                             f"({held.number}); kept {held.number}")
    store.set_setting(AUTHORITY_CRL_SETTING, crl.model_dump_json())
    return crl


def check_roster(store: NodeStore, roster: SignedRoster, *, now: datetime | None = None) -> list[dict[str, Any]] | None:
    """The round's cohort (node id, legal names, USCC, serial per member), every certificate checked.

    Returns ``None`` when this node pinned no authority key: the cohort is then only what the
    aggregator says (the preview says so).

    Raises
    ------
    CertificateRejected
        A member's certificate is missing, not by the pinned authority, expired, revoked, for
        another key, or two members share a USCC; the message names the member.
    """
    key = pinned_authority_key(store)
    if key is None:
        return None
    certs = verify_roster_certificates(roster, key, revocation_list(store), now=now or datetime.now(UTC))
    own = store.get_setting(OWN_CERTIFICATE_SETTING)
    own_serial = json.loads(own).get("serial") if own else None
    return [{"node_id": node_id, **cert.summary(), "you": cert.serial == own_serial}
            for node_id, cert in sorted(certs.items(), key=lambda kv: kv[0])]
