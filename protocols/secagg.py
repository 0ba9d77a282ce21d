"""Secure aggregation (Bonawitz et al. 2017, SecAgg+ neighbourhoods of Bell et al. 2020) as pure client and server state machines."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocols.canonical import Kind, encode
from protocols.errors import (
    AggregationError,
    EncodingError,
    InvalidSignature,
    ProtocolError,
)
from protocols.secagg_crypto import (
    FIELD_PRIME,
    RandBytes,
    VerificationFailed,
    aead_open,
    aead_seal,
    decode_share,
    derive_key,
    ed25519_sign,
    ed25519_verify,
    encode_share,
    keyed_hash,
    load_x25519_private,
    prg_uint64,
    reconstruct_secret,
    split_secret,
    x25519_keypair,
    x25519_public_from_private,
    x25519_shared_secret,
)

__all__ = [
    "STAGES",
    "AdvertiseRequest",
    "AggregateResult",
    "AuthenticationFailed",
    "ClientPhase",
    "ClientState",
    "ConsistencyReply",
    "ConsistencyRequest",
    "EncryptedShare",
    "InputOutOfRange",
    "KeyAdvertisement",
    "Label",
    "MaskedInputReply",
    "MaskedInputRequest",
    "ProtocolViolation",
    "Reply",
    "Request",
    "RoundParams",
    "SecAggAborted",
    "SecAggClient",
    "SecAggError",
    "SecAggServer",
    "ServerState",
    "ShareKeysReply",
    "ShareKeysRequest",
    "Stage",
    "UnmaskReply",
    "UnmaskRequest",
    "advertisement_payload",
    "consistency_payload",
    "default_degree",
    "default_threshold",
    "default_value_bits",
    "encode_input",
    "neighbourhoods",
    "run_in_process",
    "to_signed",
]


# =========================================================================== vocabulary


class Stage(StrEnum):
    """The five protocol stages, in order (rounds 0..4 of Bonawitz et al., with the consistency check)."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"


STAGES: tuple[Stage, ...] = tuple(Stage)


class Label:
    """Domain-separation labels of key derivations, signatures and AADs."""

    ADVERTISEMENT = "advertisement"
    SHARE_ENCRYPTION = "share-encryption"
    SHARE_AAD = "share-aad"
    PAIRWISE_MASK = "pairwise-mask"
    SELF_MASK = "self-mask"
    GRAPH = "graph"
    CONSISTENCY = "consistency"
    SURVIVORS = "survivors"


def _kind(label: str) -> str:
    """The canonical-encoding kind of a signed, hashed or authenticated protocol message: ``secagg/v1/<label>``."""
    return f"{Kind.SECAGG}/{label}"


class ClientPhase(StrEnum):
    """Where a client is in its round: the stage it answered last."""

    NEW = "new"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    CHECKED = "checked"
    DONE = "done"


_PHASE_BEFORE: dict[Stage, ClientPhase] = {
    Stage.ADVERTISE_KEYS: ClientPhase.NEW,
    Stage.SHARE_KEYS: ClientPhase.ADVERTISED,
    Stage.MASKED_INPUT: ClientPhase.SHARED,
    Stage.CONSISTENCY: ClientPhase.MASKED,
    Stage.UNMASK: ClientPhase.CHECKED,
}


# =========================================================================== errors


class SecAggError(ProtocolError):
    """Base class of secure-aggregation errors.

    Exception tree::

        SecAggError (protocols.errors.ProtocolError)
        ├── SecAggAborted        too few survivors at a stage; nothing is published
        │                        (also an AggregationError)
        ├── ProtocolViolation    a message for another round, stage or recipient (replay),
        │   │                    malformed, or inconsistent with what was agreed
        │   └── AuthenticationFailed
        │                        a signature, AEAD tag or reconstructed key does not verify;
        │                        opaque about the cryptographic cause (also an InvalidSignature)
        └── InputOutOfRange      an input exceeds the per-node bound that keeps the sum
                                 from wrapping mod 2**64 (also an EncodingError)
    """


class SecAggAborted(SecAggError, AggregationError):
    """The round cannot complete: at ``stage`` only ``survivors`` remain where ``threshold`` are needed.

    Raised by the server (and by a client that sees its own neighbourhood fall below the
    threshold); the server then discards every masked vector and publishes nothing.
    """

    def __init__(self, stage: Stage, survivors: int, threshold: int, detail: str = "") -> None:
        self.stage = stage
        self.survivors = survivors
        self.threshold = threshold
        self.detail = detail
        message = (
            f"secure aggregation aborted at stage {stage.value!r}: {survivors} survivor(s), "
            f"threshold {threshold}; nothing is published"
        )
        super().__init__(message + (f" ({detail})" if detail else ""))


class ProtocolViolation(SecAggError):
    """A message is replayed, out of order, misdirected, malformed or inconsistent."""


class AuthenticationFailed(ProtocolViolation, InvalidSignature):
    """A signature, AEAD tag or reconstructed key does not verify."""

    def __init__(self, message: str) -> None:
        ProtocolViolation.__init__(self, message)


class InputOutOfRange(SecAggError, EncodingError):
    """An input value is outside [-2**value_bits, 2**value_bits): the sum could wrap silently."""


# =========================================================================== round parameters


def default_degree(n: int) -> int:
    """Neighbourhood size k for n participants: complete graph up to 20, else ~4 log2 n (even)."""
    if n <= 20:
        return n - 1
    k = 4 * math.ceil(math.log2(n))
    return min(n - 1, k + (k % 2))


def default_threshold(degree: int) -> int:
    """Smallest threshold that is a strict majority of the closed neighbourhood (k + 1 nodes).

    A strict majority means no server, even one that tells different nodes different stories,
    can collect both a node's key shares and its self-mask shares.
    """
    return (degree + 1) // 2 + 1


def default_value_bits(n: int) -> int:
    """Largest b with n * 2**b <= 2**63: n inputs in [-2**b, 2**b) never wrap the signed sum."""
    return 63 - math.ceil(math.log2(n))


