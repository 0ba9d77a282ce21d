"""What a custodian decrypts: every contribution the transparency log records for a round, checked by the custodian itself.

The custodian trusts no list the aggregator hands over. From the log (verified against the
aggregator key the custodian pinned) it takes the round's signed spec (``spec_published``), the
signed roster (``roster``) and every ``contribution_receipt``; each receipt carries the member's own
request signature over the SHA-256 of the body it sent. The contribution bodies the aggregator
serves are matched to those receipts by that hash (bodies are canonical JSON,
``protocols.canonical.canonical_json``): a receipt without its body, a body without a receipt, a
member outside the roster or a member with two receipts refuses the whole round. What is left is
exactly the set of contributions the members themselves signed for the round, which
:func:`~protocols.paillier.custodian_partial_decrypt` then re-verifies and multiplies.

A round is decrypted one disclosure stage at a time (``protocols.disclosure``): the stage is the
first the log has no ``stage`` entry for, and only if every earlier ``stage`` entry decided
``proceed``; the receipts counted are those of that stage (the member-signed request path names
it, :func:`contribution_path`), and after ``screen`` they must come from exactly the screen's
members. So a round the dominance rule stopped never has its component sums decrypted, whatever
the aggregator asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keys import identity
from protocols.auth import request_message
from protocols.canonical import CanonicalError, canonical_json
from protocols.certificates import CertificateRejected, RevocationList
from protocols.errors import KeysError, ProtocolError
from protocols.paillier.errors import CustodianRefused, MalformedMessage
from protocols.paillier.keys import PROTOCOL, SplitPublicKey
from protocols.paillier.messages import SCREEN_STAGE, STAGE_NAMES, SignedContribution
from protocols.roster import SignedRoster, roster_from_log_payload, verify_roster, verify_roster_certificates
from protocols.spec import RoundSpec, SignedSpec, spec_hash, verify_spec
from protocols.translog import (
    ABORT,
    AGGREGATE,
    CONTRIBUTION_RECEIPT,
    CURRENT_FORMAT,
    GENESIS_HASH,
    LEGACY_FORMAT,
    ROSTER,
    SPEC_PUBLISHED,
    STAGE,
    SUPPRESSION,
    LogEntry,
    entry_hash,
    legacy_v0_entry_body,
    legacy_v0_entry_hash,
)

__all__ = ["LoggedRound", "contribution_path", "logged_round", "parse_log", "roster_member_keys"]


@dataclass(frozen=True)
class LoggedRound:
    """A round as the verified log records it: spec, members who may contribute, their contributions (log order)."""

    spec: RoundSpec
    spec_hash: str
    members: dict[str, str]
    """Fingerprint -> identity public key of every member admitted to the round."""
    contributions: tuple[SignedContribution, ...]
    """The contributions of :attr:`stage`, in log order."""
    stage: str = SCREEN_STAGE
    """The stage the log shows the round waiting for (every earlier one decided ``proceed``)."""


def contribution_path(round_id: str, stage: str = SCREEN_STAGE) -> str:
    """The request path a member signs when it posts its contribution to ``stage`` (what a receipt must name).

    The screen stage is posted while the round is open, to the round's ``contributions``; every
    later stage to ``stages/{stage}/contributions``. The member's request signature covers the
    path, so a receipt names the stage the member meant, whatever the aggregator writes beside it.
    """
    if stage == SCREEN_STAGE:
        return f"/api/v1/rounds/{round_id}/contributions"
    return f"/api/v1/rounds/{round_id}/stages/{stage}/contributions"


def _stage_waiting(mine: Sequence[LogEntry], round_id: str) -> str:
    """The stage a round waits for: the first whose ``stage`` entry is not logged, every earlier one ``proceed``."""
    decided = [e for e in mine if e.type == STAGE]
    for i, e in enumerate(decided):
        name = e.payload.get("stage")
        expected = STAGE_NAMES[i] if i < len(STAGE_NAMES) else None
        if name != expected:
            raise CustodianRefused(
                f"round {round_id!r}: log entry {e.seq} decides stage {name!r} where the stages' order expects "
                f"{expected!r}"
            )
        if e.payload.get("decision") != "proceed":
            raise CustodianRefused(
                f"round {round_id!r} stopped at stage {name} (log entry {e.seq}: rule {e.payload.get('rule')!r}); "
                "no later stage is decrypted"
            )
    if len(decided) >= len(STAGE_NAMES):
        raise CustodianRefused(f"round {round_id!r}: every stage is decided in the log; nothing is left to decrypt")
    return STAGE_NAMES[len(decided)]


def _stage_receipts(mine: Sequence[LogEntry], round_id: str, members: Mapping[str, str]) -> dict[str, list[LogEntry]]:
    """The round's contribution receipts by stage, each from a roster member (once per stage) with its signature checked."""
    paths = {contribution_path(round_id, s): s for s in STAGE_NAMES}
    out: dict[str, list[LogEntry]] = {}
    seen: set[tuple[str, str]] = set()
    for receipt in (e for e in mine if e.type == CONTRIBUTION_RECEIPT):
        p = receipt.payload
        where = f"round {round_id!r}: receipt seq {receipt.seq}"
        member = str(p.get("member"))
        key = members.get(member)
        if key is None:
            raise CustodianRefused(f"{where} is from {member}, who is not on the round's signed roster")
        path = p.get("path")
        stage = paths.get(str(path))
        if stage is None or str(p.get("method", "")).upper() != "POST":
            raise CustodianRefused(f"{where}: the member's signed request is not a contribution to this round")
        if (member, stage) in seen:
            raise CustodianRefused(
                f"{where}: member {member} contributed more than once to stage {stage}; one contribution per member"
            )
        seen.add((member, stage))
        try:
            message = request_message("POST", str(path), str(p["timestamp"]), str(p["contribution_hash"]))
            identity.verify(key, message, str(p["node_signature"]))
        except (KeyError, ValueError, ProtocolError, KeysError):
            raise CustodianRefused(f"{where}: the signature of member {member} does not verify") from None
        out.setdefault(stage, []).append(receipt)
    return out


