"""The node's side of aggregation rounds: invitations, plaintext preview, consent, outbox.

Nothing is contributed to a round the firm has not approved, and what is contributed is exactly
the vector it approved: the consent stores the SHA-256 of the spec hash and the integers, and
the contribution is rebuilt from the same stored process version and checked against it before
anything leaves the node. Every message that leaves the node is appended to the outbox.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from lca.model import Process
from node.contribute import (
    ProcessMapping,
    contribution_digest,
    make_contribution,
    map_process,
)
from node.service import store_view
from node.store import ConsentRow, InvitationRow, NodeStore, OutboxRow
from protocols.contribution import Contribution
from protocols.errors import ContributionError, InvalidSignature
from protocols.roster import SignedRoster, verify_roster
from protocols.spec import RoundSpec, SignedSpec, spec_hash, verify_spec

__all__ = [
    "AGGREGATOR_KEY_SETTING",
    "ConsentError",
    "Preview",
    "approve",
    "approved_contribution",
    "invitation",
    "list_invitations",
    "log_outbound",
    "outbox",
    "preview",
    "receive_invitation",
    "roster_of",
]

AGGREGATOR_KEY_SETTING = "aggregator_public_key"
AGGREGATOR_URL_SETTING = "aggregator_url"


class ConsentError(ContributionError):
    """A contribution was asked for without (or against) the firm's approval."""


def receive_invitation(store: NodeStore, signed: SignedSpec, roster: SignedRoster | None = None,
                       *, now: datetime | None = None) -> RoundSpec:
    """Verify a round invitation (spec, and roster for secagg) against the enrolled aggregator key; keep it.

    The roster maps Flower node ids to members' Ed25519 identity keys; the node later trusts
    only these keys when it checks the other nodes' signed key advertisements.
    """
    key = store.get_setting(AGGREGATOR_KEY_SETTING)
    if key is None:
        raise InvalidSignature("this node has not enrolled with an aggregator (pcf node enroll URL)")
    spec = verify_spec(signed, key)
    members = verify_roster(roster, key, spec.round_id, spec_hash(spec)) if roster is not None else {}
    doc = {"signed_spec": signed.model_dump(mode="json"), "roster": members}
    with store.transaction() as s:
        row = s.get(InvitationRow, spec.round_id)
        blob = json.dumps(doc, sort_keys=True)
        if row is None:
            s.add(InvitationRow(round_id=spec.round_id, signed_spec=blob, spec_hash=spec_hash(spec)))
        elif row.spec_hash != spec_hash(spec):
            raise InvalidSignature(
                f"round {spec.round_id}: the aggregator sent a different spec than before "
                f"({row.spec_hash[:16]} vs {spec_hash(spec)[:16]}); a round's spec never changes")
        else:
            row.signed_spec = blob
            s.add(row)
    return spec


def invitation(store: NodeStore, round_id: str) -> tuple[RoundSpec, dict[str, str]]:
    """The verified spec and roster of a round this node was invited to."""
    with Session(store.engine) as s:
        row = s.get(InvitationRow, round_id)
    if row is None:
        raise ConsentError(f"no invitation to round {round_id!r}; run `pcf node rounds` to fetch invitations")
    key = store.get_setting(AGGREGATOR_KEY_SETTING)
    if key is None:
        raise InvalidSignature("no enrolled aggregator key")
    doc = json.loads(row.signed_spec)
    spec = verify_spec(SignedSpec.model_validate(doc["signed_spec"]), key)
    return spec, dict(doc.get("roster") or {})


def roster_of(store: NodeStore, round_id: str) -> dict[str, str]:
    return invitation(store, round_id)[1]


def list_invitations(store: NodeStore) -> list[dict[str, Any]]:
    with Session(store.engine) as s:
        rows = list(s.exec(select(InvitationRow).order_by(col(InvitationRow.received_at))).all())
        consents = {c.round_id: c for c in s.exec(select(ConsentRow)).all()}
    out = []
    for row in rows:
        spec = SignedSpec.model_validate(json.loads(row.signed_spec)["signed_spec"]).spec
        consent = consents.get(row.round_id)
        out.append({
            "round_id": row.round_id,
            "product": {"en": spec.product.name_en, "zh": spec.product.name_zh},
            "classification": spec.product.classification_code,
            "region": spec.region,
            "period": f"{spec.reference_period.start}/{spec.reference_period.end}",
            "protocol": spec.protocol,
            "deadline": spec.deadline.isoformat(),
            "spec_hash": row.spec_hash,
            "approved": consent is not None,
            "process": consent.process_uuid if consent else None,
        })
    return out


