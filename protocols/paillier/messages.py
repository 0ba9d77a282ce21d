"""Wire models of the ``paillier`` protocol and the canonical digests that bind them.

Every hashed or signed byte string is ``protocols.canonical.encode`` of a JSON document with its
own :class:`~protocols.canonical.Kind`; big integers (ciphertexts, partials) travel and are
hashed as lower-case hex strings, since RFC 8785 refuses integers above 2**53.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocols.canonical import Kind, digest, encode
from protocols.paillier._wire import field, hex_int, unhex
from protocols.paillier.errors import MalformedMessage
from protocols.paillier.keys import PROTOCOL, SplitPublicKey
from protocols.paillier.proof import PlaintextProof

__all__ = [
    "SCREEN_STAGE",
    "STAGE_NAMES",
    "VALUES_STAGE",
    "AggregateCiphertext",
    "DecryptionRequest",
    "PartialDecryption",
    "SignedContribution",
    "contribution_digest",
    "contribution_set_digest",
    "contribution_signed_bytes",
    "product_digest",
]


SCREEN_STAGE = "screen"
"""The first disclosure stage (``protocols.disclosure.Stage.SCREEN``), collected while the round is open."""
VALUES_STAGE = "values"
"""The first stage whose sums are over the components (``protocols.disclosure.Stage.VALUES``)."""
STAGE_NAMES = ("screen", "dominance", "values", "cells")
"""``protocols.disclosure.STAGES`` by name; a contribution or partial for any other stage is malformed."""


def _stage_of(data: Mapping[str, Any], where: str) -> str:
    stage = data.get("stage", SCREEN_STAGE)
    if stage not in STAGE_NAMES:
        raise MalformedMessage(f"{where}.stage: {stage!r}; accepted: one of {list(STAGE_NAMES)}")
    return str(stage)


def contribution_digest(
    public_key: SplitPublicKey, round_id: str, sender: str, ciphertexts: Sequence[int], stage: str = SCREEN_STAGE
) -> str:
    """``canonical.digest(CONTRIBUTION, …)`` over the round, its disclosure stage, key id, sender and ciphertexts (hex)."""
    return digest(
        Kind.CONTRIBUTION,
        {
            "protocol": PROTOCOL,
            "round_id": round_id,
            "stage": stage,
            "key_id": public_key.key_id,
            "sender": sender,
            "ciphertexts": [hex_int(c) for c in ciphertexts],
        },
    )


def contribution_signed_bytes(round_id: str, contribution_digest: str, stage: str = SCREEN_STAGE) -> bytes:
    """What a member signs: its contribution's digest, bound to the round and the disclosure stage."""
    return encode(
        Kind.CONTRIBUTION,
        {"protocol": PROTOCOL, "round_id": round_id, "stage": stage, "contribution_digest": contribution_digest},
    )


def contribution_set_digest(digests: Iterable[str]) -> str:
    """Digest of a set of contribution digests (order-free): what a custodian's ledger records per round."""
    return digest(Kind.CUSTODIAN_REQUEST, {"protocol": PROTOCOL, "contribution_set": sorted(digests)})


def product_digest(public_key: SplitPublicKey, product: Sequence[int]) -> str:
    """Digest of the product ciphertexts a custodian decrypted (hex), under ``public_key``."""
    return digest(
        Kind.CUSTODIAN_PARTIAL,
        {"protocol": PROTOCOL, "key_id": public_key.key_id, "product": [hex_int(c) for c in product]},
    )


@dataclass(frozen=True)
class SignedContribution:
    """One firm's encrypted, signed contribution to one disclosure stage of one round.

    ``digest`` is :func:`contribution_digest` (round, stage, key id, sender, ciphertexts); ``signature``
    is the sender's Ed25519 signature over :func:`contribution_signed_bytes` ``(round_id, digest, stage)``.
    ``proofs[k]`` proves the sender knows the plaintext of ``ciphertexts[k]`` (``protocols.paillier.proof``);
    a contribution without them is refused, so no member can post a function of another's ciphertexts.
    """

    round_id: str
    key_id: str
    sender: str
    ciphertexts: tuple[int, ...]
    digest: str
    signature: str
    proofs: tuple[PlaintextProof, ...] = ()
    stage: str = SCREEN_STAGE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, ciphertexts in hex."""
        return {
            "protocol": PROTOCOL,
            "round_id": self.round_id,
            "stage": self.stage,
            "key_id": self.key_id,
            "sender": self.sender,
            "ciphertexts": [hex_int(c) for c in self.ciphertexts],
            "digest": self.digest,
            "signature": self.signature,
            "proofs": [p.to_dict() for p in self.proofs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedContribution:
        """Parse :meth:`to_dict` output (no verification; see :func:`verify_contribution`)."""
        where = "contribution"
        cts = field(data, "ciphertexts", list, where)
        proofs = data.get("proofs", []) if isinstance(data, Mapping) else []
        if not isinstance(proofs, list):
            raise MalformedMessage(f"{where}.proofs: expected a list of plaintext proofs")
        return cls(
            round_id=field(data, "round_id", str, where),
            key_id=field(data, "key_id", str, where),
            sender=field(data, "sender", str, where),
            ciphertexts=tuple(unhex(c, f"{where}.ciphertexts[{k}]") for k, c in enumerate(cts)),
            digest=field(data, "digest", str, where),
            signature=field(data, "signature", str, where),
            proofs=tuple(PlaintextProof.from_dict(p, f"{where}.proofs[{k}]") for k, p in enumerate(proofs)),
            stage=_stage_of(data, where),
        )


@dataclass(frozen=True)
class AggregateCiphertext:
    """The homomorphic sum of a round: product ciphertexts and the contributions they cover."""

    round_id: str
    key_id: str
    contribution_digests: tuple[str, ...]
    ciphertexts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, ciphertexts in hex."""
        return {
            "protocol": PROTOCOL,
            "round_id": self.round_id,
            "key_id": self.key_id,
            "contribution_digests": list(self.contribution_digests),
            "ciphertexts": [hex_int(c) for c in self.ciphertexts],
        }


