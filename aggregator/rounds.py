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

What differs between the protocols is one :class:`~aggregator.round_protocol.RoundProtocol` per
protocol (``aggregator.round_secagg``, ``aggregator.round_paillier``), chosen once per round by
:func:`protocol_for`; how a round ends is ``aggregator.round_outcome``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from aggregator import translog
from aggregator.errors import (
    BadRequest,
    Conflict,
    DuplicateContribution,
    NotFound,
    SpecRejected,
    WindowClosed,
)
from aggregator.members import check_signed_request, remember
from aggregator.round_context import (
    ABORTED,
    ACTIVE_STATES,
    AGGREGATING,
    COLLECTING,
    DRAFT,
    LIBRARY_LEVEL,
    OPEN,
    PUBLISHED,
    ROUND_STATES,
    SUPPRESSED,
    TERMINAL_STATES,
    RosterEntry,
    RoundContext,
    RoundState,
    SecAggRunner,
    StageRun,
    StageSum,
    row_params,
    row_spec,
)
from aggregator.round_models import (
    ContributionReceipt,
    DecryptionRequest,
    PartialReceipt,
    RoundPublic,
    StageStatus,
    round_public,
)
from aggregator.round_outcome import (
    abort_round,
    histogram_commitment,
    public_log_other_gases,
    public_log_summed,
    stored_summed,
)
from aggregator.round_paillier import PaillierProtocol, paillier_layout, stage_status, submit_stage_contribution
from aggregator.round_protocol import RoundProtocol
from aggregator.round_secagg import SecaggProtocol, secagg_value_bits
from aggregator.store import ContributionRow, MemberRow, RoundRow
from protocols.disclosure import spec_problems
from protocols.spec import RoundSpec, sign_spec, spec_hash, validate_spec

__all__ = [
    "ABORTED",
    "ACTIVE_STATES",
    "AGGREGATING",
    "COLLECTING",
    "DRAFT",
    "LIBRARY_LEVEL",
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
    "RoundProtocol",
    "RoundPublic",
    "RoundState",
    "SecAggRunner",
    "StageRun",
    "StageStatus",
    "StageSum",
    "authenticate_custodian",
    "cancel_round",
    "create_round",
    "custodian_key_for",
    "decryption_request",
    "get_round",
    "histogram_commitment",
    "list_rounds",
    "open_round",
    "paillier_layout",
    "protocol_for",
    "public_log_other_gases",
    "public_log_summed",
    "resume_rounds",
    "run_round",
    "secagg_value_bits",
    "stage_status",
    "stored_summed",
    "submit_contribution",
    "submit_partial",
    "submit_stage_contribution",
]

_PROTOCOLS: dict[str, RoundProtocol] = {p.name: p for p in (SecaggProtocol(), PaillierProtocol())}


def protocol_for(protocol: str) -> RoundProtocol:
    """The implementation of a round's protocol (``spec.protocol`` / ``RoundRow.protocol``).

    Raises
    ------
    SpecRejected
        No implementation of that protocol.
    """
    try:
        return _PROTOCOLS[protocol]
    except KeyError:
        raise SpecRejected(f"protocol {protocol!r}: accepted are {', '.join(sorted(_PROTOCOLS))}") from None


# ------------------------------------------------------------------------------------- operations


def create_round(ctx: RoundContext, spec: RoundSpec) -> RoundPublic:
    """Validate ``spec``, sign it with the aggregator's key and store it as a draft.

    Raises
    ------
    SpecRejected
        The spec fails ``validate_spec`` (e.g. a slot could overflow) or the disclosure rules
        (``protocols.disclosure.spec_problems``: fewer than 3 participants, dispersion statistics
        below 10, release 0.1's concentration screen), or no packing layout fits it.
    Unavailable
        A ``paillier`` round while no custodian public key is configured.
    Conflict
        The round id exists.
    """
    try:
        validate_spec(spec)
    except (ValueError, ArithmeticError) as exc:  # SpecError, or arithmetic on extreme bounds
        raise SpecRejected(f"round spec {spec.round_id!r}: {exc}") from None
    problems = spec_problems(spec)
    if problems:
        raise SpecRejected(f"round spec {spec.round_id!r}: " + "; ".join(problems))
    if "footprint_weighted_mean" not in spec.statistics:
        raise SpecRejected(
            f"round spec {spec.round_id!r}: statistics lack 'footprint_weighted_mean', the value a published "
            f"factor carries; accepted: statistics including it (got {spec.statistics})"
        )
    params = protocol_for(spec.protocol).prepare(ctx, spec)
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
        return round_public(tx, row)


