"""Wire format of the transparency log: entries, pages, the bytes each entry hash covers, chain verification.

Every entry since release 0.2 (``format`` 1) covers the canonical encoding of all its fields but
the hash and the signature::

    entry_hash = sha256(canonical.encode(Kind.LOG_ENTRY, {"prev_hash", "seq", "type", "at", "payload"}))
    signature  = Ed25519_aggregator(bytes.fromhex(entry_hash))             prev_hash of seq 1 = GENESIS_HASH

so no entry can be edited, dropped, reordered or re-typed without breaking the chain or a signature.
Payloads carry no floats (integers and decimal strings only), so a payload is exact in any language.

Entries written by release 0.1 (``format`` 0) hash ``sha256(prev_hash bytes || body)`` where body is
the sorted-key compact JSON of ``{"seq", "type", "at", "payload"}`` without a tag, and their contribution
receipts carry node signatures over the 0.1 request line. :func:`verify_chain` still checks them
(:func:`legacy_v0_entry_body`, :func:`legacy_v0_request_message`); nothing writes them any more.

This module does no I/O: the aggregator persists entries (``aggregator.translog``), and anyone
holding the entries and the keys checks them (``pcf verify``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel

from keys import identity
from protocols.auth import request_message
from protocols.canonical import CanonicalError, Kind, encode
from protocols.errors import InvalidSignature

__all__ = [
    "ABORT",
    "AGGREGATE",
    "CONTRIBUTION_RECEIPT",
    "CURRENT_FORMAT",
    "ENTRY_TYPES",
    "FORMATS",
    "GENESIS_HASH",
    "LEGACY_FORMAT",
    "PUBLICATION",
    "ROSTER",
    "SPEC_PUBLISHED",
    "STAGE",
    "SUPPRESSION",
    "ChainBreak",
    "LogEntry",
    "LogPage",
    "check_payload",
    "entry_body",
    "entry_hash",
    "legacy_v0_entry_body",
    "legacy_v0_entry_hash",
    "legacy_v0_request_message",
    "verify_chain",
]

GENESIS_HASH: Final = "0" * 64

LEGACY_FORMAT: Final = 0
"""Entries of release 0.1: untagged sorted JSON, hash over ``prev_hash || body``; verified, never written."""
CURRENT_FORMAT: Final = 1
"""Entries hashed over ``canonical.encode(Kind.LOG_ENTRY, ...)``; the only format written."""
FORMATS: Final = (LEGACY_FORMAT, CURRENT_FORMAT)

SPEC_PUBLISHED: Final = "spec_published"
"""payload: ``round_id``, ``spec_hash``, ``signed_spec`` (the JSON text members received)."""
CONTRIBUTION_RECEIPT: Final = "contribution_receipt"
"""payload: ``round_id``, ``member`` (fingerprint), ``contribution_hash`` (sha256 of the body sent),
``method``, ``path``, ``timestamp``, ``node_signature`` (the member's request signature over them)."""
AGGREGATE: Final = "aggregate"
"""payload: ``round_id``, ``spec_hash``, ``n``, ``summed`` (decimal strings, ``null`` where withheld), ``withheld``
(slot names), ``dominated`` (cells the p %-rule withheld), ``histogram_commitment``, ``contributions`` (hashes,
sorted), and ``other_gases`` (``gases``, ``sum``)
when the gas-level disclosure rule merged gases (``aggregator.rounds.public_log_other_gases``)."""
SUPPRESSION: Final = "suppression"
STAGE: Final = "stage"
"""One disclosure stage decided (``protocols.disclosure``). payload: ``round_id``, ``spec_hash``, ``stage``,
``n`` (the screen's cohort), ``decision`` (``proceed`` or ``stop``), ``rule``, ``detail``, ``context`` (digest of
the signed stage context the cohort computed the stage from; ``null`` for the screen) and, except for the values
stage, ``commitment`` (salted SHA-256 of the stage's sums; ``aggregator.round_outcome.stage_commitment``)."""
"""payload: ``round_id``, ``rule``, ``detail``."""
PUBLICATION: Final = "publication"
"""payload: ``round_id``, ``factor_id``, ``version``, ``document_hash`` (``protocols.provenance.document_hash``)."""
ABORT: Final = "abort"
"""payload: ``round_id``, ``reason``."""
ROSTER: Final = "roster"
"""payload: ``round_id``, ``spec_hash``, ``roster`` (Flower node id -> member identity key), ``signature``
(the aggregator's roster signature members verify, ``protocols.roster``) and, when the members enrolled with
membership certificates, ``certificates`` (member -> certificate; ``protocols.roster.roster_log_payload``)."""
ENTRY_TYPES: Final = (SPEC_PUBLISHED, ROSTER, CONTRIBUTION_RECEIPT, STAGE, AGGREGATE, SUPPRESSION, PUBLICATION, ABORT)


class LogEntry(BaseModel):
    """One transparency-log entry as served at ``GET /api/v1/log``."""

    seq: int
    prev_hash: str
    type: str
    at: str
    """ISO-8601 UTC time the entry was appended."""
    payload: dict[str, Any]
    entry_hash: str
    signature: str
    """Aggregator's Ed25519 signature (base64) over the 32 bytes of ``entry_hash``."""
    format: int = CURRENT_FORMAT
    """How ``entry_hash`` was computed: :data:`CURRENT_FORMAT`, or :data:`LEGACY_FORMAT` for 0.1 entries."""


class LogPage(BaseModel):
    """A slice of the log and the key that signs it."""

    aggregator_public_key: str
    entries: list[LogEntry]
    next_seq: int | None
    """``from_seq`` of the next page, or ``None`` at the end of the log."""


class ChainBreak(BaseModel):
    """The first entry where the log does not check out."""

    seq: int
    reason: str


def check_payload(obj: Any, where: str = "payload") -> None:
    """Refuse floats anywhere in a payload: log payloads carry integers and decimal strings only.

    Raises
    ------
    TypeError
        Naming the path of the first float found.
    """
    if isinstance(obj, float):
        raise TypeError(f"{where} is a float ({obj!r}); log payloads carry integers and decimal strings only")
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            check_payload(v, f"{where}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            check_payload(v, f"{where}[{i}]")


def entry_body(prev_hash: str, seq: int, entry_type: str, at: str, payload: Mapping[str, Any]) -> bytes:
    """The bytes a format-1 entry hash covers.

    Raises
    ------
    TypeError
        The payload holds a float.
    protocols.canonical.CanonicalError
        The payload holds a value RFC 8785 cannot encode exactly (e.g. an integer over 2**53).
    """
    check_payload(payload)
    document = {"prev_hash": prev_hash, "seq": seq, "type": entry_type, "at": at, "payload": dict(payload)}
    return encode(Kind.LOG_ENTRY, document)


def entry_hash(prev_hash: str, seq: int, entry_type: str, at: str, payload: Mapping[str, Any]) -> str:
    """Lowercase hex SHA-256 of :func:`entry_body`: the hash of a format-1 entry."""
    return hashlib.sha256(entry_body(prev_hash, seq, entry_type, at, payload)).hexdigest()


# ------------------------------------------------------------------------- release 0.1, verify only


def legacy_v0_entry_body(seq: int, entry_type: str, at: str, payload: Mapping[str, Any]) -> bytes:
    """The body a release-0.1 (format 0) entry hash covers. Only to verify old entries, never to write.

    Raises
    ------
    TypeError
        The payload holds a float (0.1 refused them, so such an entry cannot be genuine).
    """
    check_payload(payload)
    document = {"seq": seq, "type": entry_type, "at": at, "payload": dict(payload)}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def legacy_v0_entry_hash(prev_hash: str, body: bytes) -> str:
    """``sha256(prev_hash bytes || body)``: the hash of a release-0.1 entry. Only to verify."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


def legacy_v0_request_message(method: str, path: str, timestamp: str, body_sha256: str) -> bytes:
    """The request line 0.1 nodes signed (``METHOD\\nPATH\\nTIMESTAMP\\nBODY_SHA256``). Only to verify receipts."""
    return f"{method.upper()}\n{path}\n{timestamp}\n{body_sha256}".encode()


# ------------------------------------------------------------------------------------ verification


def _recompute(entry: LogEntry) -> str:
    if entry.format == LEGACY_FORMAT:
        return legacy_v0_entry_hash(entry.prev_hash, legacy_v0_entry_body(entry.seq, entry.type, entry.at, entry.payload))
    return entry_hash(entry.prev_hash, entry.seq, entry.type, entry.at, entry.payload)


def _check_receipt(entry: LogEntry, member_keys: Mapping[str, str]) -> str | None:
    p = entry.payload
    message = legacy_v0_request_message if entry.format == LEGACY_FORMAT else request_message
    try:
        member_key = member_keys.get(str(p["member"]))
        if member_key is None:
            return f"receipt names member {p['member']!r}, which is not among the published member keys"
        signed = message(str(p["method"]), str(p["path"]), str(p["timestamp"]), str(p["contribution_hash"]))
        identity.verify(member_key, signed, str(p["node_signature"]))
    except KeyError as exc:
        return f"receipt payload lacks field {exc.args[0]!r}"
    except (InvalidSignature, ValueError):
        return f"node signature of member {p.get('member')!r} does not verify over the contribution hash"
    return None


def verify_chain(
    entries: Sequence[LogEntry], aggregator_public_key: str, member_keys: Mapping[str, str]
) -> ChainBreak | None:
    """Check sequence numbers, hash links, entry hashes and every signature of a whole log.

    Parameters
    ----------
    entries
        The log from seq 1, in order.
    aggregator_public_key
        Base64 Ed25519 public key of the aggregator.
    member_keys
        Fingerprint -> base64 identity public key of every member (revoked ones included).

    Returns
    -------
    ChainBreak | None
        The first entry that breaks, or ``None`` when the whole log checks out. A legacy entry
        after a current one breaks the chain: formats only ever move forward.
    """
    prev = GENESIS_HASH
    newest_format = LEGACY_FORMAT
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            return ChainBreak(seq=entry.seq, reason=f"sequence gap: expected seq {expected_seq}, found {entry.seq}")
        if entry.prev_hash != prev:
            return ChainBreak(seq=entry.seq, reason="prev_hash does not match the previous entry's hash")
        if entry.format not in FORMATS:
            return ChainBreak(seq=entry.seq, reason=f"unknown entry format {entry.format}; accepted: {FORMATS}")
        if entry.format < newest_format:
            return ChainBreak(seq=entry.seq, reason=f"a format-{entry.format} entry after a format-{newest_format} one")
        newest_format = entry.format
        try:
            recomputed = _recompute(entry)
        except (TypeError, ValueError, CanonicalError) as exc:
            return ChainBreak(seq=entry.seq, reason=f"entry cannot be canonicalised: {exc}")
        if recomputed != entry.entry_hash:
            return ChainBreak(seq=entry.seq, reason="entry_hash does not match the entry's content")
        try:
            identity.verify(aggregator_public_key, bytes.fromhex(entry.entry_hash), entry.signature)
        except (InvalidSignature, ValueError):
            return ChainBreak(seq=entry.seq, reason="aggregator signature does not verify")
        if entry.type == CONTRIBUTION_RECEIPT:
            problem = _check_receipt(entry, member_keys)
            if problem:
                return ChainBreak(seq=entry.seq, reason=problem)
        prev = entry.entry_hash
    return None
