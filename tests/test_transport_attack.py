"""Attacks on the transport (issue 9, property 6): a man in the middle, plain HTTP, re-spelled signatures.

Every server here is a real uvicorn process on a loopback port, stopped by its pid. The man in
the middle is a real aggregator of its own (its own identity key, its own database) that records
every request it receives; the node reaches it as a DNS or routing attack would make it, by the
URL it enrolled with pointing there.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from agg_server import AggServer, Https
from conftest import free_port
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from keys import identity
from keys.tls import TlsFiles, generate_ca, issue_server_certificate, write_tls_files
from node import rounds as node_rounds
from node.client import AGGREGATOR_CA_SETTING, PEER_CHECK_STAGE
from node.store import NodeStore
from pcf.cli import app
from protocols.auth import HEADER_SIGNATURE, sign_enrollment, sign_request

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

TOKEN = "transport-admin-token-0123456789"
PACT = ("pcf-aggregator", "transport-pact-secret-0123456789")
runner = CliRunner()


# ------------------------------------------------------------------------------------------ helpers


def _tls_from(ca_key: Any, ca_cert: Any, folder: Path) -> TlsFiles:
    """An aggregator certificate for 127.0.0.1 issued by ``ca_key`` (a CA whose key this test keeps)."""
    folder.mkdir(parents=True)
    key, cert = issue_server_certificate(ca_key, ca_cert, ["127.0.0.1", "localhost"])
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (folder / "aggregator.pem").write_bytes(cert.public_bytes(pem))
    (folder / "aggregator.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "aggregator.key").chmod(0o600)
    return TlsFiles(folder / "ca.crt", folder / "aggregator.pem", folder / "aggregator.key",
                    folder / "aggregator.pem", folder / "aggregator.key")


@dataclass
class Network:
    real: AggServer
    same_ca_impostor: AggServer
    """Holds a certificate from the pinned CA (a mis-issued or stolen one) but its own identity key."""
    other_ca_impostor: AggServer
    """A TLS-intercepting proxy's view: a certificate from a CA of its own."""
    copying_impostor: AggServer
    """A certificate from the pinned CA, showing the real aggregator's public key (it cannot sign with it)."""
    real_key: str
    records: dict[str, Path]


def _server(tmp: Path, name: str, tls: TlsFiles | bool) -> AggServer:
    home = tmp / name
    home.mkdir()
    env = {"PCF_AGG_ENVIRONMENT": "production", "PCF_AGG_HOME": str(home), "PCF_AGG_ADMIN_TOKEN": TOKEN,
           "PCF_AGG_PACT_CLIENT_ID": PACT[0], "PCF_AGG_PACT_CLIENT_SECRET": PACT[1],
           "AGG_TEST_REQUEST_LOG": str(tmp / f"{name}.requests")}
    return AggServer("agg_server:make_app", free_port(), env, tmp / f"{name}.log", tls=tls)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    tmp_path = tmp_path_factory.mktemp("network")
    ca_key, ca_cert = generate_ca("association CA")
    pinned = _tls_from(ca_key, ca_cert, tmp_path / "tls-real")
    stolen = _tls_from(ca_key, ca_cert, tmp_path / "tls-stolen")
    own = write_tls_files(tmp_path / "tls-own", aggregator_hosts=["127.0.0.1"])
    copied = _tls_from(ca_key, ca_cert, tmp_path / "tls-copied")
    started = [_server(tmp_path, "real", pinned), _server(tmp_path, "same-ca", stolen),
               _server(tmp_path, "other-ca", own), _server(tmp_path, "copying", copied)]
    try:
        started[0].start()
        real_key = Https(pinned.ca_cert).get(f"{started[0].url}/api/v1/aggregator").json()["public_key"]
        started[3].env["AGG_TEST_CLAIM_KEY"] = real_key
        for s in started[1:]:
            s.start()
        yield Network(started[0], started[1], started[2], started[3], real_key,
                      {s.log_path.stem: Path(s.env["AGG_TEST_REQUEST_LOG"]) for s in started})
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def network(servers: Network) -> Network:
    """The module's servers, their request records emptied (start-up probes and earlier tests are not this test's)."""
    for record in servers.records.values():
        record.write_text("")
    return servers