@dataclass
class Preview:
    spec: RoundSpec
    mapping: ProcessMapping
    contribution: Contribution
    digest: str

    def rows(self) -> list[dict[str, Any]]:
        return [{"slot": r.slot, "description": r.description, "value": r.value, "unit": r.unit,
                 "integer": r.integer} for r in self.contribution.preview()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "round_id": self.spec.round_id,
            "spec_hash": spec_hash(self.spec),
            "process": self.mapping.process_uuid,
            "process_version": self.mapping.process_version,
            "weight": self.mapping.weight,
            "weight_unit": self.spec.weight.unit,
            "values": {c.name_en: self.mapping.values.get(c.flow) for c in self.spec.components},
            "confirmed_zeros": [f"{c.name_en} / {c.name_zh}" for c in self.mapping.missing],
            "footprint_total": self.mapping.footprint_total,
            "footprint_by_gas": self.mapping.footprint_by_gas,
            "footprint_unit": f"kg CO2e/{self.spec.reference_unit}",
            "vector_sha256": self.digest,
            "slots": self.rows(),
            "notes": self.mapping.notes,
        }


def preview(store: NodeStore, round_id: str, process_uuid: str, *, confirm_zeros: bool = False,
            process_version: str | None = None) -> Preview:
    """Exactly the vector this node would contribute, in plaintext, on this machine only."""
    spec, _roster = invitation(store, round_id)
    view = store_view(store)
    if process_version is not None:
        stored = store.get(process_uuid, process_version, kind="process")
        if not isinstance(stored, Process):
            raise ConsentError(f"process {process_uuid} has no version {process_version}")
        view.add(stored)
    mapping = map_process(spec, view, process_uuid)
    contribution = make_contribution(spec, mapping, confirm_zeros)
    return Preview(spec, mapping, contribution, contribution_digest(spec, contribution))


def approve(store: NodeStore, round_id: str, process_uuid: str, *, confirm_zeros: bool = False,
            approved_by: str = "", now: datetime | None = None) -> Preview:
    """Record the firm's consent to contribute exactly the previewed vector to ``round_id``."""
    p = preview(store, round_id, process_uuid, confirm_zeros=confirm_zeros)
    with store.transaction() as s:
        existing = s.exec(select(ConsentRow).where(ConsentRow.round_id == round_id)).first()
        if existing is not None:
            if existing.vector_sha256 == p.digest:
                return p
            raise ConsentError(
                f"round {round_id} is already approved for process {existing.process_uuid} version "
                f"{existing.process_version}; a consent is never changed")
        s.add(ConsentRow(round_id=round_id, process_uuid=p.mapping.process_uuid,
                         process_version=p.mapping.process_version, vector_sha256=p.digest,
                         preview=json.dumps(p.to_dict(), ensure_ascii=False, default=str),
                         approved_by=approved_by, approved_at=now or datetime.now(UTC)))
    return p


def approved_contribution(store: NodeStore, round_id: str) -> tuple[RoundSpec, Contribution]:
    """The contribution the firm approved for ``round_id``, rebuilt and checked against the consent.

    Raises
    ------
    ConsentError
        When the round was not approved, or the data no longer give the approved vector.
    """
    with Session(store.engine) as s:
        consent = s.exec(select(ConsentRow).where(ConsentRow.round_id == round_id)).first()
    if consent is None:
        raise ConsentError(f"round {round_id!r} is not approved by this firm; nothing is contributed "
                           f"(`pcf node approve {round_id} --process UUID`)")
    confirm = bool(json.loads(consent.preview).get("confirmed_zeros"))
    p = preview(store, round_id, consent.process_uuid, confirm_zeros=confirm,
                process_version=consent.process_version)
    if p.digest != consent.vector_sha256:
        raise ConsentError(f"round {round_id}: the vector differs from the one approved "
                           f"({p.digest[:16]} vs {consent.vector_sha256[:16]}); nothing is contributed")
    return p.spec, p.contribution


def log_outbound(store: NodeStore, round_id: str, recipient: str, stage: str, payload: bytes,
                 *, now: datetime | None = None) -> OutboxRow:
    """Append one outbound message to the outbox (size and SHA-256 of exactly what was sent)."""
    row = OutboxRow(round_id=round_id, recipient=recipient, stage=stage, size=len(payload),
                    sha256=hashlib.sha256(payload).hexdigest(), sent_at=now or datetime.now(UTC))
    with store.transaction() as s:
        s.add(row)
        s.flush()
        s.refresh(row)
    return row


def outbox(store: NodeStore, round_id: str | None = None) -> list[OutboxRow]:
    with Session(store.engine) as s:
        stmt = select(OutboxRow)
        if round_id:
            stmt = stmt.where(OutboxRow.round_id == round_id)
        return list(s.exec(stmt.order_by(col(OutboxRow.id))).all())
