"""Append-only, hash-chained and signed transparency log of everything a round decides.

Each entry covers the canonical JSON *body* ``{"seq", "type", "at", "payload"}``::

    entry_hash = sha256(bytes.fromhex(prev_hash) || body)        prev_hash of seq 1 = GENESIS_HASH
    signature  = Ed25519_aggregator(bytes.fromhex(entry_hash))

so no entry can be edited, dropped, reordered or re-typed without breaking the chain or a signature.
Payloads carry no floats (integers and strings only), so the canonical form is the same in any
language: keys sorted, no whitespace, UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from aggregator.members import request_message
from aggregator.store import Transaction, TranslogRow
from keys import identity
from protocols.errors import InvalidSignature

__all__ = [
    "ABORT",
    "AGGREGATE",
    "CONTRIBUTION_RECEIPT",
    "ENTRY_TYPES",
    "GENESIS_HASH",
    "PUBLICATION",
    "ROSTER",
    "SPEC_PUBLISHED",
    "SUPPRESSION",
    "ChainBreak",
    "LogEntry",
    "LogPage",
    "append",
    "canonical_json",
    "compute_entry_hash",
    "entry_body",
    "row_to_entry",
    "verify_chain",
]

GENESIS_HASH: Final = "0" * 64

SPEC_PUBLISHED: Final = "spec_published"
"""payload: ``round_id``, ``spec_hash``, ``signed_spec`` (the JSON text members received)."""
CONTRIBUTION_RECEIPT: Final = "contribution_receipt"
"""payload: ``round_id``, ``member`` (fingerprint), ``contribution_hash`` (sha256 of the body sent),
``method``, ``path``, ``timestamp``, ``node_signature`` (the member's request signature over them)."""
AGGREGATE: Final = "aggregate"
"""payload: ``round_id``, ``spec_hash``, ``n``, ``summed`` (decimal strings, ``null`` where withheld), ``withheld``
(slot names), ``histogram_commitment``, ``contributions`` (hashes, sorted), and ``other_gases`` (``gases``, ``sum``)
when the gas-level disclosure rule merged gases (``aggregator.rounds.public_log_other_gases``)."""
SUPPRESSION: Final = "suppression"
"""payload: ``round_id``, ``rule``, ``detail``."""
PUBLICATION: Final = "publication"
"""payload: ``round_id``, ``factor_id``, ``version``, ``document_hash``."""
ABORT: Final = "abort"
"""payload: ``round_id``, ``reason``."""
ROSTER: Final = "roster"
"""payload: ``round_id``, ``spec_hash``, ``roster`` (Flower node id -> member identity key), ``signature``
(the aggregator's roster signature members verify, ``protocols.roster``)."""
ENTRY_TYPES: Final = (SPEC_PUBLISHED, ROSTER, CONTRIBUTION_RECEIPT, AGGREGATE, SUPPRESSION, PUBLICATION, ABORT)


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


def _no_floats(obj: Any, where: str = "payload") -> None:
    if isinstance(obj, float):
        raise TypeError(f"{where} is a float ({obj!r}); log payloads carry integers and decimal strings only")
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _no_floats(v, f"{where}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _no_floats(v, f"{where}[{i}]")


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, no floats.

    Raises
    ------
    TypeError
        If the object contains a float.
    """
    _no_floats(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_body(seq: int, entry_type: str, at: str, payload: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers."""
    return canonical_json({"seq": seq, "type": entry_type, "at": at, "payload": dict(payload)})


def compute_entry_hash(prev_hash: str, body: bytes) -> str:
    """``sha256(prev_hash bytes || body)`` as lowercase hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


def append(
    tx: Transaction, key: Any, entry_type: str, payload: Mapping[str, Any], now: datetime
) -> LogEntry:
    """Append one signed entry inside the caller's transaction.

    Parameters
    ----------
    tx
        The open transaction; the entry is committed (or rolled back) with the rest of its work.
    key
        The aggregator's Ed25519 private key.
    entry_type
        One of :data:`ENTRY_TYPES`.
    payload
        JSON object without floats.
    now
        Timezone-aware append time.

    Returns
    -------
    LogEntry
    """
    if entry_type not in ENTRY_TYPES:
        raise ValueError(f"log entry type {entry_type!r}: accepted are {ENTRY_TYPES}")
    tx.lock_log()
    last = tx.last_log_entry()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS_HASH if last is None else last.entry_hash
    at = now.isoformat()
    body = entry_body(seq, entry_type, at, payload)
    h = compute_entry_hash(prev, body)
    row = TranslogRow(
        seq=seq,
        prev_hash=prev,
        entry_type=entry_type,
        payload=canonical_json(dict(payload)).decode(),
        entry_hash=h,
        signature=identity.sign(key, bytes.fromhex(h)),
        created_at=now,
    )
    tx.add_log_entry(row)
    return row_to_entry(row)


def row_to_entry(row: TranslogRow) -> LogEntry:
    """The wire form of a stored entry."""
    return LogEntry(
        seq=row.seq,
        prev_hash=row.prev_hash,
        type=row.entry_type,
        at=row.created_at.isoformat(),
        payload=json.loads(row.payload),
        entry_hash=row.entry_hash,
        signature=row.signature,
    )


def _check_receipt(entry: LogEntry, member_keys: Mapping[str, str]) -> str | None:
    p = entry.payload
    try:
        member_key = member_keys.get(str(p["member"]))
        if member_key is None:
            return f"receipt names member {p['member']!r}, which is not among the published member keys"
        message = request_message(str(p["method"]), str(p["path"]), str(p["timestamp"]), str(p["contribution_hash"]))
        identity.verify(member_key, message, str(p["node_signature"]))
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
        The first entry that breaks, or ``None`` when the whole log checks out.
    """
    prev = GENESIS_HASH
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            return ChainBreak(seq=entry.seq, reason=f"sequence gap: expected seq {expected_seq}, found {entry.seq}")
        if entry.prev_hash != prev:
            return ChainBreak(seq=entry.seq, reason="prev_hash does not match the previous entry's hash")
        try:
            recomputed = compute_entry_hash(prev, entry_body(entry.seq, entry.type, entry.at, entry.payload))
        except (TypeError, ValueError) as exc:
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
