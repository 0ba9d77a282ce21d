"""The node's HTTP client of the aggregator: enrolment, invitations, paillier contributions.

Every request after enrolment is signed with the node's identity key (protocols.auth), and every
body the node sends is appended to its outbox before it leaves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.identity import fingerprint, load_private_key, public_key_b64
from node.rounds import (
    AGGREGATOR_KEY_SETTING,
    AGGREGATOR_URL_SETTING,
    ConsentError,
    approved_contribution,
    invitation,
    log_outbound,
    receive_invitation,
)
from node.store import NodeStore
from protocols import paillier
from protocols.auth import sign_enrollment, sign_request
from protocols.canonical import canonical_json
from protocols.errors import InvalidSignature
from protocols.roster import SignedRoster
from protocols.spec import SignedSpec

__all__ = ["PAILLIER_KEY_SETTING", "AggregatorClient", "NodeClientError", "identity_path"]

PAILLIER_KEY_SETTING = "paillier_public_key_sha256"
"""The custodians' joint key this node encrypts to: its ``key_id`` (``canonical.digest(Kind.PAILLIER_KEY, ...)``)."""


class NodeClientError(RuntimeError):
    """The aggregator refused a request or could not be reached; the message says which and why."""


def identity_path(home: Path) -> Path:
    return home / "identity.pem"


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code >= 400:
        try:
            detail = resp.json()
        except ValueError:
            detail = resp.text[:300]
        raise NodeClientError(f"{what}: the aggregator answered {resp.status_code}: {detail}")


class AggregatorClient:
    """Talks to one aggregator on behalf of one node."""

    def __init__(self, store: NodeStore, home: Path, base_url: str | None = None,
                 http: httpx.Client | None = None, key: Ed25519PrivateKey | None = None):
        self.store = store
        self.home = home
        url = base_url or store.get_setting(AGGREGATOR_URL_SETTING)
        if not url:
            raise NodeClientError("no aggregator URL: enrol first (pcf node enroll URL)")
        self.base_url = url.rstrip("/")
        self.http = http or httpx.Client(timeout=30.0)
        self.key = key or load_private_key(identity_path(home))

    def _signed(self, method: str, path: str, body: bytes = b"", *, round_id: str = "-",
                stage: str | None = None) -> httpx.Response:
        headers = sign_request(self.key, method, path, body, datetime.now(UTC))
        if body:
            headers["Content-Type"] = "application/json"
        # the outbox records every request: what was sent is the request line, headers and body
        sent = f"{method} {path}\n".encode() + "".join(f"{k}: {v}\n" for k, v in headers.items()).encode() + body
        log_outbound(self.store, round_id, self.base_url, stage or f"{method} {path.split('?')[0]}", sent)
        return self.http.request(method, self.base_url + path, content=body or None, headers=headers)

    # -- enrolment -----------------------------------------------------------------------------

    def enroll(self, org_zh: str, org_en: str, supernode_public_key: str,
               aggregator_key: str | None = None) -> dict[str, Any]:
        """Send the signed enrolment and pin the aggregator's key (given, or as first seen)."""
        info = self.http.get(self.base_url + "/api/v1/aggregator")
        _raise_for(info, "reading the aggregator's key")
        seen = str(info.json()["public_key"])
        if aggregator_key is not None and aggregator_key != seen:
            raise InvalidSignature(
                f"the aggregator at {self.base_url} presents key {fingerprint(seen)}, not the expected "
                f"{fingerprint(aggregator_key)}; not enrolling")
        body = sign_enrollment(self.key, org_zh, org_en, supernode_public_key).model_dump_json().encode()
        log_outbound(self.store, "-", self.base_url, "enroll", body)
        resp = self.http.post(self.base_url + "/api/v1/members/enroll", content=body,
                              headers={"Content-Type": "application/json"})
        if resp.status_code != 409:  # 409: already enrolled with this key
            _raise_for(resp, "enrolment")
        self.store.set_setting(AGGREGATOR_URL_SETTING, self.base_url)
        self.store.set_setting(AGGREGATOR_KEY_SETTING, seen)
        return self.me()

    def me(self) -> dict[str, Any]:
        resp = self._signed("GET", "/api/v1/members/me")
        _raise_for(resp, "reading this member's status")
        return dict(resp.json())

    # -- invitations ---------------------------------------------------------------------------

    def fetch_invitations(self) -> list[str]:
        """Fetch open rounds, verify spec and roster signatures, keep them; returns the round ids."""
        resp = self._signed("GET", "/api/v1/rounds?state=open")
        _raise_for(resp, "listing open rounds")
        got = []
        for item in resp.json():
            signed = SignedSpec.model_validate(item["signed_spec"])
            roster = SignedRoster.model_validate(item["roster"]) if item.get("roster") else None
            if signed.spec.protocol == "secagg" and roster is None:
                continue  # a secagg round is joinable only once its roster is fixed
            spec = receive_invitation(self.store, signed, roster)
            if item.get("paillier_public_key"):
                self.store.set_setting(f"paillier_key:{spec.round_id}", json.dumps(item["paillier_public_key"]))
            got.append(spec.round_id)
        return got

    # -- paillier ------------------------------------------------------------------------------

    def contribute_paillier(self, round_id: str) -> dict[str, Any]:
        """Encrypt the approved vector to the round's split key, sign it and post it."""
        spec, _roster = invitation(self.store, round_id)
        if spec.protocol != "paillier":
            raise ConsentError(f"round {round_id} uses {spec.protocol}; its inputs travel through the SuperLink")
        raw = self.store.get_setting(f"paillier_key:{round_id}")
        if raw is None:
            raise ConsentError(f"no encryption key for round {round_id}; run `pcf node rounds` first")
        # key_id is the key's canonical digest (from_dict refuses one that does not match n and custodians)
        public = paillier.SplitPublicKey.from_dict(json.loads(raw))
        pinned = self.store.get_setting(PAILLIER_KEY_SETTING)
        if pinned is not None and pinned != public.key_id:
            raise InvalidSignature(
                f"round {round_id} asks to encrypt to key {public.key_id[:16]}, not the custodians' key this node pinned "
                f"({pinned[:16]}); refusing: only the custodians' joint key keeps contributions private")
        _spec, contribution = approved_contribution(self.store, round_id)
        signed = paillier.encrypt_contribution(public, paillier.spec_layout(spec), contribution.ints, round_id, self.key)
        body = canonical_json(signed.to_dict())
        path = f"/api/v1/rounds/{round_id}/contributions"
        resp = self._signed("POST", path, body, round_id=round_id, stage="paillier:contribution")
        _raise_for(resp, f"contributing to round {round_id}")
        return dict(resp.json())


def node_public_summary(home: Path) -> dict[str, str]:
    key = load_private_key(identity_path(home))
    pub = public_key_b64(key)
    return {"identity_public_key": pub, "fingerprint": fingerprint(pub)}