@dataclass(frozen=True)
class RoundParams:
    """Public parameters of one round; the server sends them to every participant at stage 0.

    ``participants`` fixes each node's Shamir x coordinate (position + 1) and, with
    ``round_id``, the public neighbourhood graph.
    """

    round_id: str
    participants: tuple[int, ...]
    vector_length: int
    threshold: int
    degree: int
    value_bits: int

    def __post_init__(self) -> None:
        n = len(self.participants)
        if not self.round_id:
            raise ValueError("RoundParams.round_id: empty; accepted: a non-empty string")
        if n < 2:
            raise ValueError(f"RoundParams.participants: {n} node(s); accepted: at least 2")
        if len(set(self.participants)) != n:
            raise ValueError(f"RoundParams.participants: repeated node ids in {list(self.participants)}")
        for node in self.participants:
            if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node < 2**64:
                raise ValueError(f"RoundParams.participants: node id {node!r}; accepted: integers in [0, 2**64)")
        if self.vector_length < 1:
            raise ValueError(f"RoundParams.vector_length: {self.vector_length}; accepted: >= 1")
        if not 1 <= self.degree <= n - 1:
            raise ValueError(f"RoundParams.degree: {self.degree}; accepted: 1..{n - 1} for {n} participants")
        if self.degree < n - 1 and self.degree % 2 == 1 and n % 2 == 1:
            raise ValueError(
                f"RoundParams.degree: {self.degree} is odd and {n} participants is odd: no "
                f"{self.degree}-regular graph exists; accepted: an even degree or {n - 1}"
            )
        closed = self.degree + 1
        if not (2 <= self.threshold <= closed and 2 * self.threshold > closed):
            raise ValueError(
                f"RoundParams.threshold: {self.threshold} for neighbourhoods of {closed} nodes; "
                f"accepted: {closed // 2 + 1}..{closed} (a strict majority)"
            )
        if not 1 <= self.value_bits <= 62 or n * 2**self.value_bits > 2**63:
            raise ValueError(
                f"RoundParams.value_bits: {self.value_bits} with {n} participants could wrap the sum; "
                f"accepted: 1..{default_value_bits(n)}"
            )

    @classmethod
    def create(
        cls,
        round_id: str,
        participants: Collection[int],
        vector_length: int,
        *,
        threshold: int | None = None,
        degree: int | None = None,
        value_bits: int | None = None,
    ) -> RoundParams:
        """Build parameters with defaults: participants sorted, degree, threshold and value bound derived."""
        nodes = tuple(sorted(participants))
        k = default_degree(len(nodes)) if degree is None else degree
        return cls(
            round_id=round_id,
            participants=nodes,
            vector_length=vector_length,
            threshold=default_threshold(k) if threshold is None else threshold,
            degree=k,
            value_bits=default_value_bits(len(nodes)) if value_bits is None else value_bits,
        )

    @property
    def graph_seed(self) -> bytes:
        """Public seed of the neighbourhood graph: a hash of the round id and the participants."""
        return _graph_seed(self.round_id, self.participants)

    def x_of(self, node: int) -> int:
        """Shamir x coordinate of ``node`` (its position in ``participants`` plus one)."""
        return _positions(self.participants)[node] + 1

    def closed_neighbourhood(self, node: int) -> frozenset[int]:
        """``node`` and its neighbours in the public graph."""
        return neighbourhoods(self.participants, self.degree, self.graph_seed)[node] | {node}


@lru_cache(maxsize=64)
def _graph_seed(round_id: str, participants: tuple[int, ...]) -> bytes:
    # Cached across RoundParams objects: a node rebuilds its parameters at every stage.
    document = {"round_id": round_id, "participants": [str(p) for p in participants]}
    return hashlib.sha256(encode(_kind(Label.GRAPH), document)).digest()


@lru_cache(maxsize=64)
def _positions(participants: tuple[int, ...]) -> dict[int, int]:
    return {node: pos for pos, node in enumerate(participants)}


