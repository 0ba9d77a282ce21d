"""The round roster: which Flower node ids take part and the Ed25519 identity key of each.

The aggregator fixes the roster when it opens a ``secagg`` round (approved members whose
SuperNode is registered with the SuperLink) and signs it together with the spec hash; a node
verifies the signature against the aggregator key it enrolled with and then trusts only the
keys of this roster when it checks other nodes' signed key advertisements. The roster is also
written to the transparency log, so a roster that names keys members never enrolled is evident
to anyone who checks the log.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict

from keys import identity
from protocols.canonical import Kind, encode
from protocols.errors import InvalidSignature

__all__ = ["SignedRoster", "roster_message", "sign_roster", "verify_roster"]


class SignedRoster(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    round_id: str
    spec_hash: str
    roster: dict[str, str]
    """Flower node id (decimal string) -> base64url Ed25519 identity public key."""
    signature: str


def roster_message(round_id: str, spec_hash: str, roster: dict[str, str]) -> bytes:
    """The bytes a roster signature covers: the canonical encoding of round id, spec hash and roster."""
    body = {"round_id": round_id, "spec_hash": spec_hash, "roster": {str(k): v for k, v in roster.items()}}
    return encode(Kind.ROSTER, body)


def sign_roster(key: Ed25519PrivateKey, round_id: str, spec_hash: str,
                roster: dict[str, str]) -> SignedRoster:
    roster = {str(k): v for k, v in roster.items()}
    return SignedRoster(round_id=round_id, spec_hash=spec_hash, roster=roster,
                        signature=identity.sign(key, roster_message(round_id, spec_hash, roster)))


def verify_roster(signed: SignedRoster, aggregator_public_b64: str, round_id: str, spec_hash: str) -> dict[str, str]:
    """The roster, once its signature, round id and spec hash check out; raises InvalidSignature otherwise."""
    if signed.round_id != round_id or signed.spec_hash != spec_hash:
        raise InvalidSignature("roster signature does not verify")
    identity.verify(aggregator_public_b64, roster_message(signed.round_id, signed.spec_hash, signed.roster),
                    signed.signature)
    return dict(signed.roster)
