"""A lying secure-aggregation server, for the attack tests: it drives real ClientApps stage by stage and deviates on demand.

:class:`Cohort` is a set of enterprise nodes as the in-process Grid runs them: each has its own node
store (background data, one firm's template, the aggregator key pinned, the verified invitation
with its signed roster and the firm's consent) and runs the node's real ClientApp
(:data:`node.flower_client.client_app`). One roster member can be a Sybil: its identity key is the
adversary's, so the adversary answers for it locally with full knowledge of its secrets.

:class:`LyingServer` plays the aggregator / SuperLink operator: it picks the round parameters and
participants, shows different survivor sets to different nodes, forwards whatever signatures it
likes, and finally tries to reconstruct the victim's input from everything it collected
(:meth:`LyingServer.recover`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Message
from flwr.clientapp import ClientApp

from keys.identity import generate_identity, public_key_b64, save_private_key
from node import rounds
from node.flower_client import IDENTITY_FILE, client_app
from node.store import NodeStore, OutboxRow
from protocols.disclosure import Stage, screen_layout, stage_round_id, stage_vector
from protocols.flower_apps import (
    MESSAGE_TYPE_SECAGG,
    InProcessGrid,
    NodeConfigKey,
    content_to_reply,
    request_to_content,
)
from protocols.roster import sign_roster
from protocols.secagg import (
    AdvertiseRequest,
    ConsistencyReply,
    ConsistencyRequest,
    EncryptedShare,
    KeyAdvertisement,
    MaskedInputReply,
    MaskedInputRequest,
    Request,
    RoundParams,
    SecAggClient,
    ShareKeysReply,
    ShareKeysRequest,
    UnmaskReply,
    UnmaskRequest,
    _pairwise_mask,  # the adversary recomputes masks exactly as a node does
    _self_mask,
    consistency_payload,
    encode_input,
)
from protocols.secagg_crypto import decode_share, reconstruct_secret, x25519_public_from_private
from protocols.secagg_policy import spec_value_bits
from protocols.spec import RoundSpec, sign_spec, spec_hash

__all__ = ["AGGREGATOR", "Cohort", "LyingServer", "Recovery", "round_params"]

AGGREGATOR = generate_identity()
"""The association's signing key: the adversary signs specs and rosters with it (it is the aggregator)."""


@dataclass
class Cohort:
    """Honest nodes (real ClientApp, own store) and optional Sybils (identity key held by the adversary)."""

    spec: RoundSpec
    homes: dict[int, Path]
    sybils: dict[int, Ed25519PrivateKey]
    roster: dict[int, Ed25519PrivateKey]

    @classmethod
    def create(
        cls,
        base: Path,
        template: Path,
        spec: RoundSpec,
        honest: list[int],
        sybils: list[int] | None = None,
        *,
        consent: bool = True,
        process_uuid: str,
    ) -> Cohort:
        """Node homes for ``honest`` (copies of the ``template`` store), invited to ``spec`` with the roster of all."""
        sybils = sybils or []
        keys = {node: generate_identity() for node in [*honest, *sybils]}
        signed_spec = sign_spec(spec, AGGREGATOR)
        signed_roster = sign_roster(
            AGGREGATOR, spec.round_id, spec_hash(spec), {str(n): public_key_b64(k) for n, k in keys.items()}
        )
        homes = {}
        for node in honest:
            home = base / f"node-{node}"
            home.mkdir(parents=True)
            shutil.copy(template, home / "node.db")
            save_private_key(keys[node], home / IDENTITY_FILE)
            store = NodeStore(f"sqlite:///{home / 'node.db'}")
            try:
                rounds.receive_invitation(store, signed_spec, signed_roster)
                if consent:
                    rounds.approve(store, spec.round_id, process_uuid, confirm_zeros=True, approved_by="attack test")
            finally:
                store.close()
            homes[node] = home
        return cls(spec, homes, {n: keys[n] for n in sybils}, keys)

    @property
    def nodes(self) -> list[int]:
        return sorted(self.roster)

    def grid(self, run_id: int = 1, app: ClientApp = client_app) -> InProcessGrid:
        """A fresh in-process Grid over the honest nodes (fresh contexts: as after a SuperNode restart)."""
        configs = {node: {"pcf-home": str(home)} for node, home in self.homes.items()}
        return InProcessGrid({node: app for node in self.homes}, configs, run_id=run_id)

    def store(self, node: int) -> NodeStore:
        return NodeStore(f"sqlite:///{self.homes[node] / 'node.db'}")

    def outbox(self, node: int) -> list[OutboxRow]:
        store = self.store(node)
        try:
            return rounds.outbox(store, self.spec.round_id)
        finally:
            store.close()

    def stages_sent(self, node: int) -> list[str]:
        return [row.stage for row in self.outbox(node)]

    def vector(self, node: int) -> npt.NDArray[np.uint64]:
        """The victim's approved vector as the ring elements it would mask."""
        store = self.store(node)
        try:
            _spec, contribution = rounds.approved_contribution(store, self.spec.round_id)
        finally:
            store.close()
        screen = stage_vector(self.spec, contribution.ints, Stage.SCREEN, None)  # what the screen stage masks
        return encode_input(screen, len(screen), spec_value_bits(self.spec))

    def json_inputs(self, base: Path, vectors: Mapping[int, npt.NDArray[np.uint64]]) -> dict[int, dict[str, str]]:
        """Node configs for the library ClientApp (``protocols.flower_apps.secagg_client_app``): no invitation check."""
        configs = {}
        for node, home in self.homes.items():
            doc = {
                "identity_key_path": str(home / IDENTITY_FILE),
                "roster": {str(n): public_key_b64(k) for n, k in self.roster.items()},
                "vector": [str(int(v)) for v in vectors[node].view(np.int64)],
            }
            path = base / f"inputs-{node}.json"
            path.write_text(json.dumps(doc))
            configs[node] = {NodeConfigKey.INPUT: str(path)}
        return configs