def received(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def node_env(home: Path) -> dict[str, str]:
    return {"PCF_NODE_HOME": str(home), "PCF_NODE_DB_URL": f"sqlite:///{home / 'node.db'}"}


def pcf_node(home: Path, *args: str) -> Any:
    return runner.invoke(app, ["node", *args], env=node_env(home))


def enroll_args(url: str, ca: Path, key: str) -> list[str]:
    return ["enroll", "--aggregator", url, "--ca", str(ca), "--aggregator-key", key, "--no-authority",
            "--org-zh", "冶炼厂", "--org-en", "Smelter", "--json"]


def outbox(home: Path) -> list[tuple[str, str]]:
    store = NodeStore(node_env(home)["PCF_NODE_DB_URL"])
    try:
        return [(row.round_id, row.stage) for row in node_rounds.outbox(store)]
    finally:
        store.close()


def setting(home: Path, name: str) -> str | None:
    store = NodeStore(node_env(home)["PCF_NODE_DB_URL"])
    try:
        return store.get_setting(name)
    finally:
        store.close()


def point_node_at(home: Path, url: str) -> None:
    """The attack on the network: the name the node enrolled with now leads to ``url``."""
    store = NodeStore(node_env(home)["PCF_NODE_DB_URL"])
    try:
        store.set_setting(node_rounds.AGGREGATOR_URL_SETTING, url)
    finally:
        store.close()


# ---------------------------------------------------------------------------------- man in the middle


def test_node_refuses_a_man_in_the_middle_by_name_and_sends_it_nothing(network: Network, tmp_path: Path) -> None:
    # Prepare: a node enrolled with the real aggregator, pins given out of band
    home = tmp_path / "node"
    real_ca = network.real.ca
    enrolled = pcf_node(home, *enroll_args(network.real.url, real_ca, network.real_key))
    assert enrolled.exit_code == 0, enrolled.output
    assert setting(home, AGGREGATOR_CA_SETTING) == real_ca.read_text()
    before = outbox(home)

    # Execute: the node's traffic is redirected to each impostor in turn
    point_node_at(home, network.other_ca_impostor.url)
    other_ca = pcf_node(home, "rounds", "--json")
    point_node_at(home, network.same_ca_impostor.url)
    same_ca = pcf_node(home, "rounds", "--json")
    point_node_at(home, network.copying_impostor.url)
    copying = pcf_node(home, "rounds", "--json")

    # Assert: refused by name; the other-CA impostor got nothing at all (the handshake failed), the
    # same-CA one only the public key read; no signed request was recorded, let alone sent
    assert other_ca.exit_code == 13 and "certificate mismatch" in other_ca.output, other_ca.output
    assert same_ca.exit_code == 13 and "aggregator key mismatch" in same_ca.output, same_ca.output
    assert copying.exit_code == 13 and "cannot sign with it" in copying.output, copying.output
    assert [r["path"] for r in received(network.records["copying"])] == ["/api/v1/aggregator"]
    assert received(network.records["other-ca"]) == []
    got = received(network.records["same-ca"])
    assert [(r["method"], r["path"]) for r in got] == [("GET", "/api/v1/aggregator")]
    assert "x-pcf-signature" not in got[0]["headers"] and "authorization" not in got[0]["headers"]
    new = outbox(home)[len(before):]
    assert {stage for _round, stage in new} <= {PEER_CHECK_STAGE}, new


def test_enrolment_with_a_man_in_the_middle_is_refused_and_nothing_is_pinned(network: Network, tmp_path: Path) -> None:
    # Prepare: the firm has the association's published CA and key; the URL leads to an impostor
    homes = {name: tmp_path / name for name in ("a", "b")}

    # Execute
    other_ca = pcf_node(homes["a"], *enroll_args(network.other_ca_impostor.url, network.real.ca, network.real_key))
    same_ca = pcf_node(homes["b"], *enroll_args(network.same_ca_impostor.url, network.real.ca, network.real_key))
    homes["c"] = tmp_path / "c"
    copying = pcf_node(homes["c"], *enroll_args(network.copying_impostor.url, network.real.ca, network.real_key))

    # Assert: no enrolment left the node, no pin was stored, the impostors got no enrolment
    assert other_ca.exit_code == 13 and "certificate mismatch" in other_ca.output, other_ca.output
    assert same_ca.exit_code == 13 and "aggregator key mismatch" in same_ca.output, same_ca.output
    assert copying.exit_code == 13 and "cannot sign with it" in copying.output, copying.output
    assert [r["path"] for r in received(network.records["copying"])] == ["/api/v1/aggregator"]
    for home in homes.values():
        assert all(stage == PEER_CHECK_STAGE for _round, stage in outbox(home)), outbox(home)
        assert setting(home, node_rounds.AGGREGATOR_KEY_SETTING) is None
        assert setting(home, node_rounds.AGGREGATOR_URL_SETTING) is None
    assert received(network.records["other-ca"]) == []
    assert [r["path"] for r in received(network.records["same-ca"])] == ["/api/v1/aggregator"]


def test_enrolment_needs_the_ca_and_the_key_and_refuses_plain_http(tmp_path: Path) -> None:
    # Prepare: nothing listens on the port; every refusal happens before any connection
    key = identity.public_key_b64(identity.generate_identity())
    url = f"https://127.0.0.1:{free_port()}"
    ca = write_tls_files(tmp_path / "tls").ca_cert
    base = ["enroll", "--org-zh", "冶炼厂", "--org-en", "Smelter", "--no-authority"]

    # Execute
    no_authority = pcf_node(tmp_path / "n0", *base[:-1], "--aggregator", url, "--ca", str(ca), "--aggregator-key", key)
    no_ca = pcf_node(tmp_path / "n1", *base, "--aggregator", url, "--aggregator-key", key)
    no_key = pcf_node(tmp_path / "n2", *base, "--aggregator", url, "--ca", str(ca))
    plain = pcf_node(tmp_path / "n3", *base, "--aggregator", url.replace("https", "http"), "--aggregator-key", key)

    # Assert
    assert no_authority.exit_code == 13 and "--authority-key KEY and --certificate FILE required" in no_authority.output
    assert no_ca.exit_code == 13 and "--ca" in no_ca.output
    assert no_key.exit_code == 13 and "--aggregator-key" in no_key.output
    assert plain.exit_code == 13 and "plain HTTP" in plain.output and "--insecure-http" in plain.output
    assert outbox(tmp_path / "n3") == []


# ------------------------------------------------------------------------------------------ plain HTTP


@pytest.fixture
def plain_http(tmp_path: Path) -> Iterator[AggServer]:
    server = _server(tmp_path, "plain", False)
    server.env |= {"PCF_AGG_ENVIRONMENT": "development", "PCF_AGG_INSECURE_HTTP": "1"}
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_admin_token_and_pact_credentials_are_refused_over_plain_http(plain_http: AggServer) -> None:
    # Prepare
    base = plain_http.url
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    member = identity.generate_identity()
    enrolment = sign_enrollment(member, "冶炼厂", "Smelter", "supernode-key").model_dump()

    # Execute
    answers = {
        "admin token": httpx.get(f"{base}/api/v1/members", headers=bearer),
        "admin token, claiming https": httpx.get(f"{base}/api/v1/members",
                                                  headers={**bearer, "X-Forwarded-Proto": "https"}),
        "PACT basic": httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials"}, auth=PACT),
        "PACT form secret": httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials",
                                                                  "client_id": PACT[0], "client_secret": PACT[1]}),
        "PACT bearer": httpx.get(f"{base}/3/footprints", headers={"Authorization": "Bearer pct2.x.y"}),
    }
    public = httpx.get(f"{base}/api/v1/log")
    enrolled = httpx.post(f"{base}/api/v1/members/enroll", json=enrolment)
    cli = runner.invoke(app, ["agg", "members", "list", "--url", base, "--token", TOKEN])

    # Assert: every secret refused by name; secret-free traffic still works; the CLI never sends it
    for what, response in answers.items():
        assert response.status_code == 403, (what, response.text)
        assert response.json()["error"] == "insecure-transport", what
    assert public.status_code == 200 and enrolled.status_code == 201, enrolled.text
    assert cli.exit_code == 21 and "HTTPS only" in cli.output


