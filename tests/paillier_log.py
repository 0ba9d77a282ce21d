"""A transparency log for a ``paillier`` round, written as the aggregator writes it, and bent on demand.

:func:`round_log` signs the spec, the roster and one receipt per contribution (each receipt with
the member's own request signature over the canonical body, as ``node.client`` sends it), so a
custodian can be tested without a server. The arguments let a test play a dishonest aggregator:
extra receipts (Sybils, replays), a roster that differs, receipts for members off the roster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from example_round import example_spec

from keys.identity import Ed25519PrivateKey, fingerprint, public_key_b64, sign
from protocols import paillier
from protocols.auth import request_message
from protocols.canonical import canonical_json
from protocols.roster import sign_roster
from protocols.spec import RoundSpec, sign_spec, spec_hash
from protocols.translog import CONTRIBUTION_RECEIPT, GENESIS_HASH, ROSTER, SPEC_PUBLISHED, LogEntry, entry_hash

__all__ = ["RoundLog", "paillier_spec", "receipt_payload", "round_log", "stage_payload"]

AT = datetime(2030, 1, 1, tzinfo=UTC)


def paillier_spec(round_id: str, key_id: str, min_participants: int = 3) -> RoundSpec:
    return example_spec(
        round_id=round_id, protocol="paillier", min_participants=min_participants,
        paillier={"key_bits": 2048, "key_id": key_id}, deadline=AT + timedelta(days=30),
    )


def receipt_payload(round_id: str, member: Ed25519PrivateKey, body: dict[str, Any], ts: str = "1893456000.000001",
                    stage: str = "screen") -> dict[str, Any]:
    """The receipt the aggregator logs for a member's ``POST`` of ``body`` to the ``stage`` contribution path."""
    path = paillier.contribution_path(round_id, stage)
    digest = hashlib.sha256(canonical_json(body)).hexdigest()
    return {
        "round_id": round_id,
        "member": fingerprint(public_key_b64(member)),
        "contribution_hash": digest,
        "method": "POST",
        "path": path,
        "timestamp": ts,
        "node_signature": sign(member, request_message("POST", path, ts, digest)),
    }


def stage_payload(spec: RoundSpec, stage: str, decision: str = "proceed", n: int = 3) -> dict[str, Any]:
    """The ``stage`` entry ``aggregator.round_outcome.record_stage`` logs when a stage is decided."""
    return {"round_id": spec.round_id, "spec_hash": spec_hash(spec), "stage": stage, "n": n, "decision": decision,
            "rule": None if decision == "proceed" else "dominance", "detail": "test", "commitment": "0" * 64}


@dataclass
class RoundLog:
    """A signed log under construction; :meth:`append` chains and signs like ``aggregator.translog``."""

    key: Ed25519PrivateKey
    entries: list[LogEntry] = field(default_factory=list)

    def append(self, entry_type: str, payload: dict[str, Any]) -> LogEntry:
        seq = len(self.entries) + 1
        prev = self.entries[-1].entry_hash if self.entries else GENESIS_HASH
        at = (AT + timedelta(seconds=seq)).isoformat()
        h = entry_hash(prev, seq, entry_type, at, payload)
        entry = LogEntry(seq=seq, prev_hash=prev, type=entry_type, at=at, payload=payload, entry_hash=h,
                         signature=sign(self.key, bytes.fromhex(h)))
        self.entries.append(entry)
        return entry


def round_log(
    aggregator: Ed25519PrivateKey,
    spec: RoundSpec,
    roster: Sequence[Ed25519PrivateKey],
    contributions: Sequence[tuple[Ed25519PrivateKey, paillier.SignedContribution]],
) -> RoundLog:
    """spec_published, roster (fingerprint -> key), then one receipt per ``(member key, contribution)``."""
    log = RoundLog(aggregator)
    signed = sign_spec(spec, aggregator)
    digest = spec_hash(spec)
    log.append(SPEC_PUBLISHED, {"round_id": spec.round_id, "spec_hash": digest, "signed_spec": signed.model_dump_json()})
    members = {fingerprint(public_key_b64(m)): public_key_b64(m) for m in roster}
    sr = sign_roster(aggregator, spec.round_id, digest, members)
    log.append(ROSTER, {"round_id": spec.round_id, "spec_hash": digest, "roster": sr.roster, "signature": sr.signature})
    for k, (member, c) in enumerate(contributions):
        log.append(CONTRIBUTION_RECEIPT, receipt_payload(spec.round_id, member, c.to_dict(), f"1893456000.{k:06d}"))
    return log
