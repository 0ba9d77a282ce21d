"""Protocol 2, ``paillier``: members post encrypted contributions per disclosure stage; the custodians decrypt each stage's product.

The round spec names the custodians' key (``paillier.key_id``), which members pinned. Opening a
round signs and logs its roster (member fingerprint -> identity key): only those members may
contribute, and the custodians read the roster from the log. A round stays ``open`` while
contributions arrive (each is verified with its plaintext proofs, must be canonical JSON so its
logged hash identifies it, and is refused if it copies a ciphertext); closing it moves it to ``aggregating`` (or suppresses it at once when too few
contributed to ever be decrypted). The custodians fetch the :class:`DecryptionRequest`, and once
every custodian's partial decryption is stored the round is combined and decided. Contributions and
partials are persisted, so a restart carries on where it stopped.

A round is four encrypted sums over one cohort (``protocols.disclosure``). While ``open`` members
post the ``screen`` stage; once it is closed and decrypted, ``aggregator.round_outcome.record_stage``
decides it and, if the round goes on, the next stage opens: each cohort member reads
``GET /rounds/{id}/stage`` (the stage, its signed context, its slot count), posts its contribution
to ``/rounds/{id}/stages/{stage}/contributions`` within :data:`STAGE_WINDOW`, and when the whole
cohort has posted the custodians decrypt that stage. After the last stage, or a stop,
``conclude_staged`` publishes or suppresses. The round's :class:`~protocols.disclosure.StagedRound`
lives in its params (:data:`STAGED_PARAM`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final

from aggregator import translog
from aggregator.errors import (
    BadRequest,
    Conflict,
    DuplicateContribution,
    Forbidden,
    InvalidTransition,
    SpecRejected,
    Unauthorized,
    Unavailable,
    WindowClosed,
)
from aggregator.members import certified_members
from aggregator.round_context import AGGREGATING, OPEN, RoundContext, row_params, row_roster, row_spec
from aggregator.round_models import ContributionReceipt, DecryptionRequest, PartialReceipt, StageStatus, round_public
from aggregator.round_outcome import abort_round, conclude_staged, record_stage, suppress_round
from aggregator.round_protocol import RoundProtocol
from aggregator.store import ContributionRow, MemberRow, PartialDecryptionRow, RoundRow, Transaction
from keys import identity
from keys.errors import InvalidSignature
from protocols import paillier
from protocols.canonical import canonical_json
from protocols.disclosure import Stage, StageDecision, StagedRound, screen_layout
from protocols.paillier import spec_layout as paillier_layout
from protocols.roster import roster_log_payload, sign_roster
from protocols.spec import RoundSpec
from protocols.stats import check_disclosure

__all__ = [
    "STAGE_WINDOW",
    "PaillierProtocol",
    "effective_min",
    "paillier_layout",
    "read_public_key",
    "split_key",
    "stage_status",
    "submit_stage_contribution",
]


def read_public_key(path: str | os.PathLike[str]) -> paillier.SplitPublicKey:
    """The custodians' public key from the ceremony's ``paillier_public_key.json``.

    Raises
    ------
    Unavailable
        The file cannot be read or does not hold a Paillier public key; the message names it.
    """
    source = Path(path)
    try:
        return paillier.SplitPublicKey.from_dict(json.loads(source.read_text(encoding="utf-8")))
    except OSError as exc:
        raise Unavailable(f"{source}: cannot read the Paillier public key: {exc.strerror}") from None
    except (ValueError, paillier.PaillierError) as exc:
        raise Unavailable(f"{source}: not a Paillier public key file ({exc})") from None


def split_key(row: RoundRow) -> paillier.SplitPublicKey:
    """The round's Paillier public key, as stored when it was created."""
    return paillier.SplitPublicKey.from_dict(row_params(row)["paillier_public_key"])


def effective_min(spec: RoundSpec) -> int:
    """Fewest contributions the custodians will decrypt: the spec's minimum, never below their floor."""
    return max(spec.min_participants, paillier.MIN_PARTICIPANTS_FLOOR)