@dataclass(frozen=True)
class PartialDecryption:
    """Custodian ``custodian_index``'s ``c^{d_i} mod n²`` for each product ciphertext of one stage, signed."""

    round_id: str
    key_id: str
    custodian_index: int
    contribution_digests: tuple[str, ...]
    product_digest: str
    partials: tuple[int, ...]
    signature: str
    stage: str = SCREEN_STAGE

    @property
    def set_digest(self) -> str:
        """SHA-256 over the sorted contribution digests (what the custodian's ledger records)."""
        return contribution_set_digest(self.contribution_digests)

    def signed_bytes(self) -> bytes:
        """``canonical.encode(CUSTODIAN_PARTIAL, …)``: what ``signature`` covers."""
        return encode(
            Kind.CUSTODIAN_PARTIAL,
            {
                "round_id": self.round_id,
                "stage": self.stage,
                "key_id": self.key_id,
                "custodian_index": self.custodian_index,
                "contribution_set": self.set_digest,
                "product_digest": self.product_digest,
                "partials": [hex_int(p) for p in self.partials],
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, partials in hex."""
        return {
            "protocol": PROTOCOL,
            "round_id": self.round_id,
            "stage": self.stage,
            "key_id": self.key_id,
            "custodian_index": self.custodian_index,
            "contribution_digests": list(self.contribution_digests),
            "product_digest": self.product_digest,
            "partials": [hex_int(p) for p in self.partials],
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartialDecryption:
        """Parse :meth:`to_dict` output (verification happens in :func:`combine`)."""
        where = "partial decryption"
        digests = field(data, "contribution_digests", list, where)
        if not all(isinstance(d, str) for d in digests):
            raise MalformedMessage(f"{where}.contribution_digests: expected a list of hex strings")
        partials = field(data, "partials", list, where)
        return cls(
            round_id=field(data, "round_id", str, where),
            key_id=field(data, "key_id", str, where),
            custodian_index=field(data, "custodian_index", int, where),
            contribution_digests=tuple(digests),
            product_digest=field(data, "product_digest", str, where),
            partials=tuple(unhex(p, f"{where}.partials[{k}]") for k, p in enumerate(partials)),
            signature=field(data, "signature", str, where),
            stage=_stage_of(data, where),
        )


@dataclass(frozen=True)
class DecryptionRequest:
    """What the aggregator asks each custodian to decrypt: the logged contributions of one stage of a round.

    ``min_participants`` may only raise the custodian's own minimum, never lower it; ``stage`` only
    says which bodies these are (the custodian reads the stage the round waits for from the log).
    """

    round_id: str
    contributions: tuple[SignedContribution, ...]
    min_participants: int | None = None
    stage: str = SCREEN_STAGE

    @classmethod
    def from_dict(cls, data: Any) -> DecryptionRequest:
        """Parse ``{"round_id", "contributions": [SignedContribution.to_dict(), …], "min_participants"?}``.

        Other fields the aggregator adds (``spec_hash``, ``key_id``) are ignored: a custodian trusts
        only its own copies of the key and the roster.
        """
        where = "decryption request"
        if not isinstance(data, Mapping):
            raise MalformedMessage(f"{where}: expected a JSON object, got {type(data).__name__}")
        round_id, items = data.get("round_id"), data.get("contributions")
        if not isinstance(round_id, str) or not isinstance(items, list):
            raise MalformedMessage(f"{where}: expected fields round_id (string) and contributions (list)")
        requested = data.get("min_participants")
        if requested is not None and (not isinstance(requested, int) or isinstance(requested, bool)):
            raise MalformedMessage(f"{where}.min_participants: expected an integer, got {requested!r}")
        return cls(round_id, tuple(SignedContribution.from_dict(c) for c in items), requested, _stage_of(data, where))