@lru_cache(maxsize=64)
def neighbourhoods(participants: tuple[int, ...], degree: int, seed: bytes) -> dict[int, frozenset[int]]:
    """Open neighbourhoods of a Harary-like ``degree``-regular graph on a seeded ring.

    Nodes are placed on a ring in the order of ``HMAC(seed, node id)`` (a public, deterministic
    pseudo-random permutation) and linked to the ``degree // 2`` nearest on each side, plus the
    opposite node when ``degree`` is odd. ``degree >= n - 1`` gives the complete graph.
    """
    n = len(participants)
    if degree >= n - 1:
        everyone = frozenset(participants)
        return {node: everyone - {node} for node in participants}
    ring = sorted(participants, key=lambda node: keyed_hash(seed, node.to_bytes(8, "big")))
    half = degree // 2
    graph: dict[int, frozenset[int]] = {}
    for pos, node in enumerate(ring):
        links = {ring[(pos + off) % n] for off in range(1, half + 1)}
        links |= {ring[(pos - off) % n] for off in range(1, half + 1)}
        if degree % 2 == 1:
            links.add(ring[(pos + n // 2) % n])
        graph[node] = frozenset(links)
    return graph


# =========================================================================== messages


@dataclass(frozen=True)
class AdvertiseRequest:
    """Server -> client, stage 0: the round parameters."""

    params: RoundParams
    recipient: int
    stage: Stage = Stage.ADVERTISE_KEYS

    @property
    def round_id(self) -> str:
        """Round the message belongs to."""
        return self.params.round_id


@dataclass(frozen=True)
class KeyAdvertisement:
    """Client -> server, stage 0: two X25519 public keys signed with the node's Ed25519 identity."""

    round_id: str
    sender: int
    index: int
    cipher_pk: bytes
    mask_pk: bytes
    signature: bytes
    stage: Stage = Stage.ADVERTISE_KEYS


@dataclass(frozen=True)
class ShareKeysRequest:
    """Server -> client, stage 1: the advertisements of the recipient's live neighbourhood."""

    round_id: str
    recipient: int
    advertisements: tuple[KeyAdvertisement, ...]
    stage: Stage = Stage.SHARE_KEYS


@dataclass(frozen=True)
class EncryptedShare:
    """One node's shares for another, AEAD-encrypted end to end (the server only relays it)."""

    sender: int
    recipient: int
    ciphertext: bytes


@dataclass(frozen=True)
class ShareKeysReply:
    """Client -> server, stage 1: encrypted shares of the self-mask seed and the mask key."""

    round_id: str
    sender: int
    shares: tuple[EncryptedShare, ...]
    stage: Stage = Stage.SHARE_KEYS


@dataclass(frozen=True)
class MaskedInputRequest:
    """Server -> client, stage 2: the encrypted shares addressed to the recipient."""

    round_id: str
    recipient: int
    shares: tuple[EncryptedShare, ...]
    stage: Stage = Stage.MASKED_INPUT


@dataclass(frozen=True)
class MaskedInputReply:
    """Client -> server, stage 2: the masked input vector (uint64)."""

    round_id: str
    sender: int
    masked: npt.NDArray[np.uint64]
    stage: Stage = Stage.MASKED_INPUT


@dataclass(frozen=True)
class ConsistencyRequest:
    """Server -> client, stage 3: the survivor set, i.e. the nodes whose masked inputs the server summed."""

    round_id: str
    recipient: int
    survivors: tuple[int, ...]
    stage: Stage = Stage.CONSISTENCY


@dataclass(frozen=True)
class ConsistencyReply:
    """Client -> server, stage 3: the node's Ed25519 signature over the survivor set it was shown."""

    round_id: str
    sender: int
    signature: bytes
    stage: Stage = Stage.CONSISTENCY


@dataclass(frozen=True)
class UnmaskRequest:
    """Server -> client, stage 4: the survivors' signatures over the survivor set (signer -> signature).

    The client derives which peers survived and which dropped from the set it signed itself, never
    from this message.
    """

    round_id: str
    recipient: int
    signatures: Mapping[int, bytes]
    stage: Stage = Stage.UNMASK


@dataclass(frozen=True)
class UnmaskReply:
    """Client -> server, stage 4: self-mask-seed shares of survivors, mask-key shares of dropped nodes."""

    round_id: str
    sender: int
    seed_shares: Mapping[int, bytes]
    key_shares: Mapping[int, bytes]
    stage: Stage = Stage.UNMASK


Request = AdvertiseRequest | ShareKeysRequest | MaskedInputRequest | ConsistencyRequest | UnmaskRequest
Reply = KeyAdvertisement | ShareKeysReply | MaskedInputReply | ConsistencyReply | UnmaskReply


@dataclass(frozen=True)
class AggregateResult:
    """Outcome of a completed round: the sum mod 2**64 over ``contributors``."""

    round_id: str
    total: npt.NDArray[np.uint64]
    contributors: tuple[int, ...]
    dropped: Mapping[int, Stage]


# =========================================================================== shared derivations


def advertisement_payload(round_id: str, sender: int, index: int, cipher_pk: bytes, mask_pk: bytes) -> bytes:
    """Bytes a node signs to advertise its keys: the canonical encoding of round, stage, node id, index, both keys.

    Node ids are 64-bit, so they travel as decimal strings (RFC 8785 carries integers up to 2**53 only).
    """
    document = {
        "round_id": round_id,
        "stage": Stage.ADVERTISE_KEYS.value,
        "sender": str(sender),
        "index": index,
        "cipher_pk": _b64(cipher_pk),
        "mask_pk": _b64(mask_pk),
    }
    return encode(_kind(Label.ADVERTISEMENT), document)


@lru_cache(maxsize=64)
def _survivors_digest(round_id: str, survivors: tuple[int, ...]) -> str:
    document = {"round_id": round_id, "survivors": [str(node) for node in survivors]}
    return hashlib.sha256(encode(_kind(Label.SURVIVORS), document)).hexdigest()


def consistency_payload(round_id: str, sender: int, survivors: Collection[int]) -> bytes:
    """Bytes a node signs at the consistency check: round, stage, its id and the survivor set it was shown.

    The set enters as the SHA-256 of its canonical encoding (computed once per set), so checking
    many signers' signatures over one set encodes the set once.
    """
    document = {
        "round_id": round_id,
        "stage": Stage.CONSISTENCY.value,
        "sender": str(sender),
        "survivors_sha256": _survivors_digest(round_id, tuple(sorted(survivors))),
    }
    return encode(_kind(Label.CONSISTENCY), document)


def _verify_advertisement(ad: KeyAdvertisement, params: RoundParams, roster: Mapping[int, Ed25519PublicKey]) -> None:
    if ad.round_id != params.round_id or ad.stage != Stage.ADVERTISE_KEYS:
        raise AuthenticationFailed(
            f"key advertisement of node {ad.sender} is for round {ad.round_id!r} stage {ad.stage!r}, "
            f"not round {params.round_id!r} stage {Stage.ADVERTISE_KEYS.value!r}: rejected as a replay"
        )
    if ad.sender not in roster:
        raise AuthenticationFailed(f"node {ad.sender} has no enrolled identity key in the roster")
    if ad.index != params.x_of(ad.sender) - 1:
        raise AuthenticationFailed(f"key advertisement of node {ad.sender} claims index {ad.index}")
    payload = advertisement_payload(ad.round_id, ad.sender, ad.index, ad.cipher_pk, ad.mask_pk)
    try:
        ed25519_verify(roster[ad.sender], ad.signature, payload)
    except VerificationFailed:
        raise AuthenticationFailed(
            f"key advertisement of node {ad.sender} for round {params.round_id!r} does not verify "
            "against its enrolled identity key: the public keys were substituted or altered; rejected"
        ) from None


def _share_key(
    own_cipher_sk: bytes | X25519PrivateKey, peer_cipher_pk: bytes, round_id: str, sender: int, recipient: int
) -> bytes:
    secret = x25519_shared_secret(own_cipher_sk, peer_cipher_pk)
    return derive_key(secret, Label.SHARE_ENCRYPTION, round_id, sender, recipient)


def _share_aad(round_id: str, sender: int, recipient: int) -> bytes:
    document = {"round_id": round_id, "stage": Stage.SHARE_KEYS.value, "sender": str(sender), "recipient": str(recipient)}
    return encode(_kind(Label.SHARE_AAD), document)


def _pairwise_mask(
    own_mask_sk: bytes | X25519PrivateKey, peer_mask_pk: bytes, round_id: str, a: int, b: int, length: int
) -> npt.NDArray[np.uint64]:
    secret = x25519_shared_secret(own_mask_sk, peer_mask_pk)
    return prg_uint64(derive_key(secret, Label.PAIRWISE_MASK, round_id, min(a, b), max(a, b)), length)


def _self_mask(seed: bytes, round_id: str, owner: int, length: int) -> npt.NDArray[np.uint64]:
    return prg_uint64(derive_key(seed, Label.SELF_MASK, round_id, owner), length)


_Y_BYTES = 33
_PLAINTEXT_BYTES = 8 + 8 + 2 * _Y_BYTES


def _share_plaintext(sender: int, recipient: int, seed_y: int, key_y: int) -> bytes:
    return (
        sender.to_bytes(8, "big")
        + recipient.to_bytes(8, "big")
        + seed_y.to_bytes(_Y_BYTES, "big")
        + key_y.to_bytes(_Y_BYTES, "big")
    )


def encode_input(vector: npt.ArrayLike, vector_length: int, value_bits: int) -> npt.NDArray[np.uint64]:
    """Check an integer input vector against the round bound and map it into the ring.

    Parameters
    ----------
    vector : array_like
        Integers: signed (int8..int64, Python ints) or ring elements (uint64, read as two's
        complement). Floats are refused: quantise first (``protocols.encoding``).
    vector_length : int
        Required length.
    value_bits : int
        Every value must lie in [-2**value_bits, 2**value_bits).

    Returns
    -------
    numpy.ndarray
        uint64 two's-complement encoding.

    Raises
    ------
    InputOutOfRange
        Wrong length, non-integer type, or a value outside the bound (never clipped).
    """
    arr = np.asarray(vector)
    if arr.ndim != 1 or arr.shape[0] != vector_length:
        raise InputOutOfRange(f"input vector has shape {arr.shape}; accepted: ({vector_length},)")
    if arr.dtype == object:
        try:
            arr = np.array([int(v) for v in arr], dtype=np.int64)
        except (OverflowError, TypeError, ValueError) as err:
            raise InputOutOfRange(
                f"input vector: {err}; accepted: integers in [-2**{value_bits}, 2**{value_bits})"
            ) from None
    if arr.dtype.kind == "u":
        signed = arr.astype(np.uint64).view(np.int64)
    elif arr.dtype.kind == "i":
        signed = arr.astype(np.int64)
    else:
        raise InputOutOfRange(f"input vector has dtype {arr.dtype}; accepted: integers (quantise floats first)")
    bound = 1 << value_bits
    bad = np.flatnonzero((signed < -bound) | (signed >= bound))
    if bad.size:
        pos = int(bad[0])
        raise InputOutOfRange(
            f"input vector position {pos}: value {int(signed[pos])} is outside [-2**{value_bits}, 2**{value_bits}); "
            f"{bad.size} value(s) out of range; values are never clipped"
        )
    return signed.view(np.uint64).copy()


def to_signed(total: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Read a ring sum as signed 64-bit integers (two's complement)."""
    return np.asarray(total, dtype=np.uint64).view(np.int64)


# =========================================================================== client


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass
class ClientState:
    """Everything a client keeps between stages of one round (secrets included: never sent)."""

    node_id: int
    phase: ClientPhase = ClientPhase.NEW
    params: RoundParams | None = None
    cipher_sk: bytes = b""
    cipher_pk: bytes = b""
    mask_sk: bytes = b""
    mask_pk: bytes = b""
    self_seed: bytes = b""
    peer_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    held_shares: dict[int, tuple[int, int]] = field(default_factory=dict)
    mask_partners: tuple[int, ...] = ()
    survivors: tuple[int, ...] = ()
    """The survivor set this node signed at the consistency check (the only one it ever unmasks for)."""
    revealed: dict[int, str] = field(default_factory=dict)
    """Peer -> which of its shares this node revealed (``"seed"`` or ``"key"``): never both."""

    def to_json(self) -> bytes:
        """Serialise (for a Flower node's context state, which stays on the node)."""
        p = self.params
        doc = {
            "node_id": self.node_id,
            "phase": self.phase.value,
            "params": None
            if p is None
            else {
                "round_id": p.round_id,
                "participants": list(p.participants),
                "vector_length": p.vector_length,
                "threshold": p.threshold,
                "degree": p.degree,
                "value_bits": p.value_bits,
            },
            "cipher_sk": _b64(self.cipher_sk),
            "cipher_pk": _b64(self.cipher_pk),
            "mask_sk": _b64(self.mask_sk),
            "mask_pk": _b64(self.mask_pk),
            "self_seed": _b64(self.self_seed),
            "peer_keys": {str(k): [_b64(c), _b64(m)] for k, (c, m) in self.peer_keys.items()},
            "held_shares": {str(k): [str(s), str(t)] for k, (s, t) in self.held_shares.items()},
            "mask_partners": list(self.mask_partners),
            "survivors": list(self.survivors),
            "revealed": {str(k): v for k, v in self.revealed.items()},
        }
        return json.dumps(doc, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, blob: bytes) -> ClientState:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(blob)
        raw = doc["params"]
        params = (
            None
            if raw is None
            else RoundParams(
                round_id=raw["round_id"],
                participants=tuple(raw["participants"]),
                vector_length=raw["vector_length"],
                threshold=raw["threshold"],
                degree=raw["degree"],
                value_bits=raw["value_bits"],
            )
        )
        return cls(
            node_id=doc["node_id"],
            phase=ClientPhase(doc["phase"]),
            params=params,
            cipher_sk=_unb64(doc["cipher_sk"]),
            cipher_pk=_unb64(doc["cipher_pk"]),
            mask_sk=_unb64(doc["mask_sk"]),
            mask_pk=_unb64(doc["mask_pk"]),
            self_seed=_unb64(doc["self_seed"]),
            peer_keys={int(k): (_unb64(c), _unb64(m)) for k, (c, m) in doc["peer_keys"].items()},
            held_shares={int(k): (int(s), int(t)) for k, (s, t) in doc["held_shares"].items()},
            mask_partners=tuple(doc["mask_partners"]),
            survivors=tuple(doc.get("survivors", ())),
            revealed={int(k): str(v) for k, v in doc.get("revealed", {}).items()},
        )


class SecAggClient:
    """Client side of one round. Each method answers one stage and advances the state.

    Parameters
    ----------
    node_id : int
        This node's id (as the server and the roster know it).
    identity : Ed25519PrivateKey
        The node's enrolled identity key; signs its key advertisement.
    roster : Mapping[int, Ed25519PublicKey]
        Enrolled identity keys of all nodes, from a source the node trusts (not the server).
    randbytes : RandBytes
        Randomness (``os.urandom``; a deterministic stream only in known-answer tests).
    state : ClientState | None
        State restored from a previous stage, or ``None`` for a new round.
    policy : Callable[[RoundParams], None] | None
        Checks the server's round parameters against what the node was invited to (e.g.
        :meth:`protocols.secagg_policy.RoundPolicy.check`); raises to refuse the round before any
        key is generated or sent.
    """

    def __init__(
        self,
        node_id: int,
        identity: Ed25519PrivateKey,
        roster: Mapping[int, Ed25519PublicKey],
        *,
        randbytes: RandBytes = os.urandom,
        state: ClientState | None = None,
        policy: Callable[[RoundParams], None] | None = None,
    ) -> None:
        self.identity = identity
        self.roster = dict(roster)
        self.randbytes = randbytes
        self.policy = policy
        self.state = state if state is not None else ClientState(node_id=node_id)
        if self.state.node_id != node_id:
            raise ValueError(f"SecAggClient: state belongs to node {self.state.node_id}, not {node_id}")

    @property
    def node_id(self) -> int:
        """This node's id."""
        return self.state.node_id

    # ------------------------------------------------------------------ checks

    def _params(self) -> RoundParams:
        if self.state.params is None:
            raise ProtocolViolation(f"node {self.node_id}: no round in progress")
        return self.state.params

    def _check(self, request: Request, stage: Stage) -> None:
        me = self.node_id
        if request.stage != stage:
            raise ProtocolViolation(
                f"node {me}: message is marked stage {request.stage!r} but was delivered as {stage.value!r}: rejected"
            )
        if request.recipient != me:
            raise ProtocolViolation(f"node {me}: message for node {request.recipient} was delivered here: rejected")
        if self.state.phase != _PHASE_BEFORE[stage]:
            raise ProtocolViolation(
                f"node {me}: stage {stage.value!r} message arrived in phase {self.state.phase.value!r}: "
                "rejected as replayed or out of order"
            )
        if stage != Stage.ADVERTISE_KEYS and request.round_id != self._params().round_id:
            raise ProtocolViolation(
                f"node {me}: message for round {request.round_id!r} arrived during round "
                f"{self._params().round_id!r}: rejected as a replay"
            )

    def check_params(self, params: RoundParams) -> None:
        """Refuse round parameters this node cannot take part in (before anything is generated or sent)."""
        me = self.node_id
        if self.policy is not None:  # first: its reasons name what the firm's invitation accepts
            self.policy(params)
        if me not in params.participants:
            raise ProtocolViolation(f"node {me}: not among the round's participants {list(params.participants)}")
        if me not in self.roster:
            raise ProtocolViolation(f"node {me}: has no entry in its own roster")
        strangers = sorted(set(params.participants) - self.roster.keys())
        if strangers:
            raise ProtocolViolation(f"node {me}: participants {strangers} have no identity key in its roster")
        own_pk = self.identity.public_key().public_bytes_raw()
        if self.roster[me].public_bytes_raw() != own_pk:
            raise ProtocolViolation(f"node {me}: identity key does not match its roster entry")

    # ------------------------------------------------------------------ stages

    def advertise(self, request: AdvertiseRequest) -> KeyAdvertisement:
        """Stage 0: check the round parameters, generate two X25519 key pairs and sign their advertisement."""
        self._check(request, Stage.ADVERTISE_KEYS)
        params, me = request.params, self.node_id
        self.check_params(params)
        st = self.state
        st.params = params
        st.cipher_sk, st.cipher_pk = x25519_keypair(self.randbytes)
        st.mask_sk, st.mask_pk = x25519_keypair(self.randbytes)
        index = params.x_of(me) - 1
        payload = advertisement_payload(params.round_id, me, index, st.cipher_pk, st.mask_pk)
        st.phase = ClientPhase.ADVERTISED
        return KeyAdvertisement(
            params.round_id, me, index, st.cipher_pk, st.mask_pk, ed25519_sign(self.identity, payload)
        )

    def share_keys(self, request: ShareKeysRequest) -> ShareKeysReply:
        """Stage 1: verify neighbours' advertisements; Shamir-share the self-mask seed and mask key to them."""
        self._check(request, Stage.SHARE_KEYS)
        params, me, st = self._params(), self.node_id, self.state
        closed = params.closed_neighbourhood(me)
        verified: dict[int, KeyAdvertisement] = {}
        for ad in request.advertisements:
            if ad.sender not in closed:
                raise ProtocolViolation(f"node {me}: received the advertisement of node {ad.sender}, not a neighbour")
            if ad.sender in verified:
                raise ProtocolViolation(f"node {me}: received two advertisements of node {ad.sender}")
            _verify_advertisement(ad, params, self.roster)
            verified[ad.sender] = ad
        own = verified.get(me)
        if own is None or (own.cipher_pk, own.mask_pk) != (st.cipher_pk, st.mask_pk):
            raise ProtocolViolation(f"node {me}: its own key advertisement is missing or altered")
        keys = [k for ad in verified.values() for k in (ad.cipher_pk, ad.mask_pk)]
        if len(set(keys)) != len(keys):
            raise ProtocolViolation(f"node {me}: advertised public keys repeat")
        if len(verified) < params.threshold:
            raise SecAggAborted(Stage.SHARE_KEYS, len(verified), params.threshold, f"neighbourhood of node {me}")
        st.peer_keys = {j: (ad.cipher_pk, ad.mask_pk) for j, ad in verified.items()}
        st.self_seed = self.randbytes(32)
        holders = sorted(verified)
        xs = [params.x_of(j) for j in holders]
        seed_ys = split_secret(st.self_seed, params.threshold, xs, self.randbytes)
        key_ys = split_secret(st.mask_sk, params.threshold, xs, self.randbytes)
        out: list[EncryptedShare] = []
        cipher_sk = load_x25519_private(st.cipher_sk)
        for j, x in zip(holders, xs, strict=True):
            if j == me:
                st.held_shares[me] = (seed_ys[x], key_ys[x])
                continue
            key = _share_key(cipher_sk, verified[j].cipher_pk, params.round_id, me, j)
            blob = aead_seal(
                key, _share_plaintext(me, j, seed_ys[x], key_ys[x]), _share_aad(params.round_id, me, j), self.randbytes
            )
            out.append(EncryptedShare(me, j, blob))
        st.phase = ClientPhase.SHARED
        return ShareKeysReply(params.round_id, me, tuple(out))

    def mask_input(self, request: MaskedInputRequest, vector: npt.ArrayLike) -> MaskedInputReply:
        """Stage 2: decrypt the shares received and return ``x + self mask + pairwise masks`` mod 2**64."""
        self._check(request, Stage.MASKED_INPUT)
        params, me, st = self._params(), self.node_id, self.state
        x_vec = encode_input(vector, params.vector_length, params.value_bits)
        received: dict[int, tuple[int, int]] = {}
        cipher_sk = load_x25519_private(st.cipher_sk)
        for es in request.shares:
            j = es.sender
            if es.recipient != me:
                raise ProtocolViolation(f"node {me}: received a share addressed to node {es.recipient}")
            if j == me or j not in st.peer_keys or j in received:
                raise ProtocolViolation(f"node {me}: unexpected or repeated share from node {j}")
            key = _share_key(cipher_sk, st.peer_keys[j][0], params.round_id, j, me)
            try:
                plain = aead_open(key, es.ciphertext, _share_aad(params.round_id, j, me))
            except VerificationFailed:
                raise AuthenticationFailed(
                    f"node {me}: the encrypted share from node {j} does not verify for round "
                    f"{params.round_id!r} stage {Stage.SHARE_KEYS.value!r} (tampered, misrouted, or "
                    "replayed from another round or stage); rejected"
                ) from None
            if (
                len(plain) != _PLAINTEXT_BYTES
                or int.from_bytes(plain[:8], "big") != j
                or int.from_bytes(plain[8:16], "big") != me
            ):
                raise AuthenticationFailed(f"node {me}: the share from node {j} names another sender or recipient")
            seed_y = int.from_bytes(plain[16 : 16 + _Y_BYTES], "big")
            key_y = int.from_bytes(plain[16 + _Y_BYTES :], "big")
            if seed_y >= FIELD_PRIME or key_y >= FIELD_PRIME:
                raise AuthenticationFailed(f"node {me}: the share from node {j} is out of range")
            received[j] = (seed_y, key_y)
        if len(received) + 1 < params.threshold:
            raise SecAggAborted(Stage.MASKED_INPUT, len(received) + 1, params.threshold, f"neighbourhood of node {me}")
        st.held_shares.update(received)
        st.mask_partners = tuple(sorted(received))
        length = params.vector_length
        y = x_vec
        y += _self_mask(st.self_seed, params.round_id, me, length)
        mask_sk = load_x25519_private(st.mask_sk)
        for j in st.mask_partners:
            mask = _pairwise_mask(mask_sk, st.peer_keys[j][1], params.round_id, me, j, length)
            if me < j:
                y += mask
            else:
                y -= mask
        st.phase = ClientPhase.MASKED
        return MaskedInputReply(params.round_id, me, y)

    def consistency(self, request: ConsistencyRequest) -> ConsistencyReply:
        """Stage 3: sign the survivor set the server shows; it is the only set this node will unmask for."""
        self._check(request, Stage.CONSISTENCY)
        params, me, st = self._params(), self.node_id, self.state
        survivors = set(request.survivors)
        if len(survivors) != len(request.survivors):
            raise ProtocolViolation(f"node {me}: the survivor set lists a node twice")
        if me not in survivors or not survivors <= set(params.participants):
            raise ProtocolViolation(f"node {me}: the survivor set omits this node or names non-participants")
        live = survivors & params.closed_neighbourhood(me)
        if len(survivors) < params.threshold or len(live) < params.threshold:
            raise SecAggAborted(Stage.CONSISTENCY, len(live), params.threshold, f"survivors around node {me}")
        st.survivors = tuple(sorted(survivors))
        st.phase = ClientPhase.CHECKED
        signature = ed25519_sign(self.identity, consistency_payload(params.round_id, me, st.survivors))
        return ConsistencyReply(params.round_id, me, signature)

    def unmask(self, request: UnmaskRequest) -> UnmaskReply:
        """Stage 4: given ``t`` signatures over the set it signed, reveal seed shares of survivors and key shares of dropped peers.

        A peer's shares are revealed only when at least ``threshold`` of its own share holders
        signed exactly this node's survivor set, so a server telling holders different stories
        gets both shares of no one; and a peer whose one share was revealed never gets the other.
        """
        self._check(request, Stage.UNMASK)
        params, me, st = self._params(), self.node_id, self.state
        survivor_set = set(st.survivors)
        peers = set(st.mask_partners) | {me}
        relevant = set().union(*(params.closed_neighbourhood(j) for j in peers)) & survivor_set
        signed: set[int] = set()
        for signer in sorted(set(request.signatures) & relevant):
            key = self.roster.get(signer)
            payload = consistency_payload(params.round_id, signer, st.survivors)
            try:
                if key is None:
                    raise VerificationFailed("no enrolled key")
                ed25519_verify(key, request.signatures[signer], payload)
            except VerificationFailed:
                raise AuthenticationFailed(
                    f"node {me}: the consistency signature of node {signer} does not verify over the survivor set "
                    f"this node signed for round {params.round_id!r} (the server showed nodes different sets, or "
                    "forged it); refusing to reveal any share"
                ) from None
            signed.add(signer)
        for j in sorted(peers):
            support = len(signed & params.closed_neighbourhood(j))
            if support < params.threshold:
                raise SecAggAborted(
                    Stage.UNMASK,
                    support,
                    params.threshold,
                    f"node {me} holds {support} signature(s) over its survivor set from node {j}'s share holders; "
                    "no share is revealed",
                )
        survivors = peers & survivor_set
        dropped = set(st.mask_partners) - survivor_set
        for j, kind in [*((j, "seed") for j in survivors), *((j, "key") for j in dropped)]:
            if st.revealed.get(j, kind) != kind:
                raise ProtocolViolation(
                    f"node {me}: already revealed node {j}'s {st.revealed[j]} share; refusing to reveal its {kind} "
                    "share too"
                )
        x = params.x_of(me)
        seed_shares = {j: encode_share(x, st.held_shares[j][0]) for j in sorted(survivors)}
        key_shares = {j: encode_share(x, st.held_shares[j][1]) for j in sorted(dropped)}
        st.revealed.update({j: "seed" for j in survivors} | {j: "key" for j in dropped})
        # The round is over for this node: forget every secret.
        st.cipher_sk = st.mask_sk = st.self_seed = b""
        st.held_shares = {}
        st.phase = ClientPhase.DONE
        return UnmaskReply(params.round_id, me, seed_shares, key_shares)

    def handle(self, request: Request, vector_source: Callable[[], npt.ArrayLike]) -> Reply:
        """Dispatch a request to its stage; ``vector_source`` is called only at the masked-input stage."""
        if isinstance(request, AdvertiseRequest):
            return self.advertise(request)
        if isinstance(request, ShareKeysRequest):
            return self.share_keys(request)
        if isinstance(request, MaskedInputRequest):
            return self.mask_input(request, vector_source())
        if isinstance(request, ConsistencyRequest):
            return self.consistency(request)
        if isinstance(request, UnmaskRequest):
            return self.unmask(request)
        raise ProtocolViolation(f"node {self.node_id}: unknown request type {type(request).__name__}")


# =========================================================================== server


@dataclass
class ServerState:
    """The server's whole state for one round."""

    params: RoundParams
    roster: dict[int, Ed25519PublicKey]
    awaiting: Stage | None = Stage.ADVERTISE_KEYS
    alive: set[int] = field(default_factory=set)
    dropped: dict[int, Stage] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    advertisements: dict[int, KeyAdvertisement] = field(default_factory=dict)
    partners: dict[int, frozenset[int]] = field(default_factory=dict)
    outbox: dict[int, list[EncryptedShare]] = field(default_factory=dict)
    shared: set[int] = field(default_factory=set)
    survivors: frozenset[int] = frozenset()
    signatures: dict[int, bytes] = field(default_factory=dict)
    masked_sum: npt.NDArray[np.uint64] | None = None
    result: AggregateResult | None = None
    aborted: SecAggAborted | None = None


class SecAggServer:
    """Server side of one round: relays messages, tracks survivors, removes masks.

    Each ``collect_*`` method takes the replies that arrived for a stage, keyed by the
    transport-authenticated sender; a node whose reply is missing or rejected counts as
    dropped at that stage. It returns the requests for the next stage, or raises
    :class:`SecAggAborted` (and forgets every masked vector) when too few remain.
    """

    def __init__(self, params: RoundParams, roster: Mapping[int, Ed25519PublicKey]) -> None:
        missing = [node for node in params.participants if node not in roster]
        if missing:
            raise ValueError(f"SecAggServer: participants {missing} have no identity key in the roster")
        self.state = ServerState(params=params, roster=dict(roster))

    # ------------------------------------------------------------------ helpers

    @property
    def params(self) -> RoundParams:
        """The round parameters."""
        return self.state.params

    def _begin(self, stage: Stage) -> None:
        if self.state.aborted is not None:
            raise ProtocolViolation(
                f"round {self.params.round_id!r} was aborted at stage {self.state.aborted.stage.value!r}"
            )
        if self.state.awaiting != stage:
            raise ProtocolViolation(
                f"round {self.params.round_id!r}: server awaits stage {self.state.awaiting!r}, not {stage.value!r}"
            )

    def _abort(self, stage: Stage, survivors: int, detail: str) -> SecAggAborted:
        st = self.state
        st.masked_sum = None
        st.outbox = {}
        st.awaiting = None
        st.aborted = SecAggAborted(stage, survivors, st.params.threshold, detail)
        return st.aborted

    def _accept(self, stage: Stage, replies: Mapping[int, object], kind: type) -> dict[int, object]:
        """Keep well-addressed replies from live nodes; the rest count as dropped (with a reason)."""
        st, accepted = self.state, {}
        for sender, reply in replies.items():
            if sender not in st.alive:
                st.rejected.setdefault(sender, f"stage {stage.value}: reply from a node not in the round at this stage")
                continue
            reason = ""
            if not isinstance(reply, kind):
                reason = f"stage {stage.value}: reply of type {type(reply).__name__}"
            elif getattr(reply, "stage", None) != stage or getattr(reply, "round_id", None) != st.params.round_id:
                reason = (
                    f"stage {stage.value}: reply marked round {getattr(reply, 'round_id', None)!r} stage "
                    f"{getattr(reply, 'stage', None)!r}: replayed"
                )
            elif getattr(reply, "sender", None) != sender:
                reason = f"stage {stage.value}: reply claims sender {getattr(reply, 'sender', None)}"
            if reason:
                st.rejected[sender] = reason
            else:
                accepted[sender] = reply
        for node in st.alive - accepted.keys():
            st.dropped[node] = stage
        st.alive = set(accepted)
        return accepted

    def _prune(self, stage: Stage, support: Callable[[int], Collection[int]]) -> None:
        """Drop nodes whose live support falls below the threshold, until none does."""
        st, t = self.state, self.state.params.threshold
        changed = True
        while changed:
            changed = False
            for node in sorted(st.alive):
                if len(set(support(node)) & st.alive) < t:
                    st.alive.discard(node)
                    st.dropped[node] = stage
                    st.rejected.setdefault(node, f"stage {stage.value}: fewer than {t} live neighbours")
                    changed = True

    # ------------------------------------------------------------------ stages

    def start(self) -> dict[int, AdvertiseRequest]:
        """Stage 0 requests: the round parameters, to every participant."""
        self._begin(Stage.ADVERTISE_KEYS)
        self.state.alive = set(self.params.participants)
        return {node: AdvertiseRequest(self.params, node) for node in self.params.participants}

    def collect_advertisements(self, replies: Mapping[int, object]) -> dict[int, ShareKeysRequest]:
        """Verify signed key advertisements; send each node those of its live neighbourhood."""
        stage, st, p = Stage.ADVERTISE_KEYS, self.state, self.params
        self._begin(stage)
        responders = len(replies.keys() & st.alive)
        accepted = self._accept(stage, replies, KeyAdvertisement)
        seen_keys: set[bytes] = set()
        for node in sorted(accepted):
            ad = accepted[node]
            assert isinstance(ad, KeyAdvertisement)
            try:
                _verify_advertisement(ad, p, st.roster)
                if ad.cipher_pk == ad.mask_pk or {ad.cipher_pk, ad.mask_pk} & seen_keys:
                    raise ProtocolViolation(f"node {node} advertised public keys that repeat")
            except ProtocolViolation as err:
                st.rejected[node] = f"stage {stage.value}: {err}"
                st.dropped[node] = stage
                st.alive.discard(node)
                continue
            seen_keys |= {ad.cipher_pk, ad.mask_pk}
            st.advertisements[node] = ad
        self._prune(stage, p.closed_neighbourhood)
        if not st.alive:
            raise self._abort(stage, responders, "every node's live neighbourhood is below the threshold")
        st.awaiting = Stage.SHARE_KEYS
        return {
            node: ShareKeysRequest(
                p.round_id,
                node,
                tuple(st.advertisements[j] for j in sorted(p.closed_neighbourhood(node) & st.alive)),
            )
            for node in sorted(st.alive)
        }

    def collect_shares(self, replies: Mapping[int, object]) -> dict[int, MaskedInputRequest]:
        """Route encrypted shares between nodes that shared with each other."""
        stage, st, p = Stage.SHARE_KEYS, self.state, self.params
        self._begin(stage)
        responders = len(replies.keys() & st.alive)
        offered = {node: p.closed_neighbourhood(node) & st.alive for node in st.alive}
        accepted = self._accept(stage, replies, ShareKeysReply)
        sent: dict[int, dict[int, EncryptedShare]] = {}
        for node in sorted(accepted):
            reply = accepted[node]
            assert isinstance(reply, ShareKeysReply)
            by_recipient = {es.recipient: es for es in reply.shares}
            if (
                len(by_recipient) != len(reply.shares)
                or any(es.sender != node for es in reply.shares)
                or set(by_recipient) != offered[node] - {node}
            ):
                st.rejected[node] = f"stage {stage.value}: shares not addressed to exactly its live neighbours"
                st.dropped[node] = stage
                st.alive.discard(node)
                continue
            sent[node] = by_recipient

        def holders(node: int) -> set[int]:
            return {node} | {j for j in sent.get(node, {}) if node in sent.get(j, {})}

        self._prune(stage, holders)
        if not st.alive:
            raise self._abort(stage, responders, "every node's live neighbourhood is below the threshold")
        st.shared = set(st.alive)
        st.partners = {node: frozenset(holders(node) & st.alive - {node}) for node in st.alive}
        st.outbox = {node: [sent[j][node] for j in sorted(st.partners[node])] for node in st.alive}
        st.awaiting = Stage.MASKED_INPUT
        return {node: MaskedInputRequest(p.round_id, node, tuple(st.outbox[node])) for node in sorted(st.alive)}

    def collect_masked_inputs(self, replies: Mapping[int, object]) -> dict[int, ConsistencyRequest]:
        """Sum masked vectors; show every survivor the survivor set, for it to sign."""
        stage, st, p = Stage.MASKED_INPUT, self.state, self.params
        self._begin(stage)
        st.outbox = {}
        accepted = self._accept(stage, replies, MaskedInputReply)
        total = np.zeros(p.vector_length, dtype=np.uint64)
        for node in sorted(accepted):
            reply = accepted[node]
            assert isinstance(reply, MaskedInputReply)
            masked = np.asarray(reply.masked)
            if masked.dtype != np.uint64 or masked.shape != (p.vector_length,):
                st.rejected[node] = f"stage {stage.value}: masked vector of dtype {masked.dtype} shape {masked.shape}"
                st.dropped[node] = stage
                st.alive.discard(node)
                continue
            total += masked
        for node in sorted(st.shared):
            live = ({node} | st.partners[node]) & st.alive
            if len(live) < p.threshold:
                raise self._abort(stage, len(st.alive), f"only {len(live)} of node {node}'s share holders remain")
        st.masked_sum = total
        st.survivors = frozenset(st.alive)
        st.awaiting = Stage.CONSISTENCY
        survivors = tuple(sorted(st.survivors))
        return {node: ConsistencyRequest(p.round_id, node, survivors) for node in survivors}

    def collect_consistency(self, replies: Mapping[int, object]) -> dict[int, UnmaskRequest]:
        """Verify survivors' signatures over the survivor set; forward to each the signatures it needs."""
        stage, st, p = Stage.CONSISTENCY, self.state, self.params
        self._begin(stage)
        accepted = self._accept(stage, replies, ConsistencyReply)
        survivors = tuple(sorted(st.survivors))
        for node in sorted(accepted):
            reply = accepted[node]
            assert isinstance(reply, ConsistencyReply)
            try:
                ed25519_verify(st.roster[node], reply.signature, consistency_payload(p.round_id, node, survivors))
            except VerificationFailed:
                st.rejected[node] = f"stage {stage.value}: signature over the survivor set does not verify"
                st.dropped[node] = stage
                st.alive.discard(node)
                continue
            st.signatures[node] = reply.signature
        for node in sorted(st.shared):
            holders = ({node} | st.partners[node]) & st.alive
            if len(holders) < p.threshold:
                raise self._abort(stage, len(st.alive), f"only {len(holders)} of node {node}'s share holders signed")
        st.awaiting = Stage.UNMASK
        requests = {}
        for node in sorted(st.alive):
            wanted = set().union(*(p.closed_neighbourhood(j) for j in {node} | st.partners[node])) & st.alive
            requests[node] = UnmaskRequest(p.round_id, node, {j: st.signatures[j] for j in sorted(wanted)})
        return requests

    def collect_unmask(self, replies: Mapping[int, object]) -> AggregateResult:
        """Reconstruct survivors' self-mask seeds and dropped nodes' mask keys; return the unmasked sum."""
        stage, st, p = Stage.UNMASK, self.state, self.params
        self._begin(stage)
        contributors = set(st.survivors)
        late = st.shared - contributors
        accepted = self._accept(stage, replies, UnmaskReply)
        seed_points: dict[int, dict[int, int]] = {j: {} for j in contributors}
        key_points: dict[int, dict[int, int]] = {j: {} for j in late}
        for node in sorted(accepted):
            reply = accepted[node]
            assert isinstance(reply, UnmaskReply)
            want_seed = ({node} | st.partners[node]) & contributors
            want_key = st.partners[node] & late
            try:
                if set(reply.seed_shares) != want_seed or set(reply.key_shares) != want_key:
                    raise ValueError("shares for other nodes than asked")
                seeds = {j: decode_share(b) for j, b in reply.seed_shares.items()}
                keys = {j: decode_share(b) for j, b in reply.key_shares.items()}
                if any(x != p.x_of(node) for x, _ in [*seeds.values(), *keys.values()]):
                    raise ValueError("shares at another node's x coordinate")
            except ValueError as err:
                st.rejected[node] = f"stage {stage.value}: {err}"
                st.dropped[node] = stage
                st.alive.discard(node)
                continue
            for j, (x, y) in seeds.items():
                seed_points[j][x] = y
            for j, (x, y) in keys.items():
                key_points[j][x] = y
        short = [j for j, pts in [*seed_points.items(), *key_points.items()] if len(pts) < p.threshold]
        if short:
            raise self._abort(stage, len(st.alive), f"too few shares to unmask node {min(short)}")
        assert st.masked_sum is not None
        total = st.masked_sum.copy()
        length = p.vector_length
        try:
            for j in sorted(contributors):
                seed = reconstruct_secret(seed_points[j], p.threshold)
                total -= _self_mask(seed, p.round_id, j, length)
            for j in sorted(late):
                mask_raw = reconstruct_secret(key_points[j], p.threshold)
                if x25519_public_from_private(mask_raw) != st.advertisements[j].mask_pk:
                    raise VerificationFailed("reconstructed key does not match the advertisement")
                mask_sk = load_x25519_private(mask_raw)
                for i in sorted(st.partners[j] & contributors):
                    mask = _pairwise_mask(mask_sk, st.advertisements[i].mask_pk, p.round_id, i, j, length)
                    # node i added +mask if i < j, else -mask; undo it.
                    if i < j:
                        total -= mask
                    else:
                        total += mask
        except VerificationFailed:
            st.masked_sum = None
            st.awaiting = None
            raise AuthenticationFailed(
                f"round {p.round_id!r}: shares returned at the unmask stage are inconsistent; nothing is published"
            ) from None
        st.masked_sum = None
        st.awaiting = None
        st.result = AggregateResult(p.round_id, total, tuple(sorted(contributors)), dict(st.dropped))
        return st.result


# =========================================================================== in-process driver


def run_in_process(
    server: SecAggServer,
    clients: Mapping[int, SecAggClient],
    vectors: Mapping[int, npt.ArrayLike],
    dropouts: Mapping[Stage, Collection[int]] | None = None,
) -> AggregateResult:
    """Run a whole round with every party in this process (tests, benchmarks).

    A node listed in ``dropouts[stage]`` sends no reply from that stage on. Client
    exceptions propagate.
    """
    drop = {stage: set((dropouts or {}).get(stage, ())) for stage in STAGES}
    gone: set[int] = set()

    def answer(stage: Stage, requests: Mapping[int, Request]) -> dict[int, object]:
        gone.update(drop[stage])
        replies: dict[int, object] = {}
        for node, req in requests.items():
            if node not in gone:
                replies[node] = clients[node].handle(req, functools.partial(vectors.__getitem__, node))
        return replies

    requests0 = server.start()
    requests1 = server.collect_advertisements(answer(Stage.ADVERTISE_KEYS, requests0))
    requests2 = server.collect_shares(answer(Stage.SHARE_KEYS, requests1))
    requests3 = server.collect_masked_inputs(answer(Stage.MASKED_INPUT, requests2))
    requests4 = server.collect_consistency(answer(Stage.CONSISTENCY, requests3))
    return server.collect_unmask(answer(Stage.UNMASK, requests4))
