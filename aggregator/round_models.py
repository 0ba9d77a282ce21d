"""The wire models of round operations: a round as the API shows it, receipts, the custodians' request."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from aggregator.round_context import RoundState, row_params, row_roster, row_spec
from aggregator.store import RoundRow, Transaction
from protocols.disclosure import SignedStageContext
from protocols.roster import SignedRoster
from protocols.spec import SignedSpec

__all__ = ["ContributionReceipt", "DecryptionRequest", "PartialReceipt", "RoundPublic", "StageStatus", "round_public"]


class RoundPublic(BaseModel):
    """A round as administrators and members see it (members never see drafts)."""

    round_id: str
    protocol: Literal["secagg", "paillier"]
    state: RoundState
    spec_hash: str
    signed_spec: SignedSpec
    paillier_public_key: dict[str, Any] | None = None
    """``SplitPublicKey.to_dict()`` for ``paillier`` rounds: what members encrypt to."""
    roster: SignedRoster | None = None
    """``secagg`` rounds over Flower, once open: the signed roster (Flower node id -> identity key) members
    pass to ``node.rounds.receive_invitation`` with the signed spec."""
    deadline: datetime
    decision: str | None = None
    contributions: int = 0
    partial_decryptions: int = 0
    created_at: datetime
    updated_at: datetime


class ContributionReceipt(BaseModel):
    """The aggregator's countersigned receipt of one contribution (its transparency-log entry)."""

    round_id: str
    member: str
    contribution_hash: str
    """SHA-256 of the request body exactly as received."""
    seq: int
    entry_hash: str
    aggregator_signature: str
    received_at: datetime


class DecryptionRequest(BaseModel):
    """What each custodian needs to decrypt a ``paillier`` round (``custodian.decrypt.custodian_decrypt`` input)."""

    round_id: str
    spec_hash: str
    key_id: str
    min_participants: int
    stage: str = "screen"
    """The disclosure stage the round waits to have decrypted (the custodian reads it from the log itself)."""
    contributions: list[dict[str, Any]]
    """``SignedContribution.to_dict()`` of every logged contribution of ``stage``."""
    previous_partials: list[dict[str, Any]] = []
    """For the ``values`` stage: every custodian's partial of the dominance stage, whose counts each custodian
    combines and checks itself (``protocols.paillier.check_dominance``)."""


class PartialReceipt(BaseModel):
    """Acknowledgement of a custodian's partial decryption."""

    round_id: str
    custodian_index: int
    received: int
    expected: int
    state: RoundState
    stage: str = "screen"
    """The stage the partial decrypts; ``received`` and ``expected`` count that stage's partials."""


class StageStatus(BaseModel):
    """What a ``paillier`` round waits for from its members (``GET /api/v1/rounds/{id}/stage``)."""

    round_id: str
    state: RoundState
    stage: str | None
    """The disclosure stage being collected or decrypted; ``None`` once the round ended."""
    accepting: bool
    """Members of the cohort may post their ``stage`` contribution now."""
    slots: int | None = None
    """Number of integers in a ``stage`` contribution (``protocols.disclosure.stage_layout``)."""
    context: SignedStageContext | None = None
    """The aggregator's signed stage context (every stage after ``screen``), for cohort members only."""
    contributed: int = 0
    """Contributions to ``stage`` received so far."""
    cohort: int = 0
    """Size of the screen's cohort (0 while the screen is collected)."""
    deadline: datetime | None = None
    """When the stage's collection ends: the spec's deadline for ``screen``, the stage window after."""
    decision: str | None = None


def round_public(tx: Transaction, row: RoundRow) -> RoundPublic:
    """The round as the API shows it, with its contribution and partial-decryption counts."""
    signed = row_spec(row)
    return RoundPublic(
        round_id=row.id,
        protocol=row.protocol,  # type: ignore[arg-type]
        state=row.state,  # type: ignore[arg-type]
        spec_hash=row.spec_hash,
        signed_spec=signed,
        paillier_public_key=row_params(row).get("paillier_public_key"),
        roster=row_roster(row),
        deadline=signed.spec.deadline,
        decision=row.decision,
        contributions=tx.count_contributions(row.id, "screen"),  # members, not stage posts
        partial_decryptions=tx.count_partials(row.id),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
