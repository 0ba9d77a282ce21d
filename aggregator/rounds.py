"""Round lifecycle: create, open, collect, aggregate, then publish or suppress, every step persisted.

States and transitions::

    draft ─open─▶ open ─run (secagg)─▶ collecting ──▶ aggregating ─┬─▶ published
                   │  └──run (paillier)──────────────▶ aggregating  └─▶ suppressed
                   └─ every state before the end ──cancel──▶ aborted

``open``
    The signed spec is published; members find the invitation (``GET /api/v1/rounds?state=open``)
    (for ``secagg`` over Flower with the signed roster of node ids and identity keys fixed at
    opening) and, for ``paillier``, post their encrypted contributions until the deadline. The round stays
    ``open`` while contributions arrive, so late members still find the invitation.
``collecting``
    ``secagg`` only: the secure-aggregation runner (Flower SuperLink) gathers the masked inputs.
``aggregating``
    The contributions are fixed. ``paillier``: the custodians' partial decryptions are awaited;
    ``secagg``: the unmasked sum is being decided.

Every transition is a compare-and-set on the round row inside the transaction that does the
step's work, so of two racing steps exactly one happens, and an interrupted step leaves the
round where it was. A round ends in one transaction that stores the aggregate, the factor
version and their log entries together, or stores only the suppression: never a partial
publication. After a restart (:func:`resume_rounds`) a ``paillier`` round keeps its persisted
contributions (``open``) and partial decryptions (``aggregating``) and carries on; a ``secagg``
round caught in ``collecting`` or ``aggregating`` is aborted, since its masked inputs lived only
in the interrupted process; nothing was stored for it, so nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any, Final, Literal

from pydantic import BaseModel

from aggregator import translog
from aggregator.errors import (
    BadRequest,
    Conflict,
    DuplicateContribution,
    Forbidden,
    InvalidTransition,
    NotFound,
    SpecRejected,
    Unauthorized,
    Unavailable,
    WindowClosed,
)
from aggregator.members import check_signed_request, remember
from aggregator.repository import document_bytes, document_hash
from aggregator.store import (
    ContributionRow,
    FactorRow,
    MemberRow,
    PartialDecryptionRow,
    RoundRow,
    Store,
    Transaction,
    utcnow,
)
from keys import identity
from keys.identity import Ed25519PrivateKey
from protocols import paillier
from protocols.errors import AggregationError, InvalidSignature
from protocols.factor import FactorError, PublishedFactor, build_factor, factor_id_for
from protocols.paillier import spec_layout as paillier_layout
from protocols.roster import SignedRoster, sign_roster
from protocols.spec import (
    KIND_HIST,
    RoundSpec,
    SignedSpec,
    sign_spec,
    spec_hash,
    validate_spec,
    vector_layout,
)
from protocols.stats import (
    AggregateStatistics,
    aggregate_statistics,
    check_disclosure,
    merged_gases,
    other_gases_sum,
    withheld_slots,
)

__all__ = [
    "ABORTED",
    "ACTIVE_STATES",
    "AGGREGATING",
    "COLLECTING",
    "DRAFT",
    "OPEN",
    "PUBLISHED",
    "ROUND_STATES",
    "SUPPRESSED",
    "TERMINAL_STATES",
    "ContributionReceipt",
    "DecryptionRequest",
    "PartialReceipt",
    "RosterEntry",
    "RoundContext",
    "RoundPublic",
    "RoundState",
    "SecAggRunner",
    "cancel_round",
    "create_round",
    "decryption_request",
    "get_round",
    "histogram_commitment",
    "list_rounds",
    "open_round",
    "paillier_layout",
    "public_log_other_gases",
    "public_log_summed",
    "resume_rounds",
    "run_round",
    "secagg_value_bits",
    "stored_summed",
    "submit_contribution",
    "submit_partial",
]

log = logging.getLogger(__name__)

DRAFT: Final = "draft"
OPEN: Final = "open"
COLLECTING: Final = "collecting"
AGGREGATING: Final = "aggregating"
PUBLISHED: Final = "published"
SUPPRESSED: Final = "suppressed"
ABORTED: Final = "aborted"
ROUND_STATES: Final = (DRAFT, OPEN, COLLECTING, AGGREGATING, PUBLISHED, SUPPRESSED, ABORTED)
TERMINAL_STATES: Final = (PUBLISHED, SUPPRESSED, ABORTED)
ACTIVE_STATES: Final = (OPEN, COLLECTING, AGGREGATING)
LIBRARY_LEVEL: Final = "industry"
"""Library level of the factors rounds publish (part of the factor id, see ``protocols.factor``)."""

RoundState = Literal["draft", "open", "collecting", "aggregating", "published", "suppressed", "aborted"]


@dataclass(frozen=True)
class RosterEntry:
    """An approved member as the secure-aggregation runner needs it."""

    fingerprint: str
    identity_public_key: str
    supernode_public_key: str
    flower_node_id: str | None = None
    """The member's SuperLink node id, from the round's signed roster (``None`` without a SuperLink)."""


SecAggRunner = Callable[[RoundSpec, list[RosterEntry]], tuple[Sequence[int], int]]
"""``run_secagg(spec, roster) -> (summed_ints, n)``: runs the masked aggregation, returns the signed slot sums."""


def _spawn_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="pcf-secagg-round", daemon=True).start()


@dataclass
class RoundContext:
    """What round operations need: the store, the aggregator's key, and the pluggable parts."""

    store: Store
    key: Ed25519PrivateKey
    paillier_public_key: paillier.SplitPublicKey | None = None
    """The custodians' key from the ceremony; required to create ``paillier`` rounds."""
    runner: SecAggRunner | None = None
    flower_roster: bool = False
    """``secagg`` rounds run over a Flower SuperLink: opening one fixes and signs its roster of approved
    members with a registered SuperNode (node id -> identity key), and the runner gets exactly that roster."""
    clock: Callable[[], datetime] = utcnow
    spawn: Callable[[Callable[[], None]], None] = _spawn_thread
    """How a ``secagg`` run is started off the request (a daemon thread; tests may run inline)."""
    _publish_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


