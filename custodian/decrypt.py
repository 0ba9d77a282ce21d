"""A custodian answers a decryption request: unlock its share, check the ledger, release a signed partial."""

from __future__ import annotations

import json
import os
from collections.abc import Collection

from custodian.store import ledger_path, load_share, locked_ledger
from protocols.paillier import DecryptionRequest, MalformedMessage, custodian_partial_decrypt

__all__ = ["custodian_decrypt"]


def custodian_decrypt(
    share_path: str | os.PathLike[str],
    password: str,
    request_json: str,
    *,
    roster: Collection[str],
    min_participants: int,
) -> str:
    """Answer a decryption request with this custodian's signed partial decryption, or refuse.

    Public key and roster are taken from the share file and from the custodian's own
    configuration, never from the request.

    Parameters
    ----------
    share_path
        The custodian's share file.
    password
        Its password.
    request_json
        ``{"round_id": str, "contributions": [SignedContribution.to_dict(), …]}``; an optional
        ``"min_participants"`` may only raise the custodian's own minimum.
    roster
        The round's member public keys from the custodian's own configuration.
    min_participants
        The custodian's own minimum number of distinct contributors.

    Returns
    -------
    str
        ``PartialDecryption.to_dict()`` as JSON. The ledger entry is written before it is returned.

    Raises
    ------
    CustodianRefused
        See :func:`protocols.paillier.custodian_partial_decrypt`.
    MalformedMessage
        The request is not JSON or lacks a field.
    """
    try:
        data = json.loads(request_json)
    except ValueError as exc:
        raise MalformedMessage(f"decryption request: not JSON ({exc})") from None
    request = DecryptionRequest.from_dict(data)
    share, public_key = load_share(share_path, password)
    floor = max(min_participants, request.min_participants or min_participants)
    with locked_ledger(ledger_path(share_path)) as ledger:
        partial = custodian_partial_decrypt(
            share, public_key, request.contributions, frozenset(roster), floor, request.round_id, ledger=ledger
        )
    return json.dumps(partial.to_dict())