def test_agg_serve_serves_https_only_with_a_certificate_and_plain_http_only_in_development(tmp_path: Path) -> None:
    # Prepare
    tls = write_tls_files(tmp_path / "tls", aggregator_hosts=["127.0.0.1"])
    assert tls.aggregator_cert is not None and tls.aggregator_key is not None
    env = {**os.environ, "PCF_AGG_HOME": str(tmp_path / "agg"), "PCF_AGG_ADMIN_TOKEN": TOKEN,
           "PCF_AGG_PACT_CLIENT_SECRET": PACT[1]}
    serve = [sys.executable, "-c", "from aggregator.cli import agg_app; agg_app()", "serve", "--host", "127.0.0.1"]

    # Execute: no certificate; plain HTTP asked for in production; then with the certificate
    no_cert = subprocess.run([*serve, "--port", str(free_port())], env=env, capture_output=True, text=True,
                             timeout=60, check=False, cwd=REPO)
    insecure = subprocess.run([*serve, "--port", str(free_port()), "--insecure-http"], env=env, capture_output=True,
                              text=True, timeout=60, check=False, cwd=REPO)
    port = free_port()
    tls_env = {**env, "PCF_AGG_TLS_CERTFILE": str(tls.aggregator_cert), "PCF_AGG_TLS_KEYFILE": str(tls.aggregator_key)}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*serve, "--port", str(port)], env=tls_env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO)
    try:
        health = _wait_https(f"https://127.0.0.1:{port}/health", Https(tls.ca_cert))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        admin = Https(tls.ca_cert).get(f"https://127.0.0.1:{port}/api/v1/members",
                                       headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)

    # Assert
    assert no_cert.returncode == 27 and "PCF_AGG_TLS_CERTFILE" in no_cert.stderr, no_cert.stderr
    assert insecure.returncode == 27 and "development only" in insecure.stderr, insecure.stderr
    assert health is not None and health.status_code == 200, log.read_text()[-2000:]
    assert admin.status_code == 200, admin.text