# ------------------------------------------------------------------------------------ wire models


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
    """What each custodian needs to decrypt a ``paillier`` round (``keys.custodian.custodian_decrypt`` input)."""

    round_id: str
    spec_hash: str
    key_id: str
    min_participants: int
    contributions: list[dict[str, Any]]
    """``SignedContribution.to_dict()`` of every logged contribution."""


class PartialReceipt(BaseModel):
    """Acknowledgement of a custodian's partial decryption."""

    round_id: str
    custodian_index: int
    received: int
    expected: int
    state: RoundState


# ---------------------------------------------------------------------------------------- helpers


def _signed(row: RoundRow) -> SignedSpec:
    return SignedSpec.model_validate_json(row.signed_spec)


def _params(row: RoundRow) -> dict[str, Any]:
    return json.loads(row.params) if row.params else {}


def _split_key(row: RoundRow) -> paillier.SplitPublicKey:
    return paillier.SplitPublicKey.from_dict(_params(row)["paillier_public_key"])


def _signed_roster(row: RoundRow) -> SignedRoster | None:
    doc = _params(row).get("roster")
    return SignedRoster.model_validate(doc) if doc is not None else None


def _effective_min(spec: RoundSpec) -> int:
    if spec.protocol == "paillier":
        return max(spec.min_participants, paillier.MIN_PARTICIPANTS_FLOOR)
    return spec.min_participants


