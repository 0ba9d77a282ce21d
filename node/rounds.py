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

from sqlalchemy import update
from sqlmodel import Session, col, select

from lca.model import Process
from node.cohort import check_roster, pinned_authority_key
from node.contribute import (
    ProcessMapping,
    contribution_digest,
    make_contribution,
    map_process,
)
from node.service import store_view
from node.settings import NodeSettings
from node.store import ConsentRow, InvitationRow, NodeStore, OutboxRow
from protocols.certificates import MISSING, CertificateRejected
from protocols.contribution import Contribution
from protocols.disclosure import (
    MIN_PARTICIPANTS_FLOOR,
    PROTECTING_FIRMS,
    STAGES,
    Stage,
    spec_problems,
    split_stage_round_id,
)
from protocols.errors import ContributionError, InvalidSignature
from protocols.roster import SignedRoster, verify_roster
from protocols.spec import RoundSpec, SignedSpec, spec_hash, verify_spec

__all__ = [
    "AGGREGATOR_KEY_SETTING",
    "ConsentError",
    "Preview",
    "approve",
    "approved_contribution",
    "cohort_of",
    "consent_of",
    "disclosure_parameters",
    "invitation",
    "list_invitations",
    "log_outbound",
    "node_floor",
    "outbox",
    "outbox_round",
    "preview",
    "receive_invitation",
    "roster_of",
    "spend_consent",
    "spend_stage",
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
    if roster is None and pinned_authority_key(store) is not None:
        # a round without a roster is one whose members this node cannot check (Sybils)
        raise CertificateRejected(MISSING, f"round {signed.spec.round_id}: the aggregator sent no signed roster, "
                                           "so its members cannot be checked against the membership authority")
    members = verify_roster(roster, key, spec.round_id, spec_hash(spec)) if roster is not None else {}
    doc: dict[str, Any] = {"signed_spec": signed.model_dump(mode="json"), "roster": members}
    if roster is not None:
        # every member certified by the authority this node pinned, or the invitation is refused (node.cohort)
        cohort = check_roster(store, roster, now=now)
        if cohort is not None:
            doc["cohort"] = cohort
        if roster.certificates:
            doc["signed_roster"] = roster.model_dump(mode="json")
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
    cohort: list[dict[str, Any]] | None = None
    """The round's members as their certificates name them (``node.cohort``); ``None`` without a roster, or
    when this node pinned no membership authority (then only the aggregator vouches for the members)."""

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
            "cohort": self.cohort,
            "disclosure": disclosure_parameters(self.spec),
        }


def node_floor() -> int:
    """The least ``min_participants`` this firm accepts (``PCF_NODE_MIN_PARTICIPANTS``, never below 3)."""
    return max(NodeSettings().min_participants, MIN_PARTICIPANTS_FLOOR)


def disclosure_parameters(spec: RoundSpec) -> dict[str, Any]:
    """What the round may reveal and when it withholds: the spec's disclosure rules, for the firm to read."""
    p = float(spec.p_rule)
    floor = node_floor()
    params: dict[str, Any] = {
        "protocol": spec.protocol,
        "min_participants": spec.min_participants,
        "max_participants": spec.max_participants,
        "node_min_participants": floor,
        "p_percent": p * 100,
        "dominance_rule": (
            f"every published total passes only if no firm's share exceeds {1 / (2 + p):.1%}, or at least "
            f"{PROTECTING_FIRMS} firms each hold {p / (1 + 2 * p):.1%} or more (a sufficient test of the "
            f"{p:.0%}-rule); each firm sends only these two bits of its share, summed securely"
        ),
        "statistics": list(spec.statistics),
        "stages": [
            "screen: participation, production, and whether each component and gas is non-zero",
            "dominance: two bits of this firm's share of production",
            (
                "values: production x each component and x each gas (components fewer than min_participants "
                "firms report, and gases few firms emit, are not sent on their own)"
            ),
            "cells: two bits of this firm's share of every published total",
        ],
        "refused": spec_problems(spec, floor=floor),
    }
    if spec.protocol == "secagg":
        params["secagg_threshold_fraction"] = spec.secagg.threshold_fraction
    return params