def roster_member_keys(
    signed: SignedRoster,
    aggregator_key: str,
    round_id: str,
    round_spec_hash: str,
    *,
    authority_key: str | None = None,
    revocations: RevocationList | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """The members a custodian accepts contributions from: fingerprint -> identity key.

    A member is an entry of the round's roster signed by the aggregator (keyed by member
    fingerprint for ``paillier`` rounds) and, when the custodian pinned the membership authority's
    key (``authority_key``), holding that authority's current certificate for exactly its key, at
    most one member per USCC (``protocols.certificates.check_cohort``). This is the one place a
    custodian decides membership.

    Raises
    ------
    CustodianRefused
        The roster's signature, round or spec hash does not check out, an entry's fingerprint is
        not that of its key, or (with ``authority_key``) a member's certificate is missing, not by
        the authority, expired, revoked (per ``revocations``), for another key, or shared.
    """
    try:
        roster = verify_roster(signed, aggregator_key, round_id, round_spec_hash)
    except (ProtocolError, KeysError):
        raise CustodianRefused(
            f"round {round_id!r}: the roster in the log is not signed by the pinned aggregator key for this round's spec"
        ) from None
    members: dict[str, str] = {}
    for fp, key in roster.items():
        try:
            actual = identity.fingerprint(key)
        except (ProtocolError, KeysError, ValueError):
            raise CustodianRefused(f"round {round_id!r}: roster entry {fp!r} holds no Ed25519 key") from None
        if actual != fp:
            raise CustodianRefused(f"round {round_id!r}: roster entry {fp!r} holds the key of {actual}")
        members[fp] = key
    if authority_key is not None:
        try:
            verify_roster_certificates(signed, authority_key, revocations, now=now or datetime.now(UTC))
        except CertificateRejected as exc:
            raise CustodianRefused(f"round {round_id!r}: {exc} ({exc.reason}); a Sybil or revoked member would "
                                   "let the sum reveal the others' contributions") from None
    return members


def _check_chain(entries: Sequence[LogEntry], aggregator_key: str) -> None:
    prev = GENESIS_HASH
    for expected, e in enumerate(entries, start=1):
        where = f"transparency log entry {e.seq}"
        if e.seq != expected or e.prev_hash != prev:
            raise CustodianRefused(f"{where}: the chain breaks (expected seq {expected} after {prev[:16]})")
        try:
            if e.format == LEGACY_FORMAT:
                recomputed = legacy_v0_entry_hash(e.prev_hash, legacy_v0_entry_body(e.seq, e.type, e.at, e.payload))
            elif e.format == CURRENT_FORMAT:
                recomputed = entry_hash(e.prev_hash, e.seq, e.type, e.at, e.payload)
            else:
                raise CustodianRefused(f"{where}: unknown format {e.format}")
            if recomputed != e.entry_hash:
                raise CustodianRefused(f"{where}: entry_hash does not match its content")
            identity.verify(aggregator_key, bytes.fromhex(e.entry_hash), e.signature)
        except (TypeError, ValueError, CanonicalError):
            raise CustodianRefused(f"{where}: cannot be checked") from None
        except (ProtocolError, KeysError):
            raise CustodianRefused(f"{where}: not signed by the pinned aggregator key") from None
        prev = e.entry_hash


def _one(entries: list[LogEntry], what: str, round_id: str) -> LogEntry:
    if len(entries) != 1:
        raise CustodianRefused(f"round {round_id!r}: the log holds {len(entries)} {what} entries; expected exactly one")
    return entries[0]


def _body_hash(body: Mapping[str, Any]) -> str:
    try:
        return hashlib.sha256(canonical_json(dict(body))).hexdigest()
    except CanonicalError:
        raise MalformedMessage("a contribution body cannot be put in canonical JSON") from None


def logged_round(
    entries: Sequence[LogEntry],
    aggregator_key: str,
    round_id: str,
    bodies: Sequence[Mapping[str, Any]],
    public_key: SplitPublicKey,
    *,
    authority_key: str | None = None,
    revocations: RevocationList | None = None,
    now: datetime | None = None,
    stage: str | None = None,
) -> LoggedRound:
    """Every contribution the log records for the stage ``round_id`` waits for, each matched to its member's signed receipt.

    Parameters
    ----------
    entries
        The whole transparency log from seq 1 (``GET /api/v1/log``, every page).
    aggregator_key
        The aggregator's identity key as the custodian pinned it (never the one a log page names).
    round_id
        The round to decrypt.
    bodies
        The contribution bodies (``SignedContribution.to_dict()``) the aggregator serves; only their
        hashes are trusted, through the receipts.
    public_key
        The custodian's own key (from its share): the spec must name it.
    authority_key, revocations, now
        The membership authority's key the custodian pinned, its verified revocation list and the
        custodian's clock: every roster member must be certified (:func:`roster_member_keys`).
    stage
        The stage the caller means to decrypt, if it names one: refused unless the log shows the
        round waiting for exactly that stage.

    Returns
    -------
    LoggedRound

    Raises
    ------
    CustodianRefused
        A broken chain or signature; no or several spec or roster entries for the round; a spec for
        another protocol or key; a round already aborted, suppressed or aggregated; a receipt from a
        non-member, a second receipt of one member per stage, a bad member signature, a receipt without
        its body or a body without its receipt; a stage the log does not show the round waiting for
        (every earlier stage decided ``proceed``, this one not yet decided); a stage after ``screen``
        whose contributors are not exactly the screen's.
    """
    _check_chain(entries, aggregator_key)
    mine = [e for e in entries if e.payload.get("round_id") == round_id]
    published = _one([e for e in mine if e.type == SPEC_PUBLISHED], "spec_published", round_id)
    try:
        raw = published.payload["signed_spec"]
        signed = SignedSpec.model_validate_json(raw) if isinstance(raw, str) else SignedSpec.model_validate(raw)
        spec = verify_spec(signed, aggregator_key)
    except (KeyError, ValueError, ProtocolError, KeysError):
        raise CustodianRefused(f"round {round_id!r}: the published spec is not signed by the pinned aggregator key") from None
    digest = spec_hash(spec)
    if spec.round_id != round_id or published.payload.get("spec_hash") != digest:
        raise CustodianRefused(f"round {round_id!r}: the published spec is for another round or hash")
    if spec.protocol != PROTOCOL:
        raise CustodianRefused(f"round {round_id!r} is a {spec.protocol!r} round; custodians decrypt paillier rounds")
    if spec.paillier.key_id != public_key.key_id:
        raise CustodianRefused(
            f"round {round_id!r}: its signed spec names Paillier key {spec.paillier.key_id}, this custodian holds a share "
            f"of {public_key.key_id}"
        )
    ended = [e.type for e in mine if e.type in (ABORT, SUPPRESSION, AGGREGATE)]
    if ended:
        raise CustodianRefused(f"round {round_id!r} already ended in the log ({ended[0]}); nothing is decrypted for it")
    roster_entry = _one([e for e in mine if e.type == ROSTER], "roster", round_id)
    try:
        signed_roster = roster_from_log_payload(dict(roster_entry.payload))
        if signed_roster.round_id != round_id:
            raise ValueError("roster entry for another round")
    except (KeyError, TypeError, ValueError):
        raise CustodianRefused(f"round {round_id!r}: the roster entry (seq {roster_entry.seq}) is malformed") from None
    members = roster_member_keys(signed_roster, aggregator_key, round_id, digest, authority_key=authority_key,
                                 revocations=revocations, now=now)
    current = _stage_waiting(mine, round_id)
    if stage is not None and stage != current:
        raise CustodianRefused(
            f"round {round_id!r}: the log shows it waiting for stage {current!r}, not {stage!r}; a custodian "
            "decrypts a stage only after the log shows every stage before it decided 'proceed'"
        )
    receipts = _stage_receipts(mine, round_id, members)
    by_hash: dict[str, Mapping[str, Any]] = {}
    for body in bodies:
        by_hash[_body_hash(body)] = body
    contributions: list[SignedContribution] = []
    for receipt in receipts.get(current, []):
        p = receipt.payload
        where = f"round {round_id!r}: receipt seq {receipt.seq}"
        member = str(p.get("member"))
        key = members[member]
        body = by_hash.pop(str(p["contribution_hash"]), {})
        if not body:
            raise CustodianRefused(
                f"{where}: the aggregator did not hand over the body of member {member}'s {current} contribution "
                f"(sha256 {str(p['contribution_hash'])[:16]}); every logged contribution is decrypted or none"
            )
        contribution = SignedContribution.from_dict(body)
        if contribution.sender != key:
            raise CustodianRefused(f"{where}: the contribution's sender is not member {member}")
        if contribution.stage != current:
            raise CustodianRefused(f"{where}: the body is a {contribution.stage} contribution, posted as {current}")
        contributions.append(contribution)
    if by_hash:
        extra = ", ".join(sorted(h[:16] for h in by_hash))
        raise CustodianRefused(
            f"round {round_id!r}: {len(by_hash)} contribution(s) handed over have no {current} receipt in the log ({extra})"
        )
    decided = {str(e.payload.get("stage")): e for e in mine if e.type == STAGE}
    for i, name in enumerate(STAGE_NAMES[: STAGE_NAMES.index(current) + 1]):
        opened = decided[STAGE_NAMES[i - 1]].seq if i else 0
        closed = decided[name].seq if name in decided else None
        late = [r.seq for r in receipts.get(name, []) if r.seq < opened or (closed is not None and r.seq > closed)]
        if late:
            raise CustodianRefused(
                f"round {round_id!r}: receipt(s) {late} of stage {name} lie outside the stage (after log entry "
                f"{opened}{'' if closed is None else f', before {closed}'}); a stage's set is fixed when it is decided"
            )
        if closed is not None and decided[name].payload.get("n") != len(receipts.get(name, [])):
            raise CustodianRefused(
                f"round {round_id!r}: stage {name} was decided over n = {decided[name].payload.get('n')} firms, the log "
                f"holds {len(receipts.get(name, []))} of its contributions"
            )
    if current != SCREEN_STAGE:
        cohort = sorted(str(r.payload.get("member")) for r in receipts.get(SCREEN_STAGE, []))
        now_in = sorted(str(r.payload.get("member")) for r in receipts.get(current, []))
        if now_in != cohort:
            raise CustodianRefused(
                f"round {round_id!r}: stage {current} has contributions from {len(now_in)} member(s) that are not "
                f"the screen's cohort of {len(cohort)}; every stage sums over the same firms, or the difference "
                "of two stages' sums would describe the firms that changed"
            )
    return LoggedRound(spec=spec, spec_hash=digest, members=members, contributions=tuple(contributions), stage=current)


def parse_log(doc: Any) -> list[LogEntry]:
    """Log entries from a ``LogPage`` JSON object, a list of pages, or a list of entries."""
    pages = doc if isinstance(doc, list) else [doc]
    entries: list[LogEntry] = []
    try:
        for item in pages:
            if isinstance(item, Mapping) and "entries" in item:
                entries.extend(LogEntry.model_validate(e) for e in item["entries"])
            else:
                entries.append(LogEntry.model_validate(item))
    except ValueError as exc:
        raise MalformedMessage(f"transparency log: not a log page or a list of entries ({str(exc)[:200]})") from None
    return entries

