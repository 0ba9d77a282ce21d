"""A custodian answers for a round's waiting stage: unlock its share, take the stage's contributions from the verified log, release a signed partial."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from custodian.store import ledger_path, load_share, locked_ledger
from protocols.certificates import RevocationList
from protocols.paillier import MIN_PARTICIPANTS_FLOOR, decrypt_logged_round
from protocols.translog import LogEntry

__all__ = ["custodian_decrypt"]


def custodian_decrypt(
    share_path: str | os.PathLike[str],
    password: str,
    round_id: str,
    *,
    log: Sequence[LogEntry],
    aggregator_key: str,
    bodies: Sequence[Mapping[str, Any]],
    min_participants: int = MIN_PARTICIPANTS_FLOOR,
    authority_key: str | None = None,
    revocations: RevocationList | None = None,
    stage: str | None = None,
    previous_partials: Sequence[Mapping[str, Any]] = (),
) -> str:
    """This custodian's signed partial decryption of the stage ``round_id`` waits for, or a refusal.

    The public key comes from the share file; spec, roster, the stage and its set of contributions
    from the transparency log, checked against the aggregator key the custodian pinned: the stage
    is the first the log has not decided, and only if every earlier one was logged ``proceed``
    (``protocols.paillier.round_log``). The aggregator only supplies the contribution bodies, which
    count only through their members' logged receipts.

    Parameters
    ----------
    share_path
        The custodian's share file.
    password
        Its password.
    round_id
        The round to decrypt.
    log
        The whole transparency log (``GET /api/v1/log``, every page).
    aggregator_key
        The aggregator's identity key as published by the association (base64url).
    bodies
        The contribution bodies (``SignedContribution.to_dict()``), e.g. the ``contributions`` of
        ``GET /api/v1/rounds/{id}/decryption-request``.
    min_participants
        The custodian's own minimum; the signed spec's ``min_participants`` applies when larger.
    authority_key, revocations
        The membership authority's key the custodian pinned and its verified revocation list: every
        roster member must hold that authority's current certificate for its key.
    stage
        The stage the custodian means to decrypt, if it names one (refused unless the log shows it waiting).
    previous_partials
        Before the values stage: every custodian's partial of the dominance stage (the request's
        ``previous_partials``); the custodian combines the counts itself and refuses a failing round.

    Returns
    -------
    str
        ``PartialDecryption.to_dict()`` as JSON (its ``stage`` says which stage). The ledger entry is
        written before it is returned.

    Raises
    ------
    CustodianRefused
        See :func:`protocols.paillier.decrypt_logged_round`.
    """
    share, public_key = load_share(share_path, password)
    with locked_ledger(ledger_path(share_path)) as ledger:
        partial = decrypt_logged_round(
            share, public_key, round_id, log=log, aggregator_key=aggregator_key, bodies=bodies,
            min_participants=min_participants, ledger=ledger, authority_key=authority_key, revocations=revocations,
            stage=stage, previous_partials=previous_partials,
        )
    return json.dumps(partial.to_dict())
