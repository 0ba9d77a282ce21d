"""The aggregator service over real HTTP: roles, round lifecycle with restarts, suppression, versions, log, verify, delivery."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from agg_server import AggServer, https, session_tls
from conftest import free_port
from example_round import example_firms, example_spec
from typer.testing import CliRunner

from aggregator.cli import agg_app
from aggregator.delivery import FactorPackage, package_message, publish_to
from aggregator.errors import DeliveryFailed
from keys import identity
from pcf.verify import VerifyReport
from pcf.verify import verify_factor as _verify_factor
from protocols import paillier
from protocols.auth import sign_enrollment, sign_request
from protocols.canonical import canonical_json
from protocols.contribution import (
    build_contribution,
    footprint_from_components,
)
from protocols.disclosure import SignedStageContext, Stage, check_context, stage_vector, verify_context
from protocols.spec import RoundSpec, vector_layout

pytestmark = pytest.mark.slow

TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("published", "suppressed", "aborted")


# ------------------------------------------------------------------------------------------ helpers


class Node:
    """An enterprise node as the aggregator sees it: an identity key that signs its requests."""

    def __init__(self, base: str, name: str):
        self.base, self.name = base, name
        self.key = identity.generate_identity()
        self.public_key = identity.public_key_b64(self.key)
        self.fingerprint = identity.fingerprint(self.public_key)
        self.member_id: int | None = None

    def enroll(self) -> httpx.Response:
        body = sign_enrollment(self.key, f"{self.name}（中文）", self.name, f"supernode-{self.fingerprint}")
        response = https.post(f"{self.base}/api/v1/members/enroll", json=body.model_dump())
        if response.status_code == 201:
            self.member_id = response.json()["id"]
        return response

    def call(self, method: str, path: str, body: bytes = b"", *, now: datetime | None = None) -> httpx.Response:
        headers = sign_request(self.key, method, path, body, now or datetime.now(UTC))
        if body:
            headers["Content-Type"] = "application/json"
        return https.request(method, f"{self.base}{path}", content=body, headers=headers)


def verify_factor(factor_id: str, base: str, **kwargs: Any) -> VerifyReport:
    """``pcf verify`` over HTTPS, trusting the test CA."""
    with https.client(timeout=30.0) as client:
        return _verify_factor(factor_id, base, client=client, **kwargs)


def admin(method: str, base: str, path: str, **kwargs: Any) -> httpx.Response:
    return https.request(method, f"{base}{path}", headers=ADMIN, timeout=30.0, **kwargs)


def create_round(base: str, spec: RoundSpec) -> httpx.Response:
    return https.post(
        f"{base}/api/v1/rounds", content=spec.model_dump_json(), headers={**ADMIN, "Content-Type": "application/json"}
    )


def expect_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] == code, body


def make_spec(round_id: str, *, protocol: str = "secagg", key_id: str | None = None) -> RoundSpec:
    return example_spec(
        round_id=round_id,
        protocol=protocol,  # type: ignore[arg-type]
        deadline=datetime.now(UTC) + timedelta(days=1),
        paillier={"key_bits": 2048, "key_id": key_id},
    )


def firm_ints(spec: RoundSpec, weights: list[float] | None = None) -> list[list[int]]:
    out = []
    for i, f in enumerate(example_firms(spec)):
        weight = weights[i] if weights else f.weight
        out.append(build_contribution(spec, f.values, weight, f.footprint_by_gas).ints)
    return out


def approved_nodes(base: str, count: int) -> list[Node]:
    nodes = [Node(base, f"Smelter {chr(65 + i)}") for i in range(count)]
    for n in nodes:
        assert n.enroll().status_code == 201
        assert admin("POST", base, f"/api/v1/members/{n.member_id}/approve").status_code == 200
    return nodes


def wait_state(base: str, round_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = admin("GET", base, f"/api/v1/rounds/{round_id}").json()
        if data["state"] in states or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def log_entries(base: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = https.get(f"{base}/api/v1/log").json()["entries"]
    return entries


def secagg_round(base: str, spec: RoundSpec, inputs: Path, rows: dict[str, list[int]]) -> dict[str, Any]:
    """Create, open and run a secagg round whose fake runner sums ``rows``; wait for its end."""
    inputs.write_text(json.dumps(rows))
    assert create_round(base, spec).status_code == 201
    assert admin("POST", base, f"/api/v1/rounds/{spec.round_id}/open").json()["state"] == "open"
    assert admin("POST", base, f"/api/v1/rounds/{spec.round_id}/run").status_code == 202
    return wait_state(base, spec.round_id)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., AggServer]]:
    """Start aggregator processes sharing one home and database; all stopped by pid at the end."""
    started: list[AggServer] = []
    home = tmp_path / "agg"
    home.mkdir()
    env = {
        "PCF_AGG_ENVIRONMENT": "production",
        "PCF_AGG_HOME": str(home),
        "PCF_AGG_DB_URL": f"sqlite:///{home / 'aggregator.db'}",
        "PCF_AGG_ADMIN_TOKEN": TOKEN,
        "PCF_AGG_PACT_CLIENT_SECRET": "pact-secret-0123456789abcdef",
        "AGG_TEST_INPUTS": str(tmp_path / "inputs.json"),
    }
    port = free_port()

    def start(target: str = "agg_server:make_app", *, new_port: bool = False, **extra: str) -> AggServer:
        server = AggServer(target, free_port() if new_port else port, {**env, **extra}, tmp_path / "server.log",
                           tls=target != "agg_server:make_receiver")  # the receiver (national DB) stays HTTP
        started.append(server)
        return server.start()

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def split_key() -> tuple[paillier.SplitPublicKey, list[paillier.KeyShare]]:
    return paillier.generate_split_key(2, 2048)


# -------------------------------------------------------------------------------------------- roles


def test_each_role_is_refused_where_it_does_not_belong(servers: Callable[..., AggServer]) -> None:
    base = servers().url
    member, pending, revoked = Node(base, "Member"), Node(base, "Pending"), Node(base, "Revoked")
    for n in (member, pending, revoked):
        assert n.enroll().status_code == 201
    admin("POST", base, f"/api/v1/members/{member.member_id}/approve")
    admin("POST", base, f"/api/v1/members/{revoked.member_id}/approve")
    assert admin("POST", base, f"/api/v1/members/{revoked.member_id}/revoke").json()["status"] == "revoked"
    assert create_round(base, make_spec("roles-1")).status_code == 201

    # public: read-only endpoints answer, everything else asks for credentials
    assert https.get(f"{base}/api/v1/log").status_code == 200
    assert len(https.get(f"{base}/api/v1/members/keys").json()) == 3
    assert https.get(f"{base}/api/v1/factors").status_code == 200
    expect_error(https.get(f"{base}/api/v1/members"), 401, "unauthorized")
    expect_error(https.post(f"{base}/api/v1/rounds/roles-1/open"), 401)
    expect_error(https.get(f"{base}/api/v1/rounds?state=open"), 401)
    expect_error(https.get(f"{base}/api/v1/rounds/roles-1/decryption-request"), 401)
    expect_error(https.get(f"{base}/api/v1/members", headers={"Authorization": "Bearer wrong-token"}), 401)

    # a member is refused admin actions; the admin token is refused member actions
    expect_error(member.call("GET", "/api/v1/members"), 403, "forbidden")
    expect_error(member.call("POST", "/api/v1/rounds/roles-1/open"), 403)
    expect_error(admin("GET", base, "/api/v1/members/me"), 403)
    expect_error(admin("POST", base, "/api/v1/rounds/roles-1/contributions", json={
        "round_id": "roles-1", "key_id": "k", "sender": "s", "ciphertexts": ["1"], "digest": "d", "signature": "s"}), 403)  # fmt: skip

    # members see invitations but never drafts; pending and revoked members see nothing
    assert member.call("GET", "/api/v1/rounds").json() == []
    expect_error(member.call("GET", "/api/v1/rounds/roles-1"), 404)
    assert admin("GET", base, "/api/v1/rounds").json()[0]["state"] == "draft"
    expect_error(pending.call("GET", "/api/v1/rounds?state=open"), 403)
    expect_error(revoked.call("GET", "/api/v1/rounds?state=open"), 403)
    assert pending.call("GET", "/api/v1/members/me").json()["status"] == "pending"

    # signatures: identical requests in a row are both fresh; stale, replayed, over another query, unknown key
    assert [member.call("GET", "/api/v1/rounds").status_code for _ in range(3)] == [200, 200, 200]
    expect_error(member.call("GET", "/api/v1/rounds", now=datetime.now(UTC) - timedelta(minutes=6)), 401, "stale-request")
    path = "/api/v1/rounds?state=open"
    headers = sign_request(member.key, "GET", path, b"", datetime.now(UTC))
    assert https.get(f"{base}{path}", headers=headers).status_code == 200
    expect_error(https.get(f"{base}{path}", headers=headers), 401, "replayed-request")
    headers = sign_request(member.key, "GET", "/api/v1/rounds?state=draft", b"", datetime.now(UTC))
    expect_error(https.get(f"{base}{path}", headers=headers), 401)  # signed another query
    stranger = Node(base, "Stranger")
    expect_error(stranger.call("GET", path), 401)

    # enrolment needs proof of possession, once per key
    forged = sign_enrollment(stranger.key, "伪造", "Forged", "sn").model_copy(update={"identity_public_key": member.public_key})
    expect_error(https.post(f"{base}/api/v1/members/enroll", json=forged.model_dump()), 401)
    expect_error(member.enroll(), 409)
    expect_error(admin("POST", base, f"/api/v1/members/{revoked.member_id}/approve"), 409)
    expect_error(admin("POST", base, "/api/v1/members/999/approve"), 404, "not-found")


# ---------------------------------------------------------------------------------------- lifecycle


def test_secagg_rounds_publish_new_versions_that_verify_and_earlier_versions_stay(
    servers: Callable[..., AggServer], tmp_path: Path
) -> None:
    base = servers().url
    nodes = approved_nodes(base, 4)
    spec1 = make_spec("alu-2024-a")
    rows = dict(zip((n.fingerprint for n in nodes), firm_ints(spec1), strict=True))
    first = secagg_round(base, spec1, tmp_path / "inputs.json", rows)
    assert first["state"] == "published", first
    spec2 = make_spec("alu-2024-b")
    second = secagg_round(base, spec2, tmp_path / "inputs.json", dict(zip(rows, firm_ints(spec2), strict=True)))
    assert second["state"] == "published", second

    types = [e["type"] for e in log_entries(base)]
    assert types == ["spec_published", *["stage"] * 4, "aggregate", "publication"] * 2
    pub = log_entries(base)[-1]["payload"]
    factor_id = pub["factor_id"]
    versions = https.get(f"{base}/api/v1/factors/{factor_id}/versions").json()
    assert [v["version"] for v in versions] == ["01.00.000", "01.00.001"]
    v1 = https.get(f"{base}/api/v1/factors/{factor_id}", params={"version": "01.00.000"}).json()
    v2 = https.get(f"{base}/api/v1/factors/{factor_id}").json()
    assert v1["provenance"]["round_id"] == "alu-2024-a" and v2["provenance"]["round_id"] == "alu-2024-b"
    assert v2["provenance"]["supersedes"] == "01.00.000"
    assert v2["n_participants"] == 4

    for version in ("01.00.000", None):
        report = verify_factor(factor_id, base, version=version)
        assert report.ok, report
        assert "every published number recomputed from the logged aggregate" in report.checks
    # the round collected only the linear statistics' sums: the log shows those, and nothing else exists
    aggregate = next(e for e in log_entries(base) if e["type"] == "aggregate")["payload"]
    assert aggregate["withheld"] == [] and aggregate["histogram_commitment"] is None
    assert len(aggregate["summed"]) == len(vector_layout(spec1)) and None not in aggregate["summed"]
    stages = [e["payload"] for e in log_entries(base) if e["type"] == "stage"][:4]
    assert [(p["stage"], p["decision"], p["n"]) for p in stages] == [
        ("screen", "proceed", 4), ("dominance", "proceed", 4), ("values", "proceed", 4), ("cells", "proceed", 4)
    ]
    assert all(len(p["commitment"]) == 64 for p in stages if p["stage"] != "values")

    # the CLI drives the same API
    cli = CliRunner()
    env = {"PCF_AGG_PUBLIC_BASE_URL": base, "PCF_AGG_ADMIN_TOKEN": TOKEN, "PCF_AGG_TLS_CAFILE": str(session_tls().ca_cert)}
    out = cli.invoke(agg_app, ["round", "status", "alu-2024-b", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["state"] == "published"
    out = cli.invoke(agg_app, ["members", "list", "--json"], env=env)
    assert [m["status"] for m in json.loads(out.stdout)] == ["approved"] * 4
    assert cli.invoke(agg_app, ["round", "run", "alu-2024-b"], env=env).exit_code == 23  # conflict band
    assert cli.invoke(agg_app, ["round", "status", "nope"], env=env).exit_code == 22
    assert cli.invoke(agg_app, ["members", "list"], env={**env, "PCF_AGG_ADMIN_TOKEN": "x" * 20}).exit_code == 21


def test_round_with_a_dominant_firm_is_suppressed_and_stores_no_aggregate(
    servers: Callable[..., AggServer], tmp_path: Path
) -> None:
    base = servers().url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-dominated")
    ints = firm_ints(spec, weights=[9_000_000, 100_000, 100_000, 100_000])
    result = secagg_round(base, spec, tmp_path / "inputs.json", dict(zip((n.fingerprint for n in nodes), ints, strict=True)))

    assert result["state"] == "suppressed"
    assert "dominance" in result["decision"] and "production" in result["decision"]
    entries = log_entries(base)
    # stopped after the dominance stage: no values stage ran, so no sum over any component exists
    assert [e["type"] for e in entries] == ["spec_published", "stage", "stage", "suppression"]
    assert [e["payload"]["stage"] for e in entries[1:3]] == ["screen", "dominance"]
    assert entries[2]["payload"]["decision"] == "stop" and entries[2]["payload"]["rule"] == "dominance"
    assert entries[-1]["payload"]["rule"] == "dominance"
    assert https.get(f"{base}/api/v1/factors").json() == []
    with sqlite3.connect(tmp_path / "agg" / "aggregator.db") as db:
        assert db.execute("SELECT count(*) FROM aggregate").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM factor").fetchone() == (0,)


def test_paillier_round_survives_crashes_during_contributions_and_decryption_without_double_count(
    servers: Callable[..., AggServer],
    tmp_path: Path,
    split_key: tuple[paillier.SplitPublicKey, list[paillier.KeyShare]],
) -> None:
    pk, shares = split_key
    key_file = tmp_path / "paillier_public_key.json"
    key_file.write_text(json.dumps(pk.to_dict()))

    def start() -> AggServer:
        return servers(PCF_AGG_PAILLIER_PUBLIC_KEY_PATH=str(key_file))

    server = start()
    base = server.url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-paillier", protocol="paillier", key_id=pk.key_id)
    assert create_round(base, spec).status_code == 201
    admin("POST", base, "/api/v1/rounds/alu-paillier/open")
    invitation = nodes[0].call("GET", "/api/v1/rounds?state=open").json()[0]
    assert invitation["paillier_public_key"]["key_id"] == pk.key_id
    rows = firm_ints(spec)
    signed_spec = RoundSpec.model_validate(invitation["signed_spec"]["spec"])
    bodies = [
        canonical_json(paillier.encrypt_stage(pk, signed_spec, Stage.SCREEN, None,
                                              stage_vector(signed_spec, ints, Stage.SCREEN, None), n.key).to_dict())
        for n, ints in zip(nodes, rows, strict=True)
    ]
    path = "/api/v1/rounds/alu-paillier/contributions"
    for n, body in zip(nodes[:2], bodies[:2], strict=True):
        receipt = n.call("POST", path, body)
        assert receipt.status_code == 201, receipt.text
    assert receipt.json()["member"] == nodes[1].fingerprint
    expect_error(nodes[2].call("POST", path, bodies[3]), 403)  # another member's contribution

    server.kill()  # crash while contributions come in
    server = start()
    assert wait_state(base, "alu-paillier", ("open",))["contributions"] == 2
    expect_error(nodes[1].call("POST", path, bodies[1]), 409, "duplicate-contribution")
    for n, body in zip(nodes[2:], bodies[2:], strict=True):
        assert n.call("POST", path, body).status_code == 201
    assert admin("POST", base, "/api/v1/rounds/alu-paillier/run").json()["state"] == "aggregating"
    expect_error(nodes[0].call("POST", path, bodies[0]), 409, "window-closed")

    request_path = "/api/v1/rounds/alu-paillier/decryption-request"
    expect_error(nodes[0].call("GET", request_path), 401)  # members are not custodians
    aggregator_key = https.get(f"{base}/api/v1/aggregator").json()["public_key"]
    ledgers: list[dict[str, str]] = [{}, {}]

    def partials_of_waiting_stage() -> list[str]:
        # each custodian takes the waiting stage from the log, checked with the aggregator key it pinned
        headers = sign_request(shares[0].signing_key, "GET", request_path, b"", datetime.now(UTC))
        request = https.get(f"{base}{request_path}", headers=headers)
        assert request.status_code == 200, request.text
        log = paillier.parse_log({"entries": log_entries(base)})
        return [
            json.dumps(paillier.decrypt_logged_round(
                s, pk, spec.round_id, log=log, aggregator_key=aggregator_key, bodies=request.json()["contributions"],
                min_participants=3, ledger=ledger, previous_partials=request.json()["previous_partials"],
            ).to_dict())
            for s, ledger in zip(shares, ledgers, strict=True)
        ]

    def post(body: str) -> httpx.Response:
        return https.post(f"{base}/api/v1/rounds/alu-paillier/partial-decryptions", content=body,
                          headers={"Content-Type": "application/json"})  # fmt: skip

    def post_stage(node: Node, ints: list[int]) -> httpx.Response:
        status = node.call("GET", "/api/v1/rounds/alu-paillier/stage").json()
        stage = Stage(status["stage"])
        context = verify_context(SignedStageContext.model_validate(status["context"]),
                                 identity.load_public_key_b64(aggregator_key))
        check_context(signed_spec, context, stage, identity.public_key_b64(node.key), ints)
        vector = stage_vector(signed_spec, ints, stage, context)
        assert len(vector) == status["slots"]
        body = canonical_json(paillier.encrypt_stage(pk, signed_spec, stage, context, vector, node.key).to_dict())
        return node.call("POST", paillier.contribution_path("alu-paillier", str(stage)), body)

    partials = partials_of_waiting_stage()
    assert post(partials[0]).json()["received"] == 1

    server.kill()  # crash while the screen is decrypted
    server = start()
    assert wait_state(base, "alu-paillier", ("aggregating",))["partial_decryptions"] == 1
    expect_error(post(partials[0]), 409)
    forged = json.loads(partials[1]) | {"signature": json.loads(partials[0])["signature"]}
    expect_error(post(json.dumps(forged)), 401)
    second = post(partials[1]).json()
    assert (second["stage"], second["received"], second["state"]) == ("screen", 2, "aggregating"), second

    for stage in ("dominance", "values", "cells"):
        for k, (n, ints) in enumerate(zip(nodes, rows, strict=True)):
            assert post_stage(n, ints).status_code == 201
            if stage == "values" and k == 1:
                server.kill()  # crash while a stage's contributions come in
                server = start()
                expect_error(post_stage(n, ints), 409, "duplicate-contribution")
        last = [post(p).json() for p in partials_of_waiting_stage()][-1]
        assert last["stage"] == stage
    assert last["state"] == "published", last

    factor = https.get(f"{base}/api/v1/factors").json()
    assert len(factor) == 1
    factor_id = factor[0]["factor_id"]
    assert https.get(f"{base}/api/v1/factors/{factor_id}").json()["n_participants"] == 4
    types = [e["type"] for e in log_entries(base)]
    assert types.count("contribution_receipt") == 16 and types.count("stage") == 4
    assert types.count("aggregate") == 1 and types[-1] == "publication"
    report = verify_factor(factor_id, base)
    assert report.ok, report
    assert any("countersigned receipts" in c for c in report.checks)


def test_secagg_round_interrupted_by_a_crash_is_aborted_cleanly_on_restart(
    servers: Callable[..., AggServer], tmp_path: Path
) -> None:
    server = servers(AGG_TEST_RUNNER_DELAY="60")
    base = server.url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-interrupted")
    (tmp_path / "inputs.json").write_text(json.dumps(dict(zip((n.fingerprint for n in nodes), firm_ints(spec), strict=True))))
    assert create_round(base, spec).status_code == 201
    admin("POST", base, f"/api/v1/rounds/{spec.round_id}/open")
    assert admin("POST", base, f"/api/v1/rounds/{spec.round_id}/run").json()["state"] == "collecting"

    server.kill()
    servers()
    result = wait_state(base, spec.round_id)
    assert result["state"] == "aborted" and "restart" in result["decision"]
    assert [e["type"] for e in log_entries(base)] == ["spec_published", "abort"]
    assert https.get(f"{base}/api/v1/factors").json() == []
    expect_error(admin("POST", base, f"/api/v1/rounds/{spec.round_id}/run"), 409, "invalid-transition")


# ------------------------------------------------------------------------------------------- verify


def test_verify_reports_the_first_broken_entry_after_log_or_factor_edits(
    servers: Callable[..., AggServer], tmp_path: Path
) -> None:
    base = servers().url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-tamper")
    assert secagg_round(base, spec, tmp_path / "inputs.json",
                        dict(zip((n.fingerprint for n in nodes), firm_ints(spec), strict=True)))["state"] == "published"  # fmt: skip
    factor_id = log_entries(base)[-1]["payload"]["factor_id"]
    assert verify_factor(factor_id, base).ok
    db = sqlite3.connect(tmp_path / "agg" / "aggregator.db")

    # an edited factor value no longer matches the document hash of its publication entry (seq 7:
    # spec, four stages, aggregate, publication)
    (document,) = db.execute("SELECT document FROM factor").fetchone()
    edited = json.loads(document) | {"value": json.loads(document)["value"] * 0.9}
    with db:
        db.execute("UPDATE factor SET document = ?", (json.dumps(edited),))
    report = verify_factor(factor_id, base)
    assert not report.ok and report.break_seq == 7 and "document" in (report.reason or "")
    with db:
        db.execute("UPDATE factor SET document = ?", (document,))
    assert verify_factor(factor_id, base).ok

    # an edited aggregate (seq 6) breaks its own entry hash
    (payload,) = db.execute("SELECT payload FROM translog_entry WHERE seq = 6").fetchone()
    with db:
        db.execute("UPDATE translog_entry SET payload = ? WHERE seq = 6", (payload.replace('"n":4', '"n":5'),))
    report = verify_factor(factor_id, base)
    assert not report.ok and report.break_seq == 6 and "entry_hash" in (report.reason or "")
    db.close()


def test_a_component_one_firm_reports_is_withheld_from_store_log_and_factor_which_still_verifies(
    servers: Callable[..., AggServer], tmp_path: Path
) -> None:
    # Prepare: only Smelter A reports C2F6, so any sum of it is Smelter A's own value
    base = servers().url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-rare")
    c2f6 = next(c.flow for c in spec.components if c.name_en == "C2F6")
    ints = []
    for i, f in enumerate(example_firms(spec)):
        values = f.values | {c2f6: f.values[c2f6] if i == 0 else 0.0}
        ints.append(build_contribution(spec, values, f.weight, footprint_from_components(spec, values)).ints)
    names = [s.name for s in vector_layout(spec)]
    secret = {str(ints[0][names.index("wx[C2F6]")])}

    # Execute
    result = secagg_round(base, spec, tmp_path / "inputs.json", dict(zip((n.fingerprint for n in nodes), ints, strict=True)))

    # Assert: published without C2F6; its sums are null in the log and the database, its count stays
    assert result["state"] == "published", result
    aggregate = next(e for e in log_entries(base) if e["type"] == "aggregate")["payload"]
    with sqlite3.connect(tmp_path / "agg" / "aggregator.db") as db:
        (stored,) = db.execute("SELECT summed FROM aggregate").fetchone()
    for summed in (aggregate["summed"], json.loads(stored)):
        by_name = dict(zip(names, summed, strict=True))
        assert by_name["n[C2F6]"] == "1" and by_name["n[CF4]"] == "4"
        assert by_name["wx[C2F6]"] is None  # never summed: the values stage left the component out
        assert not secret & {v for v in summed if v is not None}
    assert {"wx[C2F6]"} <= set(aggregate["withheld"])
    factor_id = log_entries(base)[-1]["payload"]["factor_id"]
    factor = https.get(f"{base}/api/v1/factors/{factor_id}").json()
    assert c2f6 not in {e["flow"] for e in factor["unit_process"]["exchanges"]}
    assert [u["reason"] for u in factor["cross_check"]["unchecked"]] == ["withheld"]
    report = verify_factor(factor_id, base)
    assert report.ok, report
    assert any(u.startswith("withheld components (C2F6)") for u in report.unverified), report.unverified


def test_a_gas_one_firm_emits_is_withheld_from_store_log_and_factor_which_still_verifies(
    servers: Callable[..., AggServer], tmp_path: Path
) -> None:
    # Prepare: the round also asks for SF6, which only Smelter A emits (its switchgear)
    base = servers().url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-sf6")
    spec = spec.model_copy(update={"footprint": spec.footprint.model_copy(update={"gases": [*spec.footprint.gases, "SF6"]})})
    ints = []
    for i, f in enumerate(example_firms(spec)):
        ints.append(build_contribution(spec, f.values, f.weight, f.footprint_by_gas | {"SF6": 0.8 if i == 0 else 0.0}).ints)
    slots = vector_layout(spec)
    names = [s.name for s in slots]
    secret = str(ints[0][names.index("wF[SF6]")])
    scale = next(s.scale for s in slots if s.name == "wF[SF6]")
    merged_sum = sum(row[names.index(f"wF[{g}]")] for row in ints for g in ("CO2", "SF6"))

    # Execute
    result = secagg_round(base, spec, tmp_path / "inputs.json", dict(zip((n.fingerprint for n in nodes), ints, strict=True)))

    # Assert: published; SF6 and its complement CO2 are null in the log and the database, their counts stay
    assert result["state"] == "published", result
    aggregate = next(e for e in log_entries(base) if e["type"] == "aggregate")["payload"]
    with sqlite3.connect(tmp_path / "agg" / "aggregator.db") as db:
        (stored,) = db.execute("SELECT summed FROM aggregate").fetchone()
    for summed in (aggregate["summed"], json.loads(stored)):
        by_name = dict(zip(names, summed, strict=True))
        assert by_name["nF[SF6]"] == "1" and by_name["nF[CO2]"] == "4"
        assert by_name["wF[SF6]"] is None and by_name["wF[CO2]"] is None and by_name["wF[CH4]"] is not None
        assert secret not in summed
    assert {"wF[CO2]", "wF[SF6]"} <= set(aggregate["withheld"])
    assert aggregate["other_gases"]["gases"] == ["CO2", "SF6"]
    assert Fraction(aggregate["other_gases"]["sum"]) == merged_sum / scale
    factor_id = log_entries(base)[-1]["payload"]["factor_id"]
    factor = https.get(f"{base}/api/v1/factors/{factor_id}").json()
    assert "SF6" not in factor["gases"] and "CO2" not in factor["gases"]
    assert factor["value"] == pytest.approx(math.fsum(factor["gases"].values()), rel=1e-12)  # the total keeps SF6
    report = verify_factor(factor_id, base)
    assert report.ok, report
    assert "every published number recomputed from the logged aggregate" in report.checks
    assert any(u.startswith("withheld gases (SF6)") for u in report.unverified), report.unverified


# ----------------------------------------------------------------------------------------- delivery


def test_delivery_retries_a_failing_receiver_then_is_idempotent(servers: Callable[..., AggServer], tmp_path: Path) -> None:
    base = servers().url
    receiver = servers("agg_server:make_receiver", new_port=True, AGG_TEST_RECEIVER_FAILS="1").url
    nodes = approved_nodes(base, 4)
    spec = make_spec("alu-delivery")
    assert secagg_round(base, spec, tmp_path / "inputs.json",
                        dict(zip((n.fingerprint for n in nodes), firm_ints(spec), strict=True)))["state"] == "published"  # fmt: skip

    receipt = admin("POST", base, f"/api/v1/rounds/{spec.round_id}/deliveries", json={"url": f"{receiver}/factors"})
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["status"] == "delivered" and receipt.json()["attempts"] == 2
    again = admin("POST", base, f"/api/v1/rounds/{spec.round_id}/deliveries", json={"url": f"{receiver}/factors"})
    assert again.json() == receipt.json()
    got = https.get(f"{receiver}/received").json()
    assert got["requests"] == 2 and len(got["accepted"]) == 1
    accepted = got["accepted"][0]
    package = FactorPackage.model_validate(accepted["package"])
    assert accepted["idempotency_key"] == f"pcf-factor:{package.factor_id}:v1"
    aggregator_key = https.get(f"{base}/api/v1/aggregator").json()["public_key"]
    identity.verify(aggregator_key, package_message(package.factor_id, package.version, package.document_hash),
                    package.signature)  # fmt: skip
    assert package.log_seq == 7  # spec, four stages, aggregate, publication

    # the backoff doubles between attempts (sleep injected), and a 4xx is not retried
    delays: list[float] = []
    bad = package.model_copy(update={"version": 2})
    with pytest.raises(DeliveryFailed) as failed:
        publish_to(f"{receiver}/nowhere", bad, sleep=delays.append, max_attempts=4)
    assert failed.value.receipt is not None and failed.value.receipt.attempts == 1  # type: ignore[attr-defined]
    assert delays == []
    with pytest.raises(DeliveryFailed):
        publish_to(f"http://127.0.0.1:{free_port()}/factors", bad, sleep=delays.append, max_attempts=4, base_delay=0.25)
    assert delays == [0.25, 0.5, 1.0]