def cohort_of(store: NodeStore, round_id: str, *, now: datetime | None = None) -> list[dict[str, Any]] | None:
    """The certified cohort of an invitation, its certificates checked again now (a revocation loaded since
    the invitation counts); ``None`` when the node pinned no authority or the round has no roster.

    Raises
    ------
    protocols.certificates.CertificateRejected
        A member's certificate no longer holds (revoked, expired).
    """
    with Session(store.engine) as s:
        row = s.get(InvitationRow, round_id)
    if row is None or pinned_authority_key(store) is None:
        return None
    doc = json.loads(row.signed_spec)
    if doc.get("signed_roster") is None:
        if doc.get("roster"):
            # received before the authority was pinned: check it now, against the pinned key
            raise CertificateRejected(MISSING, f"round {round_id}: its roster carries no membership certificates")
        return None
    return check_roster(store, SignedRoster.model_validate(doc["signed_roster"]), now=now)


def preview(store: NodeStore, round_id: str, process_uuid: str, *, confirm_zeros: bool = False,
            process_version: str | None = None) -> Preview:
    """Exactly the vector this node would contribute, in plaintext, on this machine only."""
    spec, _roster = invitation(store, round_id)
    cohort = cohort_of(store, round_id)
    view = store_view(store)
    if process_version is not None:
        stored = store.get(process_uuid, process_version, kind="process")
        if not isinstance(stored, Process):
            raise ConsentError(f"process {process_uuid} has no version {process_version}")
        view.add(stored)
    mapping = map_process(spec, view, process_uuid)
    contribution = make_contribution(spec, mapping, confirm_zeros)
    return Preview(spec, mapping, contribution, contribution_digest(spec, contribution), cohort)


def approve(store: NodeStore, round_id: str, process_uuid: str, *, confirm_zeros: bool = False,
            approved_by: str = "", now: datetime | None = None) -> Preview:
    """Record the firm's consent to contribute exactly the previewed vector to ``round_id``.

    Refused (:class:`ConsentError`) for a round below this node's disclosure floor
    (:func:`node_floor`) or otherwise outside the disclosure rules (``protocols.disclosure.spec_problems``).
    """
    p = preview(store, round_id, process_uuid, confirm_zeros=confirm_zeros)
    _check_disclosure_rules(p.spec)
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


def _check_disclosure_rules(spec: RoundSpec) -> None:
    problems = spec_problems(spec, floor=node_floor())
    if problems:
        raise ConsentError(f"round {spec.round_id}: refused by this node's disclosure rules: " + "; ".join(problems))


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
    _check_disclosure_rules(invitation(store, round_id)[0])
    confirm = bool(json.loads(consent.preview).get("confirmed_zeros"))
    p = preview(store, round_id, consent.process_uuid, confirm_zeros=confirm,
                process_version=consent.process_version)
    if p.digest != consent.vector_sha256:
        raise ConsentError(f"round {round_id}: the vector differs from the one approved "
                           f"({p.digest[:16]} vs {consent.vector_sha256[:16]}); nothing is contributed")
    return p.spec, p.contribution


def consent_of(store: NodeStore, round_id: str) -> ConsentRow:
    """The firm's consent to ``round_id`` (with when and by which Flower run it was spent)."""
    with Session(store.engine) as s:
        consent = s.exec(select(ConsentRow).where(ConsentRow.round_id == round_id)).first()
    if consent is None:
        raise ConsentError(f"round {round_id!r} is not approved by this firm")
    return consent


