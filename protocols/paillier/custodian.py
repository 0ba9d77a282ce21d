"""What a custodian runs: re-verify a round's contributions, recompute their product, partially decrypt; and combine.

The custodian never decrypts a ciphertext it is handed. :func:`decrypt_logged_round` takes the
round's contributions from the verified transparency log (``protocols.paillier.round_log``);
:func:`custodian_partial_decrypt` checks every signed contribution and its plaintext proofs,
requires distinct roster members and at least ``min_participants`` of them, recomputes the
product itself, and answers once per round (its ledger). Anyone holding every custodian's
partial then runs :func:`combine`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keys.identity import sign
from protocols.certificates import RevocationList
from protocols.disclosure import Stage, cell_passes, cells_of, count_layout, read_counts
from protocols.errors import AggregationError
from protocols.paillier._wire import mulmod, powmod, verifies
from protocols.paillier.contribute import verify_contribution
from protocols.paillier.errors import CombineFailed, ContributionRejected, CustodianRefused, MalformedMessage
from protocols.paillier.keys import KeyShare, SplitPublicKey
from protocols.paillier.messages import (
    SCREEN_STAGE,
    VALUES_STAGE,
    PartialDecryption,
    SignedContribution,
    contribution_set_digest,
    product_digest,
)
from protocols.paillier.packing import PackingLayout, slots_packing, unpack
from protocols.paillier.round_log import logged_round
from protocols.translog import LogEntry

if TYPE_CHECKING:
    from protocols.spec import RoundSpec

__all__ = [
    "MIN_PARTICIPANTS_FLOOR",
    "check_dominance",
    "combine",
    "custodian_partial_decrypt",
    "decrypt_logged_round",
    "ledger_key",
]

MIN_PARTICIPANTS_FLOOR = 3
"""A custodian never decrypts fewer contributions: with two, each firm learns the other's value."""


def ledger_key(round_id: str, stage: str = SCREEN_STAGE) -> str:
    """The ledger entry of one stage of a round: the round id for ``screen`` (as ledgers before stages hold), else ``id/stage``."""
    return round_id if stage == SCREEN_STAGE else f"{round_id}/{stage}"


def _refuse_a_second_decryption(ledger: Mapping[str, str], round_id: str, stage: str = SCREEN_STAGE) -> None:
    previous = ledger.get(ledger_key(round_id, stage))
    if previous is not None:
        raise CustodianRefused(
            f"round {round_id!r}, stage {stage}, was already decrypted by this custodian (contribution set "
            f"{previous[:16]}); a custodian answers once per stage, since a second set would reveal their "
            "difference; resend the partial written the first time"
        )


