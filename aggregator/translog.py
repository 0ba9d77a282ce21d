"""Persistence of the transparency log: append a signed entry inside a transaction, read rows back as entries.

The wire format (entries, pages, the bytes an entry hash covers, chain verification) is
:mod:`protocols.translog`; its entry types and models are re-exported here for the aggregator's
own modules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aggregator.store import Transaction, TranslogRow
from keys import identity
from protocols.canonical import canonical_json
from protocols.translog import (
    ABORT,
    AGGREGATE,
    CONTRIBUTION_RECEIPT,
    CURRENT_FORMAT,
    ENTRY_TYPES,
    GENESIS_HASH,
    PUBLICATION,
    ROSTER,
    SPEC_PUBLISHED,
    STAGE,
    SUPPRESSION,
    ChainBreak,
    LogEntry,
    LogPage,
    entry_hash,
    verify_chain,
)

__all__ = [
    "ABORT",
    "AGGREGATE",
    "CONTRIBUTION_RECEIPT",
    "ENTRY_TYPES",
    "GENESIS_HASH",
    "PUBLICATION",
    "ROSTER",
    "SPEC_PUBLISHED",
    "STAGE",
    "SUPPRESSION",
    "ChainBreak",
    "LogEntry",
    "LogPage",
    "append",
    "row_to_entry",
    "verify_chain",
]

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
        JSON object without floats; integers within ±(2**53 − 1), larger ones as decimal strings.
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
    h = entry_hash(prev, seq, entry_type, at, payload)
    row = TranslogRow(
        seq=seq,
        prev_hash=prev,
        entry_type=entry_type,
        payload=canonical_json(dict(payload)).decode(),
        entry_hash=h,
        signature=identity.sign(key, bytes.fromhex(h)),
        created_at=now,
        format=CURRENT_FORMAT,
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
        format=row.format,
    )
