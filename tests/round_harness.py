"""A whole secagg round over the real Deployment Engine, for the end-to-end and canary tests.

:class:`Firm` is one enterprise node as a test drives it: its own store (background data and one
firm template), identity and SuperNode keys (from :class:`pcf.deploy.Deployment`), enrolment and
signed requests over HTTP, the verified invitation and the firm's consent. :func:`run_round`
creates, opens and runs a round as the association's administrator and waits for its end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from keys.identity import Ed25519PrivateKey, load_private_key
from node import rounds as node_rounds
from node.service import import_paths
from node.store import NodeStore
from pcf.deploy import Deployment, NodeHandle
from pcf.samples import background_files
from protocols.auth import sign_enrollment, sign_request
from protocols.roster import SignedRoster
from protocols.spec import RoundSpec, SignedSpec

__all__ = ["TERMINAL", "Firm", "admin", "enrol_and_start", "open_round", "public", "run_round", "wait_state"]

TERMINAL = ("published", "suppressed", "aborted")


def admin(d: Deployment, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request with the deployment's administrator token, over HTTPS trusting the deployment's CA."""
    headers = {"Authorization": f"Bearer {d.admin_token}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{d.aggregator_url}{path}", headers=headers, timeout=60.0, verify=d.ssl_context(),
                         **kwargs)


def public(d: Deployment, path: str, **kwargs: Any) -> httpx.Response:
    """A public read (log, factors) over HTTPS trusting the deployment's CA."""
    return httpx.get(f"{d.aggregator_url}{path}", timeout=30.0, verify=d.ssl_context(), **kwargs)


@dataclass
class Firm:
    """One enterprise node: store, identity, SuperNode keys, membership."""

    deployment: Deployment
    handle: NodeHandle
    key: Ed25519PrivateKey
    process_uuid: str | None
    member_id: int | None = None
    node_id: str | None = None

    @classmethod
    def create(cls, d: Deployment, name: str, firm_file: Path | None) -> Firm:
        """A node home (identity, SuperNode keys) whose store holds the background data and ``firm_file``."""
        handle = d.add_node(name)
        store = NodeStore(handle.db_url)
        try:
            import_paths(store, background_files() + ([firm_file] if firm_file else []))
            uuid = next((p.uuid for p in store.bundle().processes.values() if p.annual_production), None)
        finally:
            store.close()
        return cls(d, handle, load_private_key(handle.identity_path), uuid)

    def store(self) -> NodeStore:
        return NodeStore(self.handle.db_url)

    def call(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        """A request signed with the node's identity key."""
        headers = sign_request(self.key, method, path, body, datetime.now(UTC))
        if body:
            headers["Content-Type"] = "application/json"
        return httpx.request(method, f"{self.deployment.aggregator_url}{path}", content=body, headers=headers, timeout=30,
                             verify=self.deployment.ssl_context())

    def enroll(self) -> None:
        """Pin the aggregator's key in the store (out of band: from the deployment's key file, checked against
        the key the server presents over the pinned CA) and enrol (identity key + SuperNode public key)."""
        pinned = self.deployment.aggregator_public_key()
        served = public(self.deployment, "/api/v1/aggregator").json()["public_key"]
        assert served == pinned, (served, pinned)
        store = self.store()
        try:
            store.set_setting(node_rounds.AGGREGATOR_KEY_SETTING, pinned)
        finally:
            store.close()
        body = sign_enrollment(
            self.key, f"{self.handle.name}（中文）", self.handle.name, self.handle.supernode_public.read_text().strip()
        )
        response = httpx.post(
            f"{self.deployment.aggregator_url}/api/v1/members/enroll", json=body.model_dump(), timeout=10,
            verify=self.deployment.ssl_context(),
        )
        assert response.status_code == 201, response.text
        self.member_id = response.json()["id"]

    def approve_membership(self) -> httpx.Response:
        """The administrator approves the member (which registers its SuperNode)."""
        response = admin(self.deployment, "POST", f"/api/v1/members/{self.member_id}/approve")
        if response.status_code == 200:
            self.node_id = response.json()["flower_node_id"]
        return response

    def accept_invitation(self, round_id: str, *, consent: bool) -> node_rounds.Preview | None:
        """Fetch the round with a signed GET, verify spec and roster, and (if ``consent``) approve."""
        response = self.call("GET", f"/api/v1/rounds/{round_id}")
        assert response.status_code == 200, response.text
        data = response.json()
        store = self.store()
        try:
            node_rounds.receive_invitation(
                store,
                SignedSpec.model_validate(data["signed_spec"]),
                SignedRoster.model_validate(data["roster"]) if data["roster"] else None,
            )
            if not consent:
                return None
            assert self.process_uuid is not None
            return node_rounds.approve(store, round_id, self.process_uuid, confirm_zeros=True, approved_by="test")
        finally:
            store.close()

    def outbox(self, round_id: str) -> list[Any]:
        store = self.store()
        try:
            return node_rounds.outbox(store, round_id)
        finally:
            store.close()


def wait_state(d: Deployment, round_id: str, timeout: float) -> dict[str, Any]:
    """Poll the round until it ends (or ``timeout``); return its public JSON."""
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = admin(d, "GET", f"/api/v1/rounds/{round_id}").json()
        if data["state"] in TERMINAL or time.monotonic() > deadline:
            return data
        time.sleep(0.25)


def enrol_and_start(d: Deployment, firms: list[Firm]) -> None:
    """Enrol every firm, approve it (registering its SuperNode) and start its SuperNode."""
    for firm in firms:
        firm.enroll()
        response = firm.approve_membership()
        assert response.status_code == 200, response.text
        assert firm.node_id is not None and firm.node_id.isdigit(), response.text
        d.start_supernode(firm.handle)


def open_round(d: Deployment, spec: RoundSpec) -> dict[str, Any]:
    """Create and open ``spec``'s round as the administrator; return the opened round."""
    created = admin(
        d, "POST", "/api/v1/rounds", content=spec.model_dump_json(), headers={"Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    opened = admin(d, "POST", f"/api/v1/rounds/{spec.round_id}/open")
    assert opened.status_code == 200, opened.text
    data: dict[str, Any] = opened.json()
    return data


def run_round(d: Deployment, round_id: str, timeout: float = 90.0) -> dict[str, Any]:
    """Run the open round; wait for its end."""
    response = admin(d, "POST", f"/api/v1/rounds/{round_id}/run")
    assert response.status_code == 202, response.text
    return wait_state(d, round_id, timeout)
