"""Protocol 2, ``paillier``: members post encrypted contributions in a window; the custodians decrypt the product.

The round spec names the custodians' key (``paillier.key_id``), which members pinned. Opening a
round signs and logs its roster (member fingerprint -> identity key): only those members may
contribute, and the custodians read the roster from the log. A round stays ``open`` while
contributions arrive (each is verified with its plaintext proofs, must be canonical JSON so its
logged hash identifies it, and is refused if it copies a ciphertext); closing it moves it to ``aggregating`` (or suppresses it at once when too few
contributed to ever be decrypted). The custodians fetch the :class:`DecryptionRequest`, and once
every custodian's partial decryption is stored the round is combined and decided. Contributions and
partials are persisted, so a restart carries on where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from aggregator import translog
from aggregator.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidTransition,
    SpecRejected,
    Unauthorized,
    Unavailable,
)
from aggregator.members import certified_members
from aggregator.round_context import AGGREGATING, OPEN, RoundContext, row_params, row_roster, row_spec
from aggregator.round_models import DecryptionRequest, PartialReceipt, round_public
from aggregator.round_outcome import abort_round, conclude_round, suppress_round
from aggregator.round_protocol import RoundProtocol
from aggregator.store import ContributionRow, MemberRow, PartialDecryptionRow, RoundRow, Transaction
from keys import identity
from keys.errors import InvalidSignature
from protocols import paillier
from protocols.canonical import canonical_json
from protocols.paillier import spec_layout as paillier_layout
from protocols.roster import roster_log_payload, sign_roster
from protocols.spec import RoundSpec
from protocols.stats import check_disclosure

__all__ = ["PaillierProtocol", "effective_min", "paillier_layout", "read_public_key", "split_key"]


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
        layout = paillier_layout(spec)
        try:
            paillier.verify_contribution(
                contribution, split_key(row), {member.identity_public_key}, round_id, layout.n_ciphertexts
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
        """open → aggregating, or suppressed at once when too few contributed to ever be decrypted."""
        row = tx.transition_round(row.id, [OPEN], AGGREGATING, now)
        n = tx.count_contributions(row.id)
        if n < effective_min(spec):
            decision = check_disclosure(spec, n, 0, 0)
            message = (
                decision.message
                if decision.rule
                else f"{n} contribution(s); custodians decrypt only sets of at least {paillier.MIN_PARTICIPANTS_FLOOR}"
            )
            suppress_round(tx, ctx, row, decision.rule or "min_participants", message, n, now)
        return None

    def resume(self, ctx: RoundContext, row: RoundRow) -> str:
        """Contributions and partials are persisted: an aggregating round is combined if every custodian answered."""
        if row.state != AGGREGATING:
            return row.state
        _finish(ctx, row.id)
        with ctx.store.transaction() as tx:
            state = tx.get_round(row.id).state
        return "waiting for custodians" if state == AGGREGATING else state

    def custodian_keys(self, row: RoundRow) -> dict[str, str]:
        """The custodians' signing keys listed in the round's Paillier public key."""
        return {identity.fingerprint(k): k for k in split_key(row).custodians}

    def decryption_request(self, tx: Transaction, row: RoundRow) -> DecryptionRequest:
        """The logged contributions, while the round is aggregating."""
        if row.state != AGGREGATING:
            raise InvalidTransition(f"round {row.id!r} is {row.state!r}; decryption is requested while 'aggregating'")
        spec = row_spec(row).spec
        return DecryptionRequest(
            round_id=row.id,
            spec_hash=row.spec_hash,
            key_id=split_key(row).key_id,
            min_participants=effective_min(spec),
            contributions=[json.loads(c.body) for c in tx.list_contributions(row.id)],
        )

    def submit_partial(self, ctx: RoundContext, row: RoundRow, body: bytes) -> PartialReceipt:
        """Verify and store one custodian's partial; combine and decide once every custodian answered."""
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
            spec = row_spec(row).spec
            _check_partial(tx, row, spec, pk, partial)
            tx.add_partial(
                PartialDecryptionRow(
                    round_id=round_id, custodian=str(partial.custodian_index), body=body.decode(), received_at=now
                )
            )
            received = tx.count_partials(round_id)
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
        )


def _check_partial(
    tx: Transaction, row: RoundRow, spec: RoundSpec, pk: paillier.SplitPublicKey, partial: paillier.PartialDecryption
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
        paillier.SignedContribution.from_dict(json.loads(c.body)).digest for c in tx.list_contributions(round_id)
    )
    n_ciphertexts = paillier_layout(spec).n_ciphertexts
    problem = None
    if partial.round_id != round_id or partial.key_id != pk.key_id:
        problem = (
            f"it is for round {partial.round_id!r} and key {partial.key_id[:16]}, "
            f"expected {round_id!r} and {pk.key_id[:16]}"
        )
    elif sorted(partial.contribution_digests) != digests:
        problem = "it covers another set of contributions than the round's"
    elif len(partial.partials) != n_ciphertexts:
        problem = f"it has {len(partial.partials)} values, the layout {n_ciphertexts}"
    if problem:
        raise Conflict(f"partial decryption for round {round_id!r} refused: {problem}")


def _finish(ctx: RoundContext, round_id: str) -> None:
    """Combine the partials of an aggregating round once every custodian answered, then decide it."""
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.state != AGGREGATING:
            return
        pk = split_key(row)
        spec = row_spec(row).spec
        contributions = tx.list_contributions(round_id)
        partials = [paillier.PartialDecryption.from_dict(json.loads(p.body)) for p in tx.list_partials(round_id)]
    if len(partials) < len(pk.custodians):
        return
    n = len(contributions)
    try:
        summed = paillier.combine(partials, pk, paillier_layout(spec), n)
    except (paillier.CombineFailed, paillier.LayoutError) as exc:
        abort_round(ctx, round_id, (AGGREGATING,), f"decryption failed: {exc}")
        return
    conclude_round(ctx, round_id, spec, summed, n, [c.contribution_hash for c in contributions])
