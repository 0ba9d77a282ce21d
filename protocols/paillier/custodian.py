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
from typing import Any

from keys.identity import sign
from protocols.certificates import RevocationList
from protocols.paillier._wire import mulmod, powmod, verifies
from protocols.paillier.contribute import verify_contribution
from protocols.paillier.errors import CombineFailed, ContributionRejected, CustodianRefused
from protocols.paillier.keys import KeyShare, SplitPublicKey
from protocols.paillier.messages import (
    PartialDecryption,
    SignedContribution,
    contribution_set_digest,
    product_digest,
)
from protocols.paillier.packing import PackingLayout, unpack
from protocols.paillier.round_log import logged_round
from protocols.translog import LogEntry

__all__ = ["MIN_PARTICIPANTS_FLOOR", "combine", "custodian_partial_decrypt", "decrypt_logged_round"]

MIN_PARTICIPANTS_FLOOR = 3
"""A custodian never decrypts fewer contributions: with two, each firm learns the other's value."""


def _refuse_a_second_decryption(ledger: Mapping[str, str], round_id: str) -> None:
    previous = ledger.get(round_id)
    if previous is not None:
        raise CustodianRefused(
            f"round {round_id!r} was already decrypted by this custodian (contribution set {previous[:16]}); "
            "a custodian answers once per round, since a second set would reveal their difference; "
            "resend the partial written the first time"
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
) -> PartialDecryption:
    """Release this custodian's partial decryption of a round, if and only if it is safe.

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
        ``round_id → set digest`` of rounds this custodian already decrypted; MUST be persisted by
        the caller. A round in it is refused, whatever set is asked for (a custodian answers once
        per round); on success the entry is recorded here before the partial is returned.

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
    _refuse_a_second_decryption(ledger, round_id)
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
            verify_contribution(c, public_key, roster, round_id, n_ct)
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
    )
    ledger[round_id] = set_digest
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
) -> PartialDecryption:
    """A custodian's partial decryption of the product of every contribution the log records for the round.

    The spec, the roster and the contributions are taken from the verified log
    (:func:`~protocols.paillier.round_log.logged_round`), never from a list the aggregator hands
    over; the minimum is the larger of the signed spec's ``min_participants`` and ``min_participants``.

    Raises
    ------
    CustodianRefused
        See :func:`~protocols.paillier.round_log.logged_round` and :func:`custodian_partial_decrypt`.
    """
    _refuse_a_second_decryption(ledger, round_id)  # before any work: whatever the log now says
    record = logged_round(log, aggregator_key, round_id, bodies, public_key, authority_key=authority_key,
                          revocations=revocations, now=now)
    floor = max(min_participants, record.spec.min_participants)
    return custodian_partial_decrypt(
        share, public_key, record.contributions, frozenset(record.members.values()), floor, round_id, ledger=ledger
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
        if (p.round_id, p.key_id, p.set_digest, p.product_digest) != (
            first.round_id,
            first.key_id,
            first.set_digest,
            first.product_digest,
        ):
            raise CombineFailed(
                f"partial of custodian {p.custodian_index} covers another round, key, contribution set or product"
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