def spend_consent(store: NodeStore, round_id: str, run_id: str, *, now: datetime | None = None) -> ConsentRow:
    """Spend the firm's consent to ``round_id`` on Flower run ``run_id``: a consent serves one run only.

    The spend is one conditional UPDATE (``spent_at IS NULL``), so two runs racing for the same
    consent cannot both win, and it is durable: a restarted SuperNode or ClientApp still finds it spent.

    Raises
    ------
    ConsentError
        The round is not approved, or its consent was already spent (by any run, this one included:
        a run that restarts a node's round would give the server a second set of masks).
    """
    when = now or datetime.now(UTC)
    with store.transaction() as s:
        spent = s.execute(
            update(ConsentRow)
            .where(col(ConsentRow.round_id) == round_id, col(ConsentRow.spent_at).is_(None))
            .values(spent_at=when, spent_by_run=run_id)
        )
        consent = s.exec(select(ConsentRow).where(ConsentRow.round_id == round_id)).first()
        if consent is None:
            raise ConsentError(f"round {round_id!r} is not approved by this firm; nothing is contributed "
                               f"(`pcf node approve {round_id} --process UUID`)")
        if spent.rowcount != 1:  # type: ignore[attr-defined]  # Result of an UPDATE is a CursorResult
            raise ConsentError(
                f"round {round_id!r}: this firm's consent was already used by Flower run {consent.spent_by_run} "
                f"at {consent.spent_at}; a consent serves one run, so Flower run {run_id} is refused and nothing "
                "is contributed (a second run of a round could combine its masks with the first's)")
        s.expunge(consent)
    return consent


def _stage_setting(round_id: str, stage: Stage) -> str:
    return f"stage:{round_id}:{stage}"


def spend_stage(store: NodeStore, round_id: str, stage: Stage, run_id: str, *, now: datetime | None = None) -> None:
    """Answer ``stage`` of ``round_id`` for run ``run_id``: the screen spends the consent, each later stage runs once.

    Every stage of a round is covered by the firm's one consent (the preview lists them); the
    screen stage spends it (:func:`spend_consent`), and each later stage is recorded the first time,
    after the screen and in order, so that no stage's bits or sums are ever sent twice.

    Raises
    ------
    ConsentError
        Not approved; the consent spent already (screen); a stage before the screen, out of order,
        or already answered by another run.
    """
    if stage == Stage.SCREEN:
        spend_consent(store, round_id, run_id, now=now)
    else:
        consent = consent_of(store, round_id)
        if consent.spent_at is None:
            raise ConsentError(f"round {round_id!r}: stage {stage} before the screen stage; nothing is contributed")
        previous = STAGES[STAGES.index(stage) - 1]
        if previous != Stage.SCREEN and store.get_setting(_stage_setting(round_id, previous)) is None:
            raise ConsentError(f"round {round_id!r}: stage {stage} before stage {previous}; nothing is contributed")
        done = store.get_setting(_stage_setting(round_id, stage))
        if done is not None:
            raise ConsentError(
                f"round {round_id!r}: stage {stage} was already answered (run {done}); a stage is answered once, "
                f"so run {run_id} is refused and nothing is contributed"
            )
    store.set_setting(_stage_setting(round_id, stage), run_id)


def outbox_round(secagg_round_id: str) -> tuple[str, str]:
    """The round an outbound secagg message belongs to, and the label prefix of its disclosure stage.

    ``"r1/values"`` gives ``("r1", "values:")``; an id without a known stage is kept whole, with no prefix.
    """
    try:
        base, stage = split_stage_round_id(secagg_round_id)
    except ValueError:
        return secagg_round_id, ""
    return base, f"{stage}:"


def log_outbound(store: NodeStore, round_id: str, recipient: str, stage: str, payload: bytes,
                 *, now: datetime | None = None, note: str = "") -> OutboxRow:
    """Append one outbound message to the outbox (size and SHA-256 of exactly what was sent; a refusal's reason)."""
    row = OutboxRow(round_id=round_id, recipient=recipient, stage=stage, size=len(payload),
                    sha256=hashlib.sha256(payload).hexdigest(), sent_at=now or datetime.now(UTC), note=note)
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