class PaillierProtocol(RoundProtocol):
    """``paillier`` rounds: contributions over HTTP, decryption by the key custodians."""

    name: ClassVar[str] = "paillier"

    def prepare(self, ctx: RoundContext, spec: RoundSpec) -> dict[str, Any]:
        """Require the custodians' key, large enough for the spec, and a packing layout that fits."""
        pk = ctx.paillier_public_key
        if pk is None:
            raise Unavailable(
                "no Paillier public key is configured; set PCF_AGG_PAILLIER_PUBLIC_KEY to the ceremony's "
                "paillier_public_key.json, or use protocol 'secagg'"
            )
        if spec.paillier.key_id != pk.key_id:
            raise SpecRejected(
                f"round spec {spec.round_id!r}: paillier.key_id {spec.paillier.key_id} is not the configured custodians' "
                f"key {pk.key_id}; accepted: the key id the custodians published"
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
        return {"paillier_public_key": pk.to_dict()}

    def on_open(self, tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime) -> None:
        """Sign and log the roster: the approved members (fingerprint -> identity key), who alone may contribute."""
        approved, certificates = certified_members(tx.list_members("approved"), ctx.authority_public_key, now)
        members = {m.fingerprint: m.identity_public_key for m in approved}
        signed = sign_roster(ctx.key, row.id, row.spec_hash, members, certificates)
        tx.set_round_params(row.id, json.dumps({**row_params(row), "roster": signed.model_dump(mode="json")}))
        translog.append(tx, ctx.key, translog.ROSTER, roster_log_payload(signed), now)

    def parse_contribution(self, round_id: str, body: bytes) -> paillier.SignedContribution:
        """A :class:`~protocols.paillier.SignedContribution` from its JSON (``BadRequest`` otherwise)."""
        try:
            doc = json.loads(body)
            contribution = paillier.SignedContribution.from_dict(doc)
        except (ValueError, paillier.MalformedMessage) as exc:
            raise BadRequest(
                f"contribution to round {round_id!r} is not a SignedContribution JSON object: {exc}"
            ) from None
        if canonical_json(doc) != body:  # the custodians match bodies to logged receipts by this hash
            raise BadRequest(
                f"contribution to round {round_id!r} is not canonical JSON (RFC 8785); accepted: "
                "protocols.canonical.canonical_json of SignedContribution.to_dict()"
            )
        return contribution

    def check_contribution(self, row: RoundRow, spec: RoundSpec, member: MemberRow, contribution: Any) -> None:
        """The member's own key, and a digest and signature that verify against the round's key."""
        assert isinstance(contribution, paillier.SignedContribution)
        round_id = row.id
        if contribution.sender != member.identity_public_key:
            raise Forbidden(
                f"contribution sender {contribution.sender[:16]}… is not the identity key of the signing member "
                f"{member.fingerprint}; members contribute under their own key"
            )
        roster = row_roster(row)
        if roster is not None and roster.roster.get(member.fingerprint) != member.identity_public_key:
            raise Forbidden(
                f"member {member.fingerprint} is not on the signed roster of round {round_id!r} (fixed when it opened)"
            )
        layout = paillier.slots_packing(spec, screen_layout(spec))  # while open, members post the screen stage
        try:
            paillier.verify_contribution(
                contribution, split_key(row), {member.identity_public_key}, round_id, layout.n_ciphertexts, SCREEN
            )
        except paillier.ContributionRejected as exc:
            raise BadRequest(f"contribution to round {round_id!r} rejected: {exc}") from None

    def check_against(self, round_id: str, contribution: Any, existing: list[ContributionRow]) -> None:
        """No ciphertext copied from a stored contribution (a replay under another member's signature)."""
        assert isinstance(contribution, paillier.SignedContribution)
        seen: set[int] = set()
        for other in existing:
            seen.update(paillier.SignedContribution.from_dict(json.loads(other.body)).ciphertexts)
        if any(ct in seen for ct in contribution.ciphertexts):
            raise BadRequest(f"contribution to round {round_id!r} copies a ciphertext of another contribution")

    def close(
        self, tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime
    ) -> Callable[[], None] | None:
        """open → aggregating (the screen stage waits for the custodians), or suppressed at once when too few contributed."""
        row = tx.transition_round(row.id, [OPEN], AGGREGATING, now)
        n = tx.count_contributions(row.id, SCREEN)
        if n < effective_min(spec):
            decision = check_disclosure(spec, n)
            message = (
                decision.message
                if decision.rule
                else f"{n} contribution(s); custodians decrypt only sets of at least {paillier.MIN_PARTICIPANTS_FLOOR}"
            )
            suppress_round(tx, ctx, row, decision.rule or "min_participants", message, n, now)
            return None
        _save_staged(tx, row, StagedRound(spec), None)
        return None

    def resume(self, ctx: RoundContext, row: RoundRow) -> str:
        """Contributions and partials are persisted: an aggregating round goes on with the stage it waits for."""
        if row.state != AGGREGATING:
            return row.state
        _finish(ctx, row.id)
        with ctx.store.transaction() as tx:
            row = tx.get_round(row.id)
        if row.state != AGGREGATING:
            return row.state
        stage = _staged(row).next_stage()
        return f"waiting for stage {stage}"

    def custodian_keys(self, row: RoundRow) -> dict[str, str]:
        """The custodians' signing keys listed in the round's Paillier public key."""
        return {identity.fingerprint(k): k for k in split_key(row).custodians}

    def decryption_request(self, tx: Transaction, row: RoundRow) -> DecryptionRequest:
        """The logged contributions of the stage the round waits for, once every cohort member posted it."""
        if row.state != AGGREGATING:
            raise InvalidTransition(f"round {row.id!r} is {row.state!r}; decryption is requested while 'aggregating'")
        spec = row_spec(row).spec
        staged = _staged(row)
        stage = _decrypting(tx, row, staged)
        return DecryptionRequest(
            round_id=row.id,
            spec_hash=row.spec_hash,
            key_id=split_key(row).key_id,
            min_participants=effective_min(spec),
            stage=str(stage),
            contributions=[json.loads(c.body) for c in tx.list_contributions(row.id, str(stage))],
            previous_partials=(
                [json.loads(p.body) for p in tx.list_partials(row.id, str(Stage.DOMINANCE))]
                if stage == Stage.VALUES else []
            ),
        )

    def submit_partial(self, ctx: RoundContext, row: RoundRow, body: bytes) -> PartialReceipt:
        """Verify and store one custodian's partial of the waiting stage; combine and decide once every custodian answered."""
        round_id = row.id
        try:
            partial = paillier.PartialDecryption.from_dict(json.loads(body))
        except (ValueError, paillier.MalformedMessage) as exc:
            raise BadRequest(
                f"partial decryption for round {round_id!r} is not a PartialDecryption JSON object: {exc}"
            ) from None
        now = ctx.clock()
        with ctx.store.transaction() as tx:
            row = tx.get_round(round_id)
            if row.state != AGGREGATING:
                raise InvalidTransition(
                    f"round {round_id!r} is {row.state!r}; partial decryptions are accepted while 'aggregating'"
                )
            pk = split_key(row)
            staged = _staged(row)
            stage = _decrypting(tx, row, staged)
            if partial.stage != stage:
                raise Conflict(
                    f"partial decryption for round {round_id!r} refused: it decrypts stage {partial.stage!r}, the round "
                    f"waits for stage {stage!s}"
                )
            _check_partial(tx, row, staged, stage, pk, partial)
            tx.add_partial(
                PartialDecryptionRow(
                    round_id=round_id, stage=str(stage), custodian=str(partial.custodian_index), body=body.decode(),
                    received_at=now,
                )
            )
            received = tx.count_partials(round_id, str(stage))
        expected = len(pk.custodians)
        if received >= expected:
            _finish(ctx, round_id)
        with ctx.store.transaction() as tx:
            state = round_public(tx, tx.get_round(round_id)).state
        return PartialReceipt(
            round_id=round_id,
            custodian_index=partial.custodian_index,
            received=received,
            expected=expected,
            state=state,
            stage=str(stage),
        )


# ------------------------------------------------------------------------------------------- stages

SCREEN: Final = str(Stage.SCREEN)
STAGE_WINDOW: Final = timedelta(hours=24)
"""How long the cohort has to post a stage after ``screen`` once it opens; a stage missing a member then aborts."""
STAGED_PARAM: Final = "staged"
"""Key of the round's ``StagedRound.to_dict()`` in its params (sums decided so far, cohort, stop)."""
DEADLINE_PARAM: Final = "stage_deadline"
_FINISH_LOCK = threading.Lock()
"""One stage decision at a time in this process: two custodians' last partials must not record a stage twice."""


def _staged(row: RoundRow) -> StagedRound:
    return StagedRound.from_dict(row_spec(row).spec, row_params(row).get(STAGED_PARAM) or {})


def _save_staged(tx: Transaction, row: RoundRow, staged: StagedRound, deadline: datetime | None) -> None:
    params = row_params(tx.get_round(row.id))  # fresh: record_stage keeps its openings there
    params[STAGED_PARAM] = staged.to_dict()
    params[DEADLINE_PARAM] = deadline.isoformat() if deadline is not None else None
    tx.set_round_params(row.id, json.dumps(params))


def _stage_deadline(row: RoundRow) -> datetime | None:
    raw = row_params(row).get(DEADLINE_PARAM)
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def _contributors(rows: list[ContributionRow]) -> list[str]:
    return [paillier.SignedContribution.from_dict(json.loads(c.body)).sender for c in rows]


def _decrypting(tx: Transaction, row: RoundRow, staged: StagedRound) -> Stage:
    """The stage an aggregating round waits to have decrypted; ``InvalidTransition`` while its cohort still posts."""
    stage = staged.next_stage()
    if stage is None:
        raise InvalidTransition(f"round {row.id!r}: every stage is decided; nothing is left to decrypt")
    if stage != Stage.SCREEN:
        got = tx.count_contributions(row.id, str(stage))
        if got < len(staged.cohort):
            raise InvalidTransition(
                f"round {row.id!r} waits for the cohort's {stage} contributions ({got} of {len(staged.cohort)}); "
                "a stage is decrypted once every cohort member posted it"
            )
    return stage


def _stage_layout_packing(staged: StagedRound, stage: Stage) -> paillier.PackingLayout:
    return paillier.slots_packing(staged.spec, staged.layout(stage))


def _abort_if_late(ctx: RoundContext, row: RoundRow, staged: StagedRound, now: datetime) -> bool:
    """Abort an aggregating round whose stage after ``screen`` missed its window without the whole cohort."""
    stage, deadline = staged.next_stage(), _stage_deadline(row)
    if row.state != AGGREGATING or stage in (None, Stage.SCREEN) or deadline is None or now < deadline:
        return False
    with ctx.store.transaction() as tx:
        got = tx.count_contributions(row.id, str(stage))
    if got >= len(staged.cohort):
        return False
    abort_round(
        ctx, row.id, (AGGREGATING,),
        f"stage {stage}: {got} of the cohort's {len(staged.cohort)} members contributed by {deadline.isoformat()}; "
        "every stage needs the whole cohort",
    )
    return True


def stage_status(ctx: RoundContext, round_id: str, member: MemberRow) -> StageStatus:
    """What the round waits for from its members: the stage, whether it takes contributions, its signed context.

    Raises
    ------
    Conflict
        Not a ``paillier`` round.
    Forbidden
        The stage context is asked by a member outside the screen's cohort.
    """
    now = ctx.clock()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
    if row.protocol != PaillierProtocol.name:
        raise Conflict(f"round {round_id!r} uses protocol {row.protocol!r}; only 'paillier' rounds have member stages")
    staged = _staged(row) if row.state == AGGREGATING else None
    if staged is not None and _abort_if_late(ctx, row, staged, now):
        with ctx.store.transaction() as tx:
            row = tx.get_round(round_id)
        staged = None
    spec = row_spec(row).spec
    ended = StageStatus(round_id=round_id, state=row.state, decision=row.decision, stage=None, accepting=False)  # type: ignore[arg-type]  # a RoundState string from the row
    with ctx.store.transaction() as tx:
        if row.state == OPEN:
            return ended.model_copy(update={
                "stage": SCREEN, "accepting": now < spec.deadline, "slots": len(screen_layout(spec)),
                "contributed": tx.count_contributions(round_id, SCREEN), "deadline": spec.deadline})
        if staged is None or (stage := staged.next_stage()) is None:
            return ended
        got = tx.count_contributions(round_id, str(stage))
    if stage == Stage.SCREEN:
        return ended.model_copy(update={
            "stage": SCREEN, "slots": len(screen_layout(spec)), "contributed": got, "cohort": 0,
            "deadline": spec.deadline})
    if member.identity_public_key not in staged.cohort:
        raise Forbidden(f"member {member.fingerprint} is not in the cohort of round {round_id!r}; its stages are the cohort's")
    return ended.model_copy(update={
        "stage": str(stage), "accepting": got < len(staged.cohort), "slots": len(staged.layout(stage)),
        "context": staged.context(ctx.key, stage), "contributed": got, "cohort": len(staged.cohort),
        "deadline": _stage_deadline(row)})


def submit_stage_contribution(
    ctx: RoundContext,
    round_id: str,
    stage: str,
    member: MemberRow,
    body: bytes,
    method: str,
    path: str,
    timestamp: str,
    node_signature: str,
) -> ContributionReceipt:
    """Accept one cohort member's signed encrypted contribution to the stage an aggregating round collects.

    Like ``aggregator.rounds.submit_contribution`` for the screen: the receipt (with the member's
    request signature over the body's hash and the stage's path) goes into the log.

    Raises
    ------
    BadRequest
        Malformed, for another stage, not verifying against the stage's layout, or copying a ciphertext.
    Forbidden
        Not the member's own, or the member is not in the screen's cohort.
    WindowClosed
        The round does not collect ``stage`` (another stage, ended, or the stage window passed).
    DuplicateContribution
        The member already posted this stage.
    """
    now = ctx.clock()
    digest = hashlib.sha256(body).hexdigest()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
    if row.protocol != PaillierProtocol.name:
        raise Conflict(f"round {round_id!r} uses protocol {row.protocol!r}; only 'paillier' rounds take stage posts")
    protocol = PaillierProtocol()
    contribution = protocol.parse_contribution(round_id, body)
    if row.state == AGGREGATING and _abort_if_late(ctx, row, _staged(row), now):
        raise WindowClosed(f"round {round_id!r}: the window of stage {stage} passed without the whole cohort; aborted")
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        staged = _staged(row) if row.state == AGGREGATING else None
        waiting = staged.next_stage() if staged is not None else None
        if staged is None or waiting in (None, Stage.SCREEN) or str(waiting) != stage:
            raise WindowClosed(
                f"round {round_id!r} ({row.state}) does not collect stage {stage!r} now"
                + (f"; it waits for stage {waiting}" if waiting is not None else "")
            )
        if contribution.sender != member.identity_public_key:
            raise Forbidden(
                f"contribution sender {contribution.sender[:16]}… is not the identity key of the signing member "
                f"{member.fingerprint}; members contribute under their own key"
            )
        if member.identity_public_key not in staged.cohort:
            raise Forbidden(f"member {member.fingerprint} is not in the screen's cohort of round {round_id!r}")
        try:
            paillier.verify_contribution(
                contribution, split_key(row), set(staged.cohort), round_id,
                _stage_layout_packing(staged, waiting).n_ciphertexts, stage,
            )
        except paillier.ContributionRejected as exc:
            raise BadRequest(f"contribution to stage {stage} of round {round_id!r} rejected: {exc}") from None
        if any(c.member_id == member.id for c in tx.list_contributions(round_id, stage)):
            raise DuplicateContribution(
                f"member {member.fingerprint} already contributed to stage {stage} of round {round_id!r}"
            )
        protocol.check_against(round_id, contribution, tx.list_contributions(round_id))
        tx.transition_round(round_id, [AGGREGATING], AGGREGATING, now)  # locks the round row, like the screen's post
        assert member.id is not None
        tx.add_contribution(ContributionRow(round_id=round_id, stage=stage, member_id=member.id,
                                            contribution_hash=digest, body=body.decode(), received_at=now))
        entry = translog.append(
            tx, ctx.key, translog.CONTRIBUTION_RECEIPT,
            {"round_id": round_id, "stage": stage, "member": member.fingerprint, "contribution_hash": digest,
             "method": method.upper(), "path": path, "timestamp": timestamp, "node_signature": node_signature},
            now,
        )
    return ContributionReceipt(round_id=round_id, member=member.fingerprint, contribution_hash=digest, seq=entry.seq,
                               entry_hash=entry.entry_hash, aggregator_signature=entry.signature, received_at=now)


def _check_partial(
    tx: Transaction, row: RoundRow, staged: StagedRound, stage: Stage, pk: paillier.SplitPublicKey,
    partial: paillier.PartialDecryption,
) -> None:
    round_id = row.id
    if not 0 <= partial.custodian_index < len(pk.custodians):
        raise Unauthorized(
            f"custodian_index {partial.custodian_index} is not a custodian of round {round_id!r}'s key "
            f"(0..{len(pk.custodians) - 1})"
        )
    try:
        identity.verify(pk.custodians[partial.custodian_index], partial.signed_bytes(), partial.signature)
    except InvalidSignature:
        raise Unauthorized(
            f"partial decryption for round {round_id!r}: the signature of custodian {partial.custodian_index} "
            "does not verify"
        ) from None
    digests = sorted(
        paillier.SignedContribution.from_dict(json.loads(c.body)).digest
        for c in tx.list_contributions(round_id, str(stage))
    )
    n_ciphertexts = _stage_layout_packing(staged, stage).n_ciphertexts
    problem = None
    if partial.round_id != round_id or partial.key_id != pk.key_id:
        problem = (
            f"it is for round {partial.round_id!r} and key {partial.key_id[:16]}, "
            f"expected {round_id!r} and {pk.key_id[:16]}"
        )
    elif sorted(partial.contribution_digests) != digests:
        problem = f"it covers another set of contributions than the round's {stage} contributions"
    elif len(partial.partials) != n_ciphertexts:
        problem = f"it has {len(partial.partials)} values, the {stage} layout {n_ciphertexts}"
    if problem:
        raise Conflict(f"partial decryption for round {round_id!r} refused: {problem}")


def _finish(ctx: RoundContext, round_id: str) -> None:
    """Combine the waiting stage once every custodian answered, record it, and open the next stage or conclude."""
    with _FINISH_LOCK:
        with ctx.store.transaction() as tx:
            row = tx.get_round(round_id)
            if row.state != AGGREGATING:
                return
            staged = _staged(row)
            stage = staged.next_stage()
            if stage is None:
                return
            pk = split_key(row)
            contributions = tx.list_contributions(round_id, str(stage))
            partials = [paillier.PartialDecryption.from_dict(json.loads(p.body))
                        for p in tx.list_partials(round_id, str(stage))]
            every = [c.contribution_hash for c in tx.list_contributions(round_id)]
        if len(partials) < len(pk.custodians):
            return
        try:
            summed = paillier.combine(partials, pk, _stage_layout_packing(staged, stage), len(contributions))
        except (paillier.CombineFailed, paillier.LayoutError) as exc:
            abort_round(ctx, round_id, (AGGREGATING,), f"decryption of stage {stage} failed: {exc}")
            return
        def persist(tx: Transaction, recorded: StagedRound, decided: StageDecision) -> None:
            # in the stage's own transaction: a crash can never record a stage without saving it
            following = recorded.next_stage() if decided.proceed else None
            deadline = ctx.clock() + STAGE_WINDOW if following is not None else None
            _save_staged(tx, tx.get_round(round_id), recorded, deadline)

        decision = record_stage(ctx, round_id, staged, stage, summed, _contributors(contributions), persist=persist)
        if decision.rule == "aborted":
            return
        following = staged.next_stage() if decision.proceed else None
        if following is None:
            conclude_staged(ctx, round_id, staged, every)