def custodian_partial_decrypt(
    share: KeyShare,
    public_key: SplitPublicKey,
    contributions: Sequence[SignedContribution],
    roster: Collection[str],
    min_participants: int,
    round_id: str,
    *,
    ledger: MutableMapping[str, str],
    stage: str = SCREEN_STAGE,
) -> PartialDecryption:
    """Release this custodian's partial decryption of one stage of a round, if and only if it is safe.

    The custodian never decrypts a ciphertext it is handed: it verifies every logged
    contribution, recomputes their product itself, and decrypts that.

    Parameters
    ----------
    share
        This custodian's key share.
    public_key
        The custodian's own trusted copy of the public key.
    contributions
        The logged, signed contributions of the round.
    roster
        The custodian's own trusted copy of the round's member keys (``keys.identity.public_key_b64``); never
        take it from the aggregator's request.
    min_participants
        Fewest distinct members whose sum may be revealed; at least :data:`MIN_PARTICIPANTS_FLOOR`.
    round_id
        The round being decrypted.
    ledger
        :func:`ledger_key` ``→ set digest`` of the stages this custodian already decrypted; MUST be
        persisted by the caller. A stage in it is refused, whatever set is asked for (a custodian
        answers once per stage); on success the entry is recorded here before the partial is returned.
    stage
        The disclosure stage decrypted; every contribution must be for it.

    Returns
    -------
    PartialDecryption
        Signed with the custodian's key.

    Raises
    ------
    CustodianRefused
        Fewer than ``min_participants`` contributions, a bad signature or digest, a sender not on
        the roster, a duplicated sender or ciphertext, a contribution for another round or key,
        inconsistent ciphertext counts, a missing or invalid plaintext proof, or a round already decrypted.
    """
    if share.key_id != public_key.key_id:
        raise CustodianRefused(f"share belongs to key {share.key_id[:16]}, request uses key {public_key.key_id[:16]}")
    if not 0 <= share.index < len(public_key.custodians):
        raise CustodianRefused(f"share index {share.index} is not a custodian of this key")
    _refuse_a_second_decryption(ledger, round_id, stage)
    if min_participants < MIN_PARTICIPANTS_FLOOR:
        raise CustodianRefused(f"min_participants {min_participants} is below the floor of {MIN_PARTICIPANTS_FLOOR}")
    if len(contributions) < min_participants:
        raise CustodianRefused(
            f"round {round_id!r}: {len(contributions)} contribution(s), "
            f"at least {min_participants} distinct members required"
        )
    n_ct = len(contributions[0].ciphertexts)
    senders: set[str] = set()
    digests: set[str] = set()
    seen_ct: set[int] = set()
    for c in contributions:
        try:
            verify_contribution(c, public_key, roster, round_id, n_ct, stage)
        except ContributionRejected as exc:
            raise CustodianRefused(str(exc)) from None
        if c.sender in senders:
            raise CustodianRefused(f"round {round_id!r}: sender {c.sender[:16]} appears more than once")
        if c.digest in digests:
            raise CustodianRefused(f"round {round_id!r}: contribution {c.digest[:16]} appears more than once")
        if any(ct in seen_ct for ct in c.ciphertexts):
            raise CustodianRefused(
                f"round {round_id!r}: contribution {c.digest[:16]} copies another member's ciphertext"
            )
        senders.add(c.sender)
        digests.add(c.digest)
        seen_ct.update(c.ciphertexts)
    set_digest = contribution_set_digest(digests)
    n2 = public_key.nsquare
    product = list(contributions[0].ciphertexts)
    for c in contributions[1:]:
        product = [mulmod(a, b, n2) for a, b in zip(product, c.ciphertexts, strict=True)]
    try:
        partials = tuple(powmod(ct, share.exponent, n2) for ct in product)
    except ZeroDivisionError:  # a negative share needs ct invertible mod n²
        raise CustodianRefused(f"round {round_id!r}: a product ciphertext is not invertible mod n²") from None
    unsigned = PartialDecryption(
        round_id=round_id,
        key_id=public_key.key_id,
        custodian_index=share.index,
        contribution_digests=tuple(sorted(digests)),
        product_digest=product_digest(public_key, product),
        partials=partials,
        signature="",
        stage=stage,
    )
    ledger[ledger_key(round_id, stage)] = set_digest
    return replace(unsigned, signature=sign(share.signing_key, unsigned.signed_bytes()))


def decrypt_logged_round(
    share: KeyShare,
    public_key: SplitPublicKey,
    round_id: str,
    *,
    log: Sequence[LogEntry],
    aggregator_key: str,
    bodies: Sequence[Mapping[str, Any]],
    min_participants: int,
    ledger: MutableMapping[str, str],
    authority_key: str | None = None,
    revocations: RevocationList | None = None,
    now: datetime | None = None,
    stage: str | None = None,
    previous_partials: Sequence[Mapping[str, Any]] = (),
) -> PartialDecryption:
    """A custodian's partial decryption of the stage the log shows the round waiting for: every contribution logged for it.

    The spec, the roster, the stage and its contributions are taken from the verified log
    (:func:`~protocols.paillier.round_log.logged_round`), never from a list the aggregator hands
    over; the minimum is the larger of the signed spec's ``min_participants`` and ``min_participants``.
    ``stage``, when given, must be the stage the log shows (the partial's ``stage`` says which it is).

    Before the ``values`` stage, the first whose sums are over the components, the custodian does
    not take the log's word that the dominance stage passed: from ``previous_partials`` (every
    custodian's signed partial of the dominance stage, as the aggregator stored them) it combines
    the two counts itself, over the contribution set its own ledger recorded for that stage, and
    refuses unless they pass the p %-rule (:func:`check_dominance`).

    Raises
    ------
    CustodianRefused
        See :func:`~protocols.paillier.round_log.logged_round`, :func:`custodian_partial_decrypt`
        and :func:`check_dominance`.
    """
    if stage is not None:
        _refuse_a_second_decryption(ledger, round_id, stage)  # before any work: whatever the log now says
    record = logged_round(log, aggregator_key, round_id, bodies, public_key, authority_key=authority_key,
                          revocations=revocations, now=now, stage=stage)
    if record.stage == VALUES_STAGE:
        check_dominance(record.spec, public_key, previous_partials, ledger, len(record.contributions))
    floor = max(min_participants, record.spec.min_participants)
    return custodian_partial_decrypt(
        share, public_key, record.contributions, frozenset(record.members.values()), floor, round_id, ledger=ledger,
        stage=record.stage,
    )