def _wait_https(url: str, client: Https, timeout: float = 30.0) -> httpx.Response | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return client.get(url, timeout=1.0)
        except httpx.HTTPError:
            time.sleep(0.1)
    return None


# ---------------------------------------------------------------------------------- re-spelled signatures


def _respellings(signature: str) -> dict[str, str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    return {
        "padding =": signature + "=",
        "padding ==": signature + "==",
        "standard alphabet": signature.replace("-", "+").replace("_", "/"),
        "leading space": " " + signature,
        "trailing tab": signature + "\t",
        "inner space": signature[:43] + " " + signature[43:],
        "unused trailing bits set": signature[:-1] + alphabet[last | 1],
    }


def _raw_get(server: AggServer, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A GET with header values exactly as given (httpx refuses to send leading or trailing whitespace)."""
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=30, context=Https(server.ca).context())
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_re_spelled_signature_of_an_accepted_request_is_refused_and_does_not_replay(network: Network) -> None:
    # Prepare: an approved member; one request whose signature has a '-' or '_' (so the standard
    # alphabet spells it differently)
    server, https = network.real, Https(network.real.ca)
    key = identity.generate_identity()
    enrolment = sign_enrollment(key, "冶炼厂", "Smelter", "supernode-key").model_dump()
    member = https.post(f"{server.url}/api/v1/members/enroll", json=enrolment).json()
    approved = https.post(f"{server.url}/api/v1/members/{member['id']}/approve",
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert approved.status_code == 200, approved.text
    path = "/api/v1/members/me"
    while True:
        headers = sign_request(key, "GET", path, b"", datetime.now(UTC))
        signature = headers[HEADER_SIGNATURE]
        if "-" in signature or "_" in signature:
            break

    # Execute: the request is accepted once, then replayed under every other spelling
    first = https.get(f"{server.url}{path}", headers=headers)
    replays = {what: _raw_get(server, path, {**headers, HEADER_SIGNATURE: variant})
               for what, variant in _respellings(signature).items()}
    again = _raw_get(server, path, headers)

    # Assert: accepted once; every spelling refused, as non-canonical or (whitespace the HTTP parser
    # strips) as the replay it is; the cache holds the one signature's bytes
    assert first.status_code == 200, first.text
    for what, (status, body) in replays.items():
        assert status == 401, (what, body)
        assert body["error"] in ("unauthorized", "replayed-request"), (what, body)
    assert replays["padding ="][1]["error"] == "unauthorized"
    assert "canonical base64url" in replays["padding ="][1]["detail"]
    assert again[0] == 401 and again[1]["error"] == "replayed-request"
    with sqlite3.connect(Path(server.env["PCF_AGG_HOME"]) / "aggregator.db") as db:
        seen = [row[0] for row in db.execute("SELECT signature FROM seen_request")]
    assert seen.count(signature) == 1 and all(s == identity.b64url_encode(identity.b64url_decode(s)) for s in seen)