def _public(tx: Transaction, row: RoundRow) -> RoundPublic:
    signed = _signed(row)
    return RoundPublic(
        round_id=row.id,
        protocol=row.protocol,  # type: ignore[arg-type]
        state=row.state,  # type: ignore[arg-type]
        spec_hash=row.spec_hash,
        signed_spec=signed,
        paillier_public_key=_params(row).get("paillier_public_key"),
        roster=_signed_roster(row),
        deadline=signed.spec.deadline,
        decision=row.decision,
        contributions=tx.count_contributions(row.id),
        partial_decryptions=tx.count_partials(row.id),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def histogram_commitment(salt_hex: str, counts: Sequence[int]) -> str:
    """SHA-256 over the salt and the canonical JSON of the histogram counts (decimal strings)."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + translog.canonical_json([str(c) for c in counts])).hexdigest()


def stored_summed(spec: RoundSpec, summed: Sequence[int | None]) -> list[int | None]:
    """The summed vector as the aggregator stores it: the slots the disclosure rules withhold are ``None``.

    A component fewer than ``min_participants`` firms report has sums that are those firms' own
    values, and so would the ``wF`` sums of a gas that few firms emit, or let a reader subtract
    them (``protocols.stats.withheld_slots``); they are dropped before anything is written. The
    merged gases' sum is kept in the aggregate's log entry (:func:`public_log_other_gases`).
    """
    drop = set(withheld_slots(spec, summed))
    return [None if slot.name in drop else value for slot, value in zip(vector_layout(spec), summed, strict=True)]


def public_log_summed(
    spec: RoundSpec, summed: Sequence[int | None]
) -> tuple[list[str | None], list[str], list[int]]:
    """The summed vector as the public log shows it: histogram bins and withheld components' slots ``None``.

    A histogram bin holding one firm would tell that firm's footprint range, so the log carries
    only a salted commitment to the bins (``protocols.stats`` keeps the histogram for the
    aggregator's use only). The value slots (``x``, ``wx``, ``wx2``) of a component reported by
    fewer than ``min_participants`` firms are those firms' values: the log shows ``None`` and
    the component's reporter count ``n[c]``, which is all a verifier needs to see why. Likewise the
    ``wF`` slots of the gases the gas-level rule merges show ``None`` next to their counts ``nF[g]``;
    their sum is logged on its own (:func:`public_log_other_gases`).

    Returns
    -------
    tuple[list[str | None], list[str], list[int]]
        The values as decimal strings with ``None`` at withheld positions, the withheld slot
        names (bins, component and gas slots), and the withheld histogram counts (what the commitment covers).
    """
    drop = set(withheld_slots(spec, summed))
    shown: list[str | None] = []
    withheld: list[str] = []
    counts: list[int] = []
    for slot, value in zip(vector_layout(spec), summed, strict=True):
        if slot.kind == KIND_HIST:
            assert value is not None  # bins are never dropped from the stored aggregate
            shown.append(None)
            withheld.append(slot.name)
            counts.append(int(value))
        elif slot.name in drop or value is None:
            shown.append(None)
            withheld.append(slot.name)
        else:
            shown.append(str(int(value)))
    return shown, withheld, counts


def _decimal_text(value: Fraction) -> str:
    """``value`` as an exact decimal string; it must be a terminating decimal (denominator 2^a 5^b)."""
    for places in range(80):
        scaled = value * 10**places
        if scaled.denominator == 1:
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
            return f"-{text}" if scaled < 0 else text
    raise ValueError(f"{value} is not a terminating decimal")


def public_log_other_gases(spec: RoundSpec, summed: Sequence[int | None]) -> dict[str, Any] | None:
    """What the aggregate's log entry shows of the gases the gas-level rule merges; ``None`` when none is.

    ``{"gases": [...], "sum": "<decimal>"}``: the merged gases in spec order and their ``wF`` sums
    added up, in the slots' unit (production × kg CO2e per reference unit), exact. A verifier passes
    the sum to ``protocols.stats.aggregate_statistics(..., other_gases=Fraction(sum))``. The sum covers at
    least ``min_participants`` firms except when it is the whole footprint (``protocols.stats``).
    """
    total = other_gases_sum(spec, summed)
    if total is None:
        return None
    return {"gases": merged_gases(spec, summed), "sum": _decimal_text(total)}


def _roster(tx: Transaction, row: RoundRow) -> list[RosterEntry]:
    """Who a ``secagg`` run aggregates over: the signed roster's members still approved, else every approved member."""
    approved = tx.list_members("approved")
    signed = _signed_roster(row)
    if signed is None:
        return [RosterEntry(m.fingerprint, m.identity_public_key, m.supernode_public_key) for m in approved]
    by_node = {m.flower_node_id: m for m in approved if m.flower_node_id is not None}
    return [
        RosterEntry(m.fingerprint, m.identity_public_key, m.supernode_public_key, node_id)
        for node_id, key in sorted(signed.roster.items(), key=lambda item: int(item[0]))
        if (m := by_node.get(node_id)) is not None and m.identity_public_key == key
    ]


def secagg_value_bits(spec: RoundSpec, participants: int) -> int:
    """The secure-aggregation input bound ``b`` of a round: inputs lie in [-2**b, 2**b).

    The smallest ``b`` with every slot's ``bound_int < 2**b``, so a node refuses any value its
    consent could not have covered; it must also keep ``participants * 2**b <= 2**63`` so the
    signed sum cannot wrap.

    Raises
    ------
    ValueError
        When no such ``b`` exists for this many participants.
    """
    bits = max(max(slot.bound_int for slot in vector_layout(spec)).bit_length(), 1)
    if bits > 62 or participants * 2**bits > 2**63:
        raise ValueError(
            f"slot bounds need inputs below 2**{bits}; {participants} participants × 2**{bits} exceeds 2**63, "
            f"so the masked sum could wrap; accepted: at most {2**63 // 2**bits} participants, or lower bounds/scales"
        )
    return bits


def _fix_roster(tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime) -> None:
    """Sign the roster of an opening ``secagg`` round, store it with the round and log it."""
    members = [m for m in tx.list_members("approved") if m.flower_node_id is not None]
    if len(members) < spec.min_participants:
        raise Conflict(
            f"round {row.id!r} cannot open: {len(members)} approved member(s) have a SuperNode registered with "
            f"the SuperLink, min_participants is {spec.min_participants}; approve more members first"
        )
    if len(members) > spec.max_participants:
        raise Conflict(
            f"round {row.id!r} cannot open: {len(members)} approved members with a SuperNode exceed "
            f"max_participants {spec.max_participants}; create the round with a larger max_participants"
        )
    try:
        secagg_value_bits(spec, len(members))
    except ValueError as exc:
        raise SpecRejected(f"round {row.id!r}: {exc}") from None
    signed = sign_roster(
        ctx.key, row.id, row.spec_hash, {str(m.flower_node_id): m.identity_public_key for m in members}
    )
    tx.set_round_params(row.id, json.dumps({**_params(row), "roster": signed.model_dump(mode="json")}))
    translog.append(
        tx,
        ctx.key,
        translog.ROSTER,
        {"round_id": row.id, "spec_hash": row.spec_hash, "roster": signed.roster, "signature": signed.signature},
        now,
    )


# ------------------------------------------------------------------------------------- operations


def create_round(ctx: RoundContext, spec: RoundSpec) -> RoundPublic:
    """Validate ``spec``, sign it with the aggregator's key and store it as a draft.

    Raises
    ------
    SpecRejected
        The spec fails ``validate_spec`` (e.g. a slot could overflow) or no packing layout fits it.
    Unavailable
        A ``paillier`` round while no custodian public key is configured.
    Conflict
        The round id exists.
    """
    try:
        validate_spec(spec)
    except (ValueError, ArithmeticError) as exc:  # SpecError, or arithmetic on extreme bounds
        raise SpecRejected(f"round spec {spec.round_id!r}: {exc}") from None
    if "footprint_weighted_mean" not in spec.statistics:
        raise SpecRejected(
            f"round spec {spec.round_id!r}: statistics lack 'footprint_weighted_mean', the value a published "
            f"factor carries; accepted: statistics including it (got {spec.statistics})"
        )
    params: dict[str, Any] = {}
    if spec.protocol == "paillier":
        pk = ctx.paillier_public_key
        if pk is None:
            raise Unavailable(
                "no Paillier public key is configured; set PCF_AGG_PAILLIER_PUBLIC_KEY to the ceremony's "
                "paillier_public_key.json, or use protocol 'secagg'"
            )
        if pk.bits < spec.paillier.key_bits:
            raise SpecRejected(
                f"round spec {spec.round_id!r}: paillier.key_bits {spec.paillier.key_bits} exceeds the configured "
                f"custodian key of {pk.bits} bits; accepted: at most {pk.bits}"
            )
        try:
            paillier_layout(spec)
        except paillier.LayoutError as exc:
            raise SpecRejected(f"round spec {spec.round_id!r}: no Paillier packing layout fits: {exc}") from None
        params["paillier_public_key"] = pk.to_dict()
    signed = sign_spec(spec, ctx.key)
    now = ctx.clock()
    row = RoundRow(
        id=spec.round_id,
        protocol=spec.protocol,
        signed_spec=signed.model_dump_json(),
        spec_hash=spec_hash(spec),
        params=json.dumps(params) if params else None,
        state=DRAFT,
        created_at=now,
        updated_at=now,
    )
    with ctx.store.transaction() as tx:
        tx.add_round(row)
        return _public(tx, row)


def get_round(ctx: RoundContext, round_id: str, *, include_drafts: bool = True) -> RoundPublic:
    """One round; members (``include_drafts=False``) get ``NotFound`` for a draft."""
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.state == DRAFT and not include_drafts:
            raise NotFound(f"round {round_id!r} does not exist")
        return _public(tx, row)


def list_rounds(ctx: RoundContext, state: str | None = None, *, include_drafts: bool = True) -> list[RoundPublic]:
    """Rounds, optionally in one state; drafts only when ``include_drafts``."""
    if state is not None and state not in ROUND_STATES:
        raise BadRequest(f"state {state!r}: accepted are {', '.join(ROUND_STATES)}")
    states = [state] if state else [s for s in ROUND_STATES if include_drafts or s != DRAFT]
    if not include_drafts and DRAFT in states:
        states.remove(DRAFT)
    with ctx.store.transaction() as tx:
        return [_public(tx, r) for r in tx.list_rounds(states)]


def open_round(ctx: RoundContext, round_id: str) -> RoundPublic:
    """Publish the signed spec (log entry) and invite members: draft → open.

    A ``secagg`` round over Flower (``ctx.flower_roster``) also fixes its roster here: the approved
    members with a registered SuperNode, signed with the spec hash, stored with the round and logged.

    Raises
    ------
    InvalidTransition
        The round is not a draft.
    WindowClosed
        The spec's deadline has passed.
    Conflict
        ``secagg`` over Flower: fewer roster members than ``min_participants`` (or more than ``max_participants``).
    SpecRejected
        ``secagg`` over Flower: the slot bounds leave no wrap-free input bound for the roster's size.
    """
    now = ctx.clock()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        signed = _signed(row)
        if row.state == DRAFT and now >= signed.spec.deadline:
            raise WindowClosed(
                f"round {round_id!r} has deadline {signed.spec.deadline.isoformat()}, already past; "
                "create a round with a later deadline"
            )
        row = tx.transition_round(round_id, [DRAFT], OPEN, now)
        payload: dict[str, Any] = {"round_id": round_id, "spec_hash": row.spec_hash, "signed_spec": row.signed_spec}
        if row.params:
            payload["params"] = _params(row)
        translog.append(tx, ctx.key, translog.SPEC_PUBLISHED, payload, now)
        if row.protocol == "secagg" and ctx.flower_roster:
            _fix_roster(tx, ctx, row, signed.spec, now)  # a refusal rolls the opening back: the round stays a draft
        return _public(tx, tx.get_round(round_id))


def submit_contribution(
    ctx: RoundContext,
    round_id: str,
    member: MemberRow,
    body: bytes,
    method: str,
    path: str,
    timestamp: str,
    node_signature: str,
) -> ContributionReceipt:
    """Accept one member's signed encrypted contribution to a ``paillier`` round.

    The node's request signature (already verified by the caller) covers the SHA-256 of the
    body; it goes into the log entry, which the aggregator signs: the receipt is countersigned.

    Raises
    ------
    BadRequest
        Malformed or invalid contribution, ciphertexts copied from another contribution.
    Forbidden
        The contribution's sender is not the calling member.
    WindowClosed
        The deadline has passed or the round no longer collects.
    DuplicateContribution
        The member already contributed to this round.
    Conflict
        Not a ``paillier`` round, or the round is full (``max_participants``).
    """
    now = ctx.clock()
    try:
        data = json.loads(body)
        contribution = paillier.SignedContribution.from_dict(data)
    except (ValueError, paillier.MalformedMessage) as exc:
        raise BadRequest(f"contribution to round {round_id!r} is not a SignedContribution JSON object: {exc}") from None
    digest = hashlib.sha256(body).hexdigest()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.protocol != "paillier":
            raise Conflict(
                f"round {round_id!r} uses protocol {row.protocol!r}; contributions are posted only to 'paillier' rounds "
                "(secagg inputs travel through the Flower SuperLink)"
            )
        if row.state != OPEN:
            raise WindowClosed(f"round {round_id!r} is {row.state!r}; contributions are accepted while it is 'open'")
        spec = _signed(row).spec
        if now >= spec.deadline:
            raise WindowClosed(f"round {round_id!r} closed at its deadline {spec.deadline.isoformat()}")
        if contribution.sender != member.identity_public_key:
            raise Forbidden(
                f"contribution sender {contribution.sender[:16]}… is not the identity key of the signing member "
                f"{member.fingerprint}; members contribute under their own key"
            )
        pk = _split_key(row)
        layout = paillier_layout(spec)
        try:
            paillier.verify_contribution(
                contribution, pk, {member.identity_public_key}, round_id, layout.n_ciphertexts
            )
        except paillier.ContributionRejected as exc:
            raise BadRequest(f"contribution to round {round_id!r} rejected: {exc}") from None
        existing = tx.list_contributions(round_id)
        if any(other.member_id == member.id for other in existing):
            raise DuplicateContribution(
                f"member {member.fingerprint} already contributed to round {round_id!r}; one contribution per member counts"
            )
        if len(existing) >= spec.max_participants:
            raise Conflict(f"round {round_id!r} already holds max_participants = {spec.max_participants} contributions")
        seen: set[int] = set()
        for other in existing:
            seen.update(paillier.SignedContribution.from_dict(json.loads(other.body)).ciphertexts)
        if any(ct in seen for ct in contribution.ciphertexts):
            raise BadRequest(f"contribution to round {round_id!r} copies a ciphertext of another contribution")
        # A compare-and-set onto the same state: it locks the round row, so closing the round
        # waits for this insert (or this insert sees the round closed).
        tx.transition_round(round_id, [OPEN], OPEN, now)
        assert member.id is not None
        tx.add_contribution(
            ContributionRow(round_id=round_id, member_id=member.id, contribution_hash=digest, body=body.decode(), received_at=now)
        )
        entry = translog.append(
            tx,
            ctx.key,
            translog.CONTRIBUTION_RECEIPT,
            {
                "round_id": round_id,
                "member": member.fingerprint,
                "contribution_hash": digest,
                "method": method.upper(),
                "path": path,
                "timestamp": timestamp,
                "node_signature": node_signature,
            },
            now,
        )
    return ContributionReceipt(
        round_id=round_id,
        member=member.fingerprint,
        contribution_hash=digest,
        seq=entry.seq,
        entry_hash=entry.entry_hash,
        aggregator_signature=entry.signature,
        received_at=now,
    )


def run_round(ctx: RoundContext, round_id: str) -> RoundPublic:
    """Close the invitation and aggregate.

    ``paillier``: open → aggregating; the round then waits for the custodians' partial
    decryptions (or is suppressed at once when too few contributed to ever be decrypted).
    ``secagg``: open → collecting, and the runner is started off the request; when it returns,
    the round moves to aggregating and is decided.

    Raises
    ------
    InvalidTransition
        The round is not open.
    Unavailable
        A ``secagg`` round while no runner is configured.
    """
    now = ctx.clock()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        spec = _signed(row).spec
        if row.protocol == "secagg":
            if ctx.runner is None:
                raise Unavailable("no secure-aggregation runner is configured (the Flower SuperLink is not wired)")
            row = tx.transition_round(round_id, [OPEN], COLLECTING, now)
            roster = _roster(tx, row)
        else:
            row = tx.transition_round(round_id, [OPEN], AGGREGATING, now)
            n = tx.count_contributions(round_id)
            if n < _effective_min(spec):
                decision = check_disclosure(spec, n, 0, 0)
                rule = decision.rule or "min_participants"
                message = (
                    decision.message
                    if decision.rule
                    else f"{n} contribution(s); custodians decrypt only sets of at least {paillier.MIN_PARTICIPANTS_FLOOR}"
                )
                _suppress(tx, ctx, row, rule, message, n, now)
        result = _public(tx, tx.get_round(round_id))
    if row.protocol == "secagg":
        ctx.spawn(lambda: _run_secagg(ctx, round_id, spec, roster))
    return result


def _run_secagg(ctx: RoundContext, round_id: str, spec: RoundSpec, roster: list[RosterEntry]) -> None:
    assert ctx.runner is not None
    try:
        summed, n = ctx.runner(spec, roster)
        summed = [int(v) for v in summed]
    except Exception as exc:  # noqa: BLE001 - the runner is pluggable: any failure aborts the round cleanly
        log.warning("secagg round %s failed: %s", round_id, exc)
        _abort(ctx, round_id, (COLLECTING,), f"secure aggregation failed: {type(exc).__name__}: {exc}")
        return
    try:
        with ctx.store.transaction() as tx:
            tx.transition_round(round_id, [COLLECTING], AGGREGATING, ctx.clock())
    except InvalidTransition:
        log.info("secagg round %s was cancelled while running; its result is dropped", round_id)
        return
    _conclude(ctx, round_id, spec, summed, n, [])


def cancel_round(ctx: RoundContext, round_id: str, reason: str = "cancelled by the association") -> RoundPublic:
    """Abort a round that has not ended; nothing it collected is ever aggregated.

    Raises
    ------
    InvalidTransition
        The round already ended.
    """
    _abort(ctx, round_id, (DRAFT, *ACTIVE_STATES), reason, strict=True)
    return get_round(ctx, round_id)


def _abort(ctx: RoundContext, round_id: str, from_states: Sequence[str], reason: str, *, strict: bool = False) -> None:
    now = ctx.clock()
    try:
        with ctx.store.transaction() as tx:
            before = tx.get_round(round_id).state
            tx.transition_round(round_id, list(from_states), ABORTED, now, decision=f"aborted: {reason}")
            if before != DRAFT:  # drafts were never announced in the log
                translog.append(tx, ctx.key, translog.ABORT, {"round_id": round_id, "reason": reason}, now)
    except InvalidTransition:
        if strict:
            raise


def _suppress(tx: Transaction, ctx: RoundContext, row: RoundRow, rule: str, message: str, n: int, now: datetime) -> None:
    tx.transition_round(row.id, [AGGREGATING], SUPPRESSED, now, decision=f"suppressed by rule {rule}: {message}")
    translog.append(
        tx,
        ctx.key,
        translog.SUPPRESSION,
        {"round_id": row.id, "spec_hash": row.spec_hash, "rule": rule, "detail": message, "n": n},
        now,
    )


def _conclude(
    ctx: RoundContext, round_id: str, spec: RoundSpec, summed: list[int], n: int, contribution_hashes: list[str]
) -> None:
    """Decide a round in ``aggregating``: suppress it, or store aggregate + factor version + log entries at once."""
    stats: AggregateStatistics | None = None
    if n >= 1:
        try:
            stats = aggregate_statistics(spec, summed, n)
        except AggregationError as exc:
            _abort(ctx, round_id, (AGGREGATING,), f"the aggregate is inconsistent: {exc}")
            return
    decision = stats.disclosure if stats is not None else check_disclosure(spec, n, 0, 0)
    now = ctx.clock()
    with ctx._publish_lock:
        try:
            with ctx.store.transaction() as tx:
                row = tx.get_round(round_id)
                if row.state != AGGREGATING:
                    return  # decided (or cancelled) meanwhile: never twice
                if not decision.publish or stats is None:
                    _suppress(tx, ctx, row, decision.rule or "min_participants", decision.message, n, now)
                    return
                _publish(tx, ctx, row, spec, stats, summed, n, contribution_hashes, now)
        except InvalidTransition:
            return
        except FactorError as exc:  # rolled back: nothing of the publication was stored
            _abort(ctx, round_id, (AGGREGATING,), f"the factor cannot be built: {exc}")


def _publish(
    tx: Transaction,
    ctx: RoundContext,
    row: RoundRow,
    spec: RoundSpec,
    stats: AggregateStatistics,
    summed: list[int],
    n: int,
    contribution_hashes: list[str],
    now: datetime,
) -> None:
    fid = factor_id_for(spec.product.reference_flow, spec.region, LIBRARY_LEVEL)
    version = tx.next_factor_version(fid)
    previous_row = tx.get_factor(fid)
    previous = PublishedFactor.model_validate_json(previous_row.document) if previous_row else None
    tx.transition_round(row.id, [AGGREGATING], PUBLISHED, now, decision=f"published factor {fid} revision {version}")
    salt = secrets.token_hex(16)
    kept = stored_summed(spec, summed)  # never a withheld component's or gas's sums, not even in the database
    tx.put_aggregate(row.id, kept, n, now, histogram_salt=salt)
    shown, withheld, counts = public_log_summed(spec, kept)
    other_gases = public_log_other_gases(spec, summed)  # only in rounds where the gas-level rule merges
    aggregate_entry = translog.append(
        tx,
        ctx.key,
        translog.AGGREGATE,
        {
            "round_id": row.id,
            "spec_hash": row.spec_hash,
            "n": n,
            "summed": shown,
            "withheld": withheld,
            "histogram_commitment": histogram_commitment(salt, counts) if counts else None,
            "contributions": sorted(contribution_hashes),
        }
        | ({"other_gases": other_gases} if other_gases is not None else {}),
        now,
    )
    factor = build_factor(
        spec, stats, version, previous, LIBRARY_LEVEL, log_entry_hash=aggregate_entry.entry_hash, now=now
    )
    doc_hash = document_hash(factor)
    entry = translog.append(
        tx,
        ctx.key,
        translog.PUBLICATION,
        {
            "round_id": row.id,
            "factor_id": factor.factor_id,
            "version": factor.version,
            "revision": version,
            "document_hash": doc_hash,
        },
        now,
    )
    tx.add_factor(
        FactorRow(
            factor_id=factor.factor_id,
            version=version,
            round_id=row.id,
            document=document_bytes(factor).decode(),
            document_hash=doc_hash,
            log_seq=entry.seq,
            created_at=now,
        )
    )


# ------------------------------------------------------------------------------------- custodians


def custodian_key_for(ctx: RoundContext, round_id: str) -> Callable[[str], str | None]:
    """Fingerprint -> custodian verification key of a ``paillier`` round (for signed custodian requests)."""
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
    if row.protocol != "paillier":
        return lambda _fp: None
    keys = {identity.fingerprint(k): k for k in _split_key(row).custodians}
    return keys.get


def authenticate_custodian(
    ctx: RoundContext,
    round_id: str,
    method: str,
    path: str,
    headers: dict[str, str | None],
    body: bytes,
    max_age: Any,
) -> str:
    """Check a request signed with one of the round's custodian keys; return its fingerprint."""
    now = ctx.clock()
    fp, sig = check_signed_request(method, path, headers, body, now, max_age, custodian_key_for(ctx, round_id))
    with ctx.store.transaction() as tx:
        remember(tx, fp, sig, now, max_age)
    return fp


def decryption_request(ctx: RoundContext, round_id: str) -> DecryptionRequest:
    """The logged contributions of a ``paillier`` round in ``aggregating``, for the custodians.

    Raises
    ------
    InvalidTransition
        The round is not aggregating (collection not closed, or already decided).
    Conflict
        Not a ``paillier`` round.
    """
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.protocol != "paillier":
            raise Conflict(f"round {round_id!r} uses protocol {row.protocol!r}; only 'paillier' rounds are decrypted")
        if row.state != AGGREGATING:
            raise InvalidTransition(f"round {round_id!r} is {row.state!r}; decryption is requested while 'aggregating'")
        spec = _signed(row).spec
        items = [json.loads(c.body) for c in tx.list_contributions(round_id)]
    return DecryptionRequest(
        round_id=round_id,
        spec_hash=row.spec_hash,
        key_id=_split_key(row).key_id,
        min_participants=_effective_min(spec),
        contributions=items,
    )


def submit_partial(ctx: RoundContext, round_id: str, body: bytes) -> PartialReceipt:
    """Store a custodian's signed partial decryption; combine and decide once every custodian answered.

    Raises
    ------
    BadRequest
        Not a PartialDecryption JSON object.
    Unauthorized
        Not a custodian of the round's key, or a bad custodian signature.
    InvalidTransition
        The round is not aggregating.
    Conflict
        Not a ``paillier`` round, for another round/key/contribution set, or this custodian already answered.
    """
    try:
        partial = paillier.PartialDecryption.from_dict(json.loads(body))
    except (ValueError, paillier.MalformedMessage) as exc:
        raise BadRequest(f"partial decryption for round {round_id!r} is not a PartialDecryption JSON object: {exc}") from None
    now = ctx.clock()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.protocol != "paillier":
            raise Conflict(f"round {round_id!r} uses protocol {row.protocol!r}; only 'paillier' rounds are decrypted")
        if row.state != AGGREGATING:
            raise InvalidTransition(f"round {round_id!r} is {row.state!r}; partial decryptions are accepted while 'aggregating'")
        pk = _split_key(row)
        spec = _signed(row).spec
        digests = sorted(
            paillier.SignedContribution.from_dict(json.loads(c.body)).digest for c in tx.list_contributions(round_id)
        )
        if not 0 <= partial.custodian_index < len(pk.custodians):
            raise Unauthorized(
                f"custodian_index {partial.custodian_index} is not a custodian of round {round_id!r}'s key "
                f"(0..{len(pk.custodians) - 1})"
            )
        try:
            identity.verify(pk.custodians[partial.custodian_index], partial.signed_bytes(), partial.signature)
        except InvalidSignature:
            raise Unauthorized(
                f"partial decryption for round {round_id!r}: the signature of custodian {partial.custodian_index} does not verify"
            ) from None
        problem = None
        if partial.round_id != round_id or partial.key_id != pk.key_id:
            problem = f"it is for round {partial.round_id!r} and key {partial.key_id[:16]}, expected {round_id!r} and {pk.key_id[:16]}"
        elif sorted(partial.contribution_digests) != digests:
            problem = "it covers another set of contributions than the round's"
        elif len(partial.partials) != paillier_layout(spec).n_ciphertexts:
            problem = f"it has {len(partial.partials)} values, the layout {paillier_layout(spec).n_ciphertexts}"
        if problem:
            raise Conflict(f"partial decryption for round {round_id!r} refused: {problem}")
        tx.add_partial(
            PartialDecryptionRow(round_id=round_id, custodian=str(partial.custodian_index), body=body.decode(), received_at=now)
        )
        received = tx.count_partials(round_id)
    expected = len(pk.custodians)
    if received >= expected:
        _finish_paillier(ctx, round_id)
    return PartialReceipt(
        round_id=round_id,
        custodian_index=partial.custodian_index,
        received=received,
        expected=expected,
        state=get_round(ctx, round_id).state,
    )


def _finish_paillier(ctx: RoundContext, round_id: str) -> None:
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.state != AGGREGATING:
            return
        pk = _split_key(row)
        spec = _signed(row).spec
        contributions = tx.list_contributions(round_id)
        partials = [paillier.PartialDecryption.from_dict(json.loads(p.body)) for p in tx.list_partials(round_id)]
    if len(partials) < len(pk.custodians):
        return
    n = len(contributions)
    try:
        summed = paillier.combine(partials, pk, paillier_layout(spec), n)
    except (paillier.CombineFailed, paillier.LayoutError) as exc:
        _abort(ctx, round_id, (AGGREGATING,), f"decryption failed: {exc}")
        return
    _conclude(ctx, round_id, spec, summed, n, [c.contribution_hash for c in contributions])


# ----------------------------------------------------------------------------------------- restart


def resume_rounds(ctx: RoundContext) -> dict[str, str]:
    """Bring rounds interrupted by a restart to a consistent state.

    Returns
    -------
    dict[str, str]
        Round id -> what was done (``"waiting for custodians"``, ``"combined"``, ``"aborted"``).
    """
    with ctx.store.transaction() as tx:
        rows = tx.list_rounds([COLLECTING, AGGREGATING])
    done: dict[str, str] = {}
    for row in rows:
        if row.protocol == "secagg":
            _abort(ctx, row.id, (COLLECTING, AGGREGATING), "interrupted by an aggregator restart during secure aggregation")
            done[row.id] = "aborted"
        elif row.state == AGGREGATING:
            _finish_paillier(ctx, row.id)
            state = get_round(ctx, row.id).state
            done[row.id] = "waiting for custodians" if state == AGGREGATING else state
    return done