def get_round(ctx: RoundContext, round_id: str, *, include_drafts: bool = True) -> RoundPublic:
    """One round; members (``include_drafts=False``) get ``NotFound`` for a draft."""
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.state == DRAFT and not include_drafts:
            raise NotFound(f"round {round_id!r} does not exist")
        return round_public(tx, row)


def list_rounds(ctx: RoundContext, state: str | None = None, *, include_drafts: bool = True) -> list[RoundPublic]:
    """Rounds, optionally in one state; drafts only when ``include_drafts``."""
    if state is not None and state not in ROUND_STATES:
        raise BadRequest(f"state {state!r}: accepted are {', '.join(ROUND_STATES)}")
    states = [state] if state else [s for s in ROUND_STATES if include_drafts or s != DRAFT]
    if not include_drafts and DRAFT in states:
        states.remove(DRAFT)
    with ctx.store.transaction() as tx:
        return [round_public(tx, r) for r in tx.list_rounds(states)]


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
        signed = row_spec(row)
        if row.state == DRAFT and now >= signed.spec.deadline:
            raise WindowClosed(
                f"round {round_id!r} has deadline {signed.spec.deadline.isoformat()}, already past; "
                "create a round with a later deadline"
            )
        row = tx.transition_round(round_id, [DRAFT], OPEN, now)
        payload: dict[str, Any] = {"round_id": round_id, "spec_hash": row.spec_hash, "signed_spec": row.signed_spec}
        if row.params:
            payload["params"] = row_params(row)
        translog.append(tx, ctx.key, translog.SPEC_PUBLISHED, payload, now)
        # A refusal rolls the opening back: the round stays a draft.
        protocol_for(row.protocol).on_open(tx, ctx, row, signed.spec, now)
        return round_public(tx, tx.get_round(round_id))


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
    digest = hashlib.sha256(body).hexdigest()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        protocol = protocol_for(row.protocol)
        contribution = protocol.parse_contribution(round_id, body)
        if row.state != OPEN:
            raise WindowClosed(f"round {round_id!r} is {row.state!r}; contributions are accepted while it is 'open'")
        spec = row_spec(row).spec
        if now >= spec.deadline:
            raise WindowClosed(f"round {round_id!r} closed at its deadline {spec.deadline.isoformat()}")
        protocol.check_contribution(row, spec, member, contribution)
        existing = tx.list_contributions(round_id)
        if any(other.member_id == member.id for other in existing):
            raise DuplicateContribution(
                f"member {member.fingerprint} already contributed to round {round_id!r}; one contribution per member counts"
            )
        if len(existing) >= spec.max_participants:
            raise Conflict(f"round {round_id!r} already holds max_participants = {spec.max_participants} contributions")
        protocol.check_against(round_id, contribution, existing)
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
        work = protocol_for(row.protocol).close(tx, ctx, row, row_spec(row).spec, now)
        result = round_public(tx, tx.get_round(round_id))
    if work is not None:
        ctx.spawn(work)
    return result


def cancel_round(ctx: RoundContext, round_id: str, reason: str = "cancelled by the association") -> RoundPublic:
    """Abort a round that has not ended; nothing it collected is ever aggregated.

    Raises
    ------
    InvalidTransition
        The round already ended.
    """
    abort_round(ctx, round_id, (DRAFT, *ACTIVE_STATES), reason, strict=True)
    return get_round(ctx, round_id)


# ------------------------------------------------------------------------------------- custodians


def custodian_key_for(ctx: RoundContext, round_id: str) -> Callable[[str], str | None]:
    """Fingerprint -> custodian verification key of a round (none for protocols without custodians)."""
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
    return protocol_for(row.protocol).custodian_keys(row).get


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
        return protocol_for(row.protocol).decryption_request(tx, row)


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
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
    return protocol_for(row.protocol).submit_partial(ctx, row, body)


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
        done[row.id] = protocol_for(row.protocol).resume(ctx, row)
    return done