@dataclass
class Recovery:
    """What the adversary got about the victim: shares of its two secrets, its masked input, its estimate."""

    seed_shares: dict[int, int] = field(default_factory=dict)
    key_shares: dict[int, int] = field(default_factory=dict)
    masked: npt.NDArray[np.uint64] | None = None
    estimate: npt.NDArray[np.uint64] | None = None
    errors: dict[int, str] = field(default_factory=dict)


class LyingServer:
    """The adversary: runs one round over ``grid`` with the parameters it chose, and lies where told."""

    def __init__(self, grid: InProcessGrid, cohort: Cohort, params: RoundParams) -> None:
        self.grid = grid
        self.cohort = cohort
        self.params = params
        self.sybils = {
            node: SecAggClient(node, key, {n: k.public_key() for n, k in cohort.roster.items()})
            for node, key in cohort.sybils.items()
        }
        self.errors: dict[int, str] = {}
        self.ads: dict[int, KeyAdvertisement] = {}
        self.masked: dict[int, npt.NDArray[np.uint64]] = {}

    # ----------------------------------------------------------------------------------- transport

    def exchange(self, requests: Mapping[int, Request]) -> dict[int, object]:
        """Send each node its request (Sybils answer locally); error replies are kept in ``errors``."""
        replies: dict[int, object] = {}
        messages = []
        for node, request in requests.items():
            if node in self.sybils:
                replies[node] = self.sybils[node].handle(request, lambda: np.zeros(self.params.vector_length, np.int64))
            else:
                messages.append(
                    Message(request_to_content(request), dst_node_id=node, message_type=MESSAGE_TYPE_SECAGG)
                )
        for msg in self.grid.send_and_receive(messages):
            node = msg.metadata.src_node_id
            if msg.has_error():
                self.errors[node] = msg.error.reason or ""
            else:
                replies[node] = content_to_reply(msg.content)
        return replies

    # -------------------------------------------------------------------------------------- stages

    def to_masked_input(self, participants: list[int] | None = None) -> list[int]:
        """Run stages 0-2 honestly over ``participants``; return the nodes whose masked input arrived."""
        p, nodes = self.params, participants or list(self.params.participants)
        ads = self.exchange({n: AdvertiseRequest(p, n) for n in nodes})
        self.ads = {n: a for n, a in ads.items() if isinstance(a, KeyAdvertisement)}
        if len(self.ads) < 2:
            return []
        live = sorted(self.ads)
        every = tuple(self.ads[n] for n in live)
        shared = self.exchange({n: ShareKeysRequest(p.round_id, n, every) for n in live})
        routed: dict[int, list[EncryptedShare]] = {n: [] for n in shared}
        for reply in shared.values():
            assert isinstance(reply, ShareKeysReply)
            for es in reply.shares:
                if es.recipient in routed:
                    routed[es.recipient].append(es)
        masked = self.exchange({n: MaskedInputRequest(p.round_id, n, tuple(routed[n])) for n in routed})
        self.masked = {n: np.asarray(r.masked) for n, r in masked.items() if isinstance(r, MaskedInputReply)}
        return sorted(self.masked)

    def split_view(self, victim: int, shown_dropped: list[int]) -> Recovery:
        """Tell ``shown_dropped`` the victim dropped and everyone else it survived; collect every share offered."""
        p = self.params
        everyone = tuple(sorted(self.masked))
        without = tuple(n for n in everyone if n != victim)
        view = {n: (without if n in shown_dropped else everyone) for n in everyone}
        signed = self.exchange({n: ConsistencyRequest(p.round_id, n, view[n]) for n in everyone})
        signatures: dict[tuple[int, ...], dict[int, bytes]] = {everyone: {}, without: {}}
        for node, reply in signed.items():
            if isinstance(reply, ConsistencyReply):
                signatures[view[node]][node] = reply.signature
        for sybil, key in self.cohort.sybils.items():  # a Sybil signs every story
            for story, signers in signatures.items():
                signers[sybil] = key.sign(consistency_payload(p.round_id, sybil, story))
        # Only signers shown the same story (plus Sybils) can vouch for it; send each node its own story's.
        held = {s: client.state.held_shares.get(victim) for s, client in self.sybils.items()}
        unmasked = self.exchange(
            {n: UnmaskRequest(p.round_id, n, signatures[view[n]]) for n in everyone if n in signed and n not in self.sybils}
        )
        rec = Recovery(masked=self.masked.get(victim), errors=dict(self.errors))
        for sybil, shares in held.items():
            if shares is not None:
                x = p.x_of(sybil)
                rec.seed_shares[x], rec.key_shares[x] = shares
        for reply in unmasked.values():
            if isinstance(reply, UnmaskReply):
                if victim in reply.seed_shares:
                    x, y = decode_share(reply.seed_shares[victim])
                    rec.seed_shares[x] = y
                if victim in reply.key_shares:
                    x, y = decode_share(reply.key_shares[victim])
                    rec.key_shares[x] = y
        rec.errors = dict(self.errors)
        rec.estimate = self.recover(victim, rec)
        return rec

    def recover(self, victim: int, rec: Recovery) -> npt.NDArray[np.uint64] | None:
        """The victim's input from its masked vector, self-mask seed and mask key; ``None`` when out of reach."""
        p = self.params
        if rec.masked is None or min(len(rec.seed_shares), len(rec.key_shares)) < p.threshold:
            return None
        seed = reconstruct_secret(rec.seed_shares, p.threshold)
        mask_sk = reconstruct_secret(rec.key_shares, p.threshold)
        if x25519_public_from_private(mask_sk) != self.ads[victim].mask_pk:
            return None
        x = rec.masked.copy()
        x -= _self_mask(seed, p.round_id, victim, p.vector_length)
        for j in sorted(self.ads):
            if j == victim:
                continue
            mask = _pairwise_mask(mask_sk, self.ads[j].mask_pk, p.round_id, victim, j, p.vector_length)
            if victim < j:
                x -= mask
            else:
                x += mask
        return x


def round_params(spec: RoundSpec, participants: list[int], *, threshold: int | None = None) -> RoundParams:
    """Parameters as the adversary picks them: the spec's length and bound, its own participants and threshold."""
    return RoundParams.create(
        stage_round_id(spec.round_id, Stage.SCREEN),
        participants,
        len(screen_layout(spec)),
        threshold=threshold,
        degree=len(participants) - 1,
        value_bits=spec_value_bits(spec),
    )