def check_dominance(
    spec: RoundSpec,
    public_key: SplitPublicKey,
    partials: Sequence[Mapping[str, Any]],
    ledger: Mapping[str, str],
    n: int,
) -> None:
    """Refuse unless the dominance stage's counts, combined by this custodian, pass the p %-rule.

    ``partials`` are every custodian's signed partial decryption of the round's dominance stage;
    each must be over the contribution set this custodian's own ledger recorded for that stage
    (so over the product it computed itself), and together they give the stage's two counts
    ``b`` and ``m`` (``protocols.disclosure``), which must lie in ``0..n`` and pass
    (``Σb = 0`` or ``Σm >= 3``). The custodian learns those two integers and nothing else.

    Raises
    ------
    CustodianRefused
        No partials, partials for another set or stage, partials that do not combine, or counts
        that fail the rule: the components' sums are never decrypted for such a round.
    """
    round_id = spec.round_id
    where = f"round {round_id!r}, before the values stage"
    decrypted = ledger.get(ledger_key(round_id, str(Stage.DOMINANCE)))
    if decrypted is None:
        raise CustodianRefused(f"{where}: this custodian never decrypted the dominance stage, so it cannot check it")
    if not partials:
        raise CustodianRefused(
            f"{where}: the dominance stage's partial decryptions were not handed over; a custodian checks the p %-rule's "
            "counts itself before any sum over the components is decrypted"
        )
    try:
        parsed = [PartialDecryption.from_dict(p) for p in partials]
    except MalformedMessage as exc:
        raise CustodianRefused(f"{where}: a dominance partial is malformed ({exc})") from None
    for p in parsed:
        if p.round_id != round_id or p.stage != str(Stage.DOMINANCE) or p.set_digest != decrypted:
            raise CustodianRefused(
                f"{where}: a partial handed over as the dominance stage's is for round {p.round_id!r}, stage {p.stage}, "
                f"or another contribution set than the one this custodian decrypted ({decrypted[:16]})"
            )
    cells = cells_of(spec, Stage.DOMINANCE, set(), [])
    try:
        summed = combine(parsed, public_key, slots_packing(spec, count_layout(cells)), n)
        counts = read_counts(cells, summed, n, p=spec.p_rule)
    except (CombineFailed, AggregationError) as exc:
        raise CustodianRefused(f"{where}: the dominance stage's partials do not give its counts ({exc})") from None
    failed = [c for c in counts if not cell_passes(c.b, c.m)]
    if failed:
        c = failed[0]
        raise CustodianRefused(
            f"{where}: the dominance stage's counts for {c.cell} (b = {c.b}, m = {c.m}) fail the p %-rule, whatever "
            "the log says; no sum over the components is decrypted for this round"
        )


def combine(
    partials: Sequence[PartialDecryption],
    public_key: SplitPublicKey,
    layout: PackingLayout,
    n_participants: int,
) -> list[int]:
    """Multiply every custodian's partials and decode the slot sums.

    Parameters
    ----------
    partials
        One partial decryption from each custodian of ``public_key`` (n-of-n).
    public_key
        The round's key (its custodian list verifies the signatures).
    layout
        The round's layout.
    n_participants
        Number of contributions summed; must equal the number the custodians decrypted.

    Returns
    -------
    list[int]
        The exact per-slot sums of the contributions.

    Raises
    ------
    CombineFailed
        A custodian missing or repeated, a bad signature, partials over different rounds,
        contribution sets or products, or a result that is not a valid plaintext.
    """
    k = len(public_key.custodians)
    indices = sorted(p.custodian_index for p in partials)
    if indices != list(range(k)):
        raise CombineFailed(f"expected one partial from each of the {k} custodians, got indices {indices}")
    first = partials[0]
    for p in partials:
        if not verifies(public_key.custodians[p.custodian_index], p.signed_bytes(), p.signature):
            raise CombineFailed(f"partial of custodian {p.custodian_index}: bad signature")
        if (p.round_id, p.stage, p.key_id, p.set_digest, p.product_digest) != (
            first.round_id,
            first.stage,
            first.key_id,
            first.set_digest,
            first.product_digest,
        ):
            raise CombineFailed(
                f"partial of custodian {p.custodian_index} covers another round, stage, key, contribution set or product"
            )
        if len(p.partials) != layout.n_ciphertexts:
            raise CombineFailed(
                f"partial of custodian {p.custodian_index}: {len(p.partials)} values, layout has {layout.n_ciphertexts}"
            )
    if first.key_id != public_key.key_id:
        raise CombineFailed(f"partials are for key {first.key_id[:16]}, not {public_key.key_id[:16]}")
    if len(first.contribution_digests) != n_participants:
        raise CombineFailed(
            f"custodians decrypted {len(first.contribution_digests)} contributions, expected {n_participants}"
        )
    n, n2 = public_key.n, public_key.nsquare
    plaintexts: list[int] = []
    for j in range(layout.n_ciphertexts):
        x = 1
        for p in partials:
            x = mulmod(x, p.partials[j], n2)
        if (x - 1) % n:
            raise CombineFailed(f"ciphertext {j}: combined partials are not 1 mod n; a partial is wrong")
        plaintexts.append((x - 1) // n)
    return unpack(plaintexts, layout, n_participants)
