"""Attack tests, issue 9 property 4: the Paillier key is pinned and bound; a custodian decrypts every logged contribution, once.

The adversary runs the aggregator (the real FastAPI app, in process): it configures its own
Paillier key, serves another key than the spec names (a lying transport), hands the custodians a
chosen subset, writes Sybil receipts and a second roster into its own log, stores a re-randomised
or derived copy of the victim's ciphertext under an accomplice's signature, asks twice, or asks
below ``min_participants``. The firms are real nodes (``node.client.AggregatorClient``, their
consent and outbox in their own store); the custodians run ``custodian.decrypt`` on what
``custodian.fetch`` reads over HTTP. Each attack is refused with a reason naming what was wrong,
and no custodian releases a partial (its ledger stays empty), so nothing of the victim decrypts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from paillier_log import paillier_spec, receipt_payload, round_log, stage_payload
from pydantic import SecretStr

from aggregator import translog
from aggregator.app import create_app
from aggregator.settings import AggregatorSettings
from aggregator.store import ContributionRow, Store, open_store
from custodian.ceremony import custodian_init
from custodian.decrypt import custodian_decrypt
from custodian.fetch import fetch_log, fetch_request
from custodian.store import ledger_path, load_public_key, load_share
from keys.identity import Ed25519PrivateKey, fingerprint, generate_identity, load_private_key, public_key_b64
from node import rounds as node_rounds
from node.client import AggregatorClient
from node.contribute import pin_paillier_key
from node.service import import_paths
from node.store import NodeStore
from pcf.samples import background_files, firm_files, sample_spec
from protocols import paillier
from protocols.auth import sign_enrollment, sign_request
from protocols.canonical import canonical_json
from protocols.errors import InvalidSignature
from protocols.roster import sign_roster
from protocols.spec import RoundSpec, vector_layout

BASE = "https://testserver"  # the in-process app sees TLS (scope scheme https); no socket
ADMIN = "admin-token-0123456789abcdef"
PASSWORDS = ("association custodian pw", "national database custodian pw")
INDUSTRY = "aluminium"


# ------------------------------------------------------------------------------------ the parties


@dataclass(frozen=True)
class Custodians:
    """The real custodians: their ceremony's public key and their share files (each with its ledger)."""

    public_key: paillier.SplitPublicKey
    shares: tuple[Path, ...]


@pytest.fixture(scope="module")
def custodians(tmp_path_factory: pytest.TempPathFactory) -> Custodians:
    out = custodian_init(tmp_path_factory.mktemp("ceremony"), 2, 2048, passwords=list(PASSWORDS))
    return Custodians(load_public_key(out.public_key_path), out.share_paths)


@pytest.fixture(scope="module")
def own_key() -> tuple[paillier.SplitPublicKey, list[paillier.KeyShare]]:
    """A key the aggregator made for itself: it holds every share."""
    return paillier.generate_split_key(2, 2048)


class PortalTransport(httpx.BaseTransport):
    """A synchronous transport into an ASGI app (no socket): a real ``httpx.Client``, event hooks and all."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: Any):
        self.portal, self.inner = portal, httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            resp = await self.inner.handle_async_request(request)
            body = await resp.aread()
            return httpx.Response(resp.status_code, headers=resp.headers, content=body, request=request)

        return self.portal.call(call)


@dataclass
class Aggregator:
    app: Any
    portal: anyio.from_thread.BlockingPortal
    http: httpx.Client
    store: Store
    key: Ed25519PrivateKey

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def lying(self, rewrite: Callable[[str, Any], Any], answer: Callable[[str], Any] | None = None) -> httpx.Client:
        """A client of the same server whose answers are rewritten on the way back (a lying server)."""
        return httpx.Client(transport=PortalTransport(self.portal, lying_app(self.app, rewrite, answer)), base_url=BASE)


@pytest.fixture
def start_aggregator(tmp_path: Path) -> Iterator[Callable[[paillier.SplitPublicKey], Aggregator]]:
    portal_cm = anyio.from_thread.start_blocking_portal()
    portal = portal_cm.__enter__()
    opened: list[httpx.Client] = []

    def start(key: paillier.SplitPublicKey) -> Aggregator:
        settings = AggregatorSettings(
            environment="development",
            home=tmp_path / "aggregator",
            db_url=f"sqlite:///{tmp_path / 'aggregator.db'}",
            admin_token=SecretStr(ADMIN),
            pact_client_secret=SecretStr("pact-secret-0123456789abcdef"),
        )
        store = open_store(settings.database_url)
        app = create_app(settings, store=store, paillier_public_key=key)
        http = httpx.Client(transport=PortalTransport(portal, app), base_url=BASE)
        opened.append(http)
        return Aggregator(app, portal, http, store, load_private_key(settings.identity_key_file))

    yield start
    for http in opened:
        http.close()
    portal_cm.__exit__(None, None, None)


def lying_app(app: Any, rewrite: Callable[[str, Any], Any], answer: Callable[[str], Any] | None = None) -> Any:
    """The aggregator app behind a layer that rewrites its JSON answers, or answers itself (``answer``)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode()
        path = scope["path"] + (f"?{query}" if query else "")
        if answer is not None and (made := answer(path)) is not None:
            body = json.dumps(made).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if start["status"] < 400 and body:
                body = json.dumps(rewrite(path, json.loads(body))).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await app(scope, receive, capture)

    return asgi


@dataclass
class Firm:
    client: AggregatorClient
    store: NodeStore
    key: Ed25519PrivateKey
    process_uuid: str

    def sent(self, round_id: str) -> list[str]:
        """Stages of every message the node recorded in its outbox for ``round_id``."""
        return [row.stage for row in node_rounds.outbox(self.store, round_id)]


def enrol_firms(agg: Aggregator, tmp_path: Path, count: int, pin: str | None,
                rewrite: Callable[[str, Any], Any] | None = None, first_production: float | None = None) -> list[Firm]:
    """``count`` firms with their data, enrolled and approved; each has its own HTTP client (its own outbox hook).

    ``first_production`` replaces the first firm's annual production (t), e.g. to make it dominate.
    """
    firms = []
    for i, data in enumerate(firm_files(INDUSTRY)[:count]):
        if i == 0 and first_production is not None:
            text = re.sub(r"(?m)^annual_production,.*$", f"annual_production,{first_production}", data.read_text())
            data = tmp_path / data.name
            data.write_text(text)
        store = NodeStore(f"sqlite:///{tmp_path / f'node{i}.db'}")
        import_paths(store, [*background_files(), data])
        key = generate_identity()
        http = agg.lying(rewrite) if rewrite else agg.lying(lambda _path, doc: doc)
        client = AggregatorClient(store, tmp_path / f"node{i}", BASE, http=http, key=key)
        me = client.enroll(f"企业{i}", f"Firm {i}", f"supernode-key-{i}", aggregator_key=public_key_b64(agg.key))
        assert agg.admin("POST", f"/api/v1/members/{me['id']}/approve").status_code == 200
        if pin is not None:  # pcf node enroll --paillier-key, as the custodians published it
            pin_paillier_key(store, pin)
        uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
        firms.append(Firm(client, store, key, uuid))
    return firms


def enrol_accomplice(agg: Aggregator) -> Ed25519PrivateKey:
    """A member key the aggregator controls, enrolled and approved like any firm (so it is on the roster)."""
    key = generate_identity()
    body = sign_enrollment(key, "同谋", "Accomplice", "supernode-key-x").model_dump_json()
    me = agg.http.post("/api/v1/members/enroll", content=body, headers={"Content-Type": "application/json"}).json()
    assert agg.admin("POST", f"/api/v1/members/{me['id']}/approve").status_code == 200
    return key


def open_round(agg: Aggregator, round_id: str, key_id: str, n_firms: int) -> RoundSpec:
    spec = sample_spec(INDUSTRY, round_id=round_id, n_firms=n_firms, protocol="paillier", paillier_key_id=key_id,
                       deadline=datetime.now(UTC) + timedelta(days=1))
    created = agg.admin("POST", "/api/v1/rounds", content=spec.model_dump_json(),
                        headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert agg.admin("POST", f"/api/v1/rounds/{round_id}/open").json()["state"] == "open"
    return spec


def consent(firm: Firm, round_id: str) -> None:
    assert round_id in firm.client.fetch_invitations()
    node_rounds.approve(firm.store, round_id, firm.process_uuid, confirm_zeros=True, approved_by="attack test")


def decrypt(custodians: Custodians, i: int, agg: Aggregator, round_id: str, http: Any = None) -> str:
    """Custodian ``i`` reads the log and the bodies over HTTP and answers (or raises ``CustodianRefused``)."""
    share, _ = load_share(custodians.shares[i], PASSWORDS[i])
    transport = http or agg.http
    bodies, previous = fetch_request(transport, BASE, round_id, share.signing_key)
    return custodian_decrypt(
        custodians.shares[i], PASSWORDS[i], round_id,
        log=fetch_log(agg.http, BASE), aggregator_key=public_key_b64(agg.key), bodies=bodies,
        previous_partials=previous,
    )


def run_stages(agg: Aggregator, custodians: Custodians, firms: list[Firm], round_id: str) -> dict[str, Any]:
    """An honest round from open to its end: the firms post each stage, both custodians decrypt each; the round's JSON."""
    for f in firms:
        assert f.client.contribute_paillier(round_id)["sent"] == "screen"
    assert agg.admin("POST", f"/api/v1/rounds/{round_id}/run").json()["state"] == "aggregating"
    for _ in paillier.STAGE_NAMES:
        for i in range(2):
            posted = agg.http.post(f"/api/v1/rounds/{round_id}/partial-decryptions",
                                   content=decrypt(custodians, i, agg, round_id), headers={"Content-Type": "application/json"})
            assert posted.status_code == 201, posted.text
        state = agg.admin("GET", f"/api/v1/rounds/{round_id}").json()
        if state["state"] != "aggregating":
            return dict(state)
        for f in firms:
            assert f.client.contribute_paillier(round_id)["sent"] is not None
    raise AssertionError(f"round {round_id} did not end after every stage")


def stage_entries(agg: Aggregator, round_id: str) -> list[tuple[str, str]]:
    """``(stage, decision)`` of every ``stage`` entry of the round's log, in order."""
    return [(e.payload["stage"], e.payload["decision"]) for e in fetch_log(agg.http, BASE)
            if e.type == translog.STAGE and e.payload.get("round_id") == round_id]


def decrypted_rounds(custodians: Custodians) -> list[set[str]]:
    out = []
    for share in custodians.shares:
        path = ledger_path(share)
        out.append(set(json.loads(path.read_text())) if path.exists() else set())
    return out


def log_as_aggregator(agg: Aggregator, entry_type: str, payload: dict[str, Any], body: dict[str, Any] | None = None,
                      member: Ed25519PrivateKey | None = None, round_id: str = "") -> None:
    """The operator writes to its own database: a contribution row (optional) and a signed log entry."""
    with agg.store.transaction() as tx:
        if body is not None and member is not None:
            row = next(m for m in tx.list_members("approved") if m.identity_public_key == public_key_b64(member))
            assert row.id is not None
            tx.add_contribution(ContributionRow(
                round_id=round_id, member_id=row.id, contribution_hash=payload["contribution_hash"],
                body=canonical_json(body).decode(), received_at=datetime.now(UTC)))
        translog.append(tx, agg.key, entry_type, payload, datetime.now(UTC))


# --------------------------------------------------------------- (a) the aggregator's own Paillier key


def test_a_spec_signed_with_the_aggregators_own_key_id_is_refused_and_nothing_is_sent(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator],
    custodians: Custodians,
    own_key: tuple[paillier.SplitPublicKey, list[paillier.KeyShare]],
    tmp_path: Path,
) -> None:
    # Prepare: the aggregator runs with a key whose every share it holds and names it in the spec it signs
    key, _its_shares = own_key
    agg = start_aggregator(key)
    [victim, *_] = firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    open_round(agg, "own-key", key.key_id, 3)
    consent(victim, "own-key")

    # Execute
    with pytest.raises(InvalidSignature) as refused:
        victim.client.contribute_paillier("own-key")

    # Assert: the reason names both fingerprints; no ciphertext left the node
    assert key.key_id in str(refused.value) and custodians.public_key.key_id in str(refused.value)
    assert victim.sent("own-key") == []
    assert all(f.sent("own-key") == [] for f in firms)
    assert agg.admin("GET", "/api/v1/rounds/own-key").json()["contributions"] == 0


def test_a_served_key_other_than_the_pinned_one_is_refused_even_when_the_spec_names_the_pinned_key(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator],
    custodians: Custodians,
    own_key: tuple[paillier.SplitPublicKey, list[paillier.KeyShare]],
    tmp_path: Path,
) -> None:
    # Prepare: an honest-looking spec (the custodians' key id), but the invitation carries the aggregator's key
    agg = start_aggregator(custodians.public_key)
    swapped = own_key[0].to_dict()

    def swap_key(url: str, doc: Any) -> Any:
        if "/api/v1/rounds?state=open" in url:
            return [{**item, "paillier_public_key": swapped} for item in doc]
        return doc

    [victim, *_] = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id, rewrite=swap_key)
    open_round(agg, "swapped-key", custodians.public_key.key_id, 3)
    consent(victim, "swapped-key")

    # Execute
    with pytest.raises(InvalidSignature) as refused:
        victim.client.contribute_paillier("swapped-key")

    # Assert
    assert f"serves Paillier key {own_key[0].key_id}" in str(refused.value)
    assert custodians.public_key.key_id in str(refused.value)
    assert victim.sent("swapped-key") == []


def test_a_node_with_no_pinned_key_refuses_to_contribute(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    agg = start_aggregator(custodians.public_key)
    [victim, *_] = enrol_firms(agg, tmp_path, 3, pin=None)
    open_round(agg, "no-pin", custodians.public_key.key_id, 3)
    consent(victim, "no-pin")

    with pytest.raises(InvalidSignature, match="no custodians' Paillier key is pinned"):
        victim.client.contribute_paillier("no-pin")

    assert victim.sent("no-pin") == []


def test_the_aggregator_cannot_create_a_round_naming_a_key_it_is_not_configured_with(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians,
    own_key: tuple[paillier.SplitPublicKey, list[paillier.KeyShare]],
) -> None:
    agg = start_aggregator(custodians.public_key)
    spec = sample_spec(INDUSTRY, round_id="mismatch", n_firms=3, protocol="paillier", paillier_key_id=own_key[0].key_id,
                       deadline=datetime.now(UTC) + timedelta(days=1))

    created = agg.admin("POST", "/api/v1/rounds", content=spec.model_dump_json(), headers={"Content-Type": "application/json"})

    assert created.status_code == 400 and created.json()["error"] == "spec-rejected", created.text
    assert own_key[0].key_id in created.text and custodians.public_key.key_id in created.text


# -------------------------------------------------------- (b) a chosen subset, Sybils, a second roster


def test_the_victim_and_two_sybils_handed_over_as_the_set_are_refused_while_the_log_holds_more(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: five firms contribute honestly; two Sybil keys the aggregator made are on no roster
    agg = start_aggregator(custodians.public_key)
    [victim, *others] = firms = enrol_firms(agg, tmp_path, 5, pin=custodians.public_key.key_id)
    spec = open_round(agg, "sybils", custodians.public_key.key_id, 5)
    for f in firms:
        consent(f, "sybils")
        f.client.contribute_paillier("sybils")
    assert agg.admin("POST", "/api/v1/rounds/sybils/run").json()["state"] == "aggregating"
    layout = paillier.spec_layout(spec)
    sybils = [generate_identity() for _ in range(2)]
    zeros = [paillier.encrypt_contribution(custodians.public_key, layout, [0] * layout.n_slots, "sybils", s) for s in sybils]

    def victim_and_sybils(url: str, doc: Any) -> Any:
        if url.endswith("/decryption-request"):
            mine = [c for c in doc["contributions"] if c["sender"] == public_key_b64(victim.key)]
            return {**doc, "contributions": mine + [z.to_dict() for z in zeros]}
        return doc

    # Execute / Assert 1: the subset the aggregator hands over does not match the log's receipts
    with pytest.raises(paillier.CustodianRefused, match="every logged contribution is decrypted or none"):
        decrypt(custodians, 0, agg, "sybils", http=agg.lying(victim_and_sybils))

    # Execute / Assert 2: the Sybils' receipts written into the log name members outside the signed roster
    for s, z in zip(sybils, zeros, strict=True):
        log_as_aggregator(agg, translog.CONTRIBUTION_RECEIPT, receipt_payload("sybils", s, z.to_dict()))

    def everyone_and_sybils(url: str, doc: Any) -> Any:
        if url.endswith("/decryption-request"):
            return {**doc, "contributions": doc["contributions"] + [z.to_dict() for z in zeros]}
        return doc

    with pytest.raises(paillier.CustodianRefused, match="not on the round's signed roster"):
        decrypt(custodians, 1, agg, "sybils", http=agg.lying(everyone_and_sybils))

    # Assert: no custodian answered, so nothing of the victim can be decrypted
    assert not any("sybils" in done for done in decrypted_rounds(custodians))
    assert len(others) == 4


def test_a_second_roster_with_sybils_signed_into_the_log_is_refused(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    open_round(agg, "two-rosters", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "two-rosters")
        f.client.contribute_paillier("two-rosters")
    assert agg.admin("POST", "/api/v1/rounds/two-rosters/run").json()["state"] == "aggregating"
    row = agg.admin("GET", "/api/v1/rounds/two-rosters").json()
    sybils = {fingerprint(public_key_b64(k)): public_key_b64(k) for k in (generate_identity(), generate_identity())}
    forged = sign_roster(agg.key, "two-rosters", row["spec_hash"], {**row["roster"]["roster"], **sybils})
    log_as_aggregator(agg, translog.ROSTER, {"round_id": "two-rosters", "spec_hash": row["spec_hash"],
                                             "roster": forged.roster, "signature": forged.signature})

    with pytest.raises(paillier.CustodianRefused, match="2 roster entries; expected exactly one"):
        decrypt(custodians, 0, agg, "two-rosters")

    assert not any("two-rosters" in done for done in decrypted_rounds(custodians))


# ------------------------------------------------- (c) a re-randomised or derived copy, or a member twice


def test_a_rerandomised_or_derived_copy_of_the_victims_ciphertext_is_refused_by_aggregator_and_custodian(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: three firms contribute; the aggregator's accomplice is a member on the roster
    agg = start_aggregator(custodians.public_key)
    accomplice = enrol_accomplice(agg)
    [victim, h1, h2] = firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    spec = open_round(agg, "copies", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "copies")
        f.client.contribute_paillier("copies")
    pk, n2 = custodians.public_key, custodians.public_key.nsquare
    stored = _stored(agg, "copies")
    v, a, b = (stored[public_key_b64(f.key)] for f in (victim, h1, h2))
    # re-randomised copy: c·r^n; derived: (c_h1·c_h2)^-1 · Enc(3·offset), so the "sum" of four is the victim's value
    rerandomised = tuple(c * pow(7, pk.n, n2) % n2 for c in v.ciphertexts)
    layout = paillier.spec_layout(spec)
    offset = paillier.pack([0] * layout.n_slots, layout)
    derived = tuple(pow(x * y % n2, -1, n2) * (1 + 3 * o * pk.n) % n2
                    for x, y, o in zip(a.ciphertexts, b.ciphertexts, offset, strict=True))
    path = paillier.contribution_path("copies")

    for name, cts in (("re-randomised", rerandomised), ("derived", derived)):
        copy = paillier.sign_contribution(pk, "copies", cts, accomplice, v.proofs)
        body = canonical_json(copy.to_dict())
        # Execute 1: posted through the aggregator's own API, its check refuses it
        headers = sign_request(accomplice, "POST", path, body, datetime.now(UTC)) | {"Content-Type": "application/json"}
        posted = agg.http.post(path, content=body, headers=headers)
        assert posted.status_code == 400 and "proof" in posted.text, (name, posted.text)

    # Execute 2: the round closes; the operator stores the derived copy anyway, with the accomplice's signed receipt
    assert agg.admin("POST", "/api/v1/rounds/copies/run").json()["state"] == "aggregating"
    copy = paillier.sign_contribution(pk, "copies", derived, accomplice, v.proofs)
    log_as_aggregator(agg, translog.CONTRIBUTION_RECEIPT, receipt_payload("copies", accomplice, copy.to_dict()),
                      body=copy.to_dict(), member=accomplice, round_id="copies")
    with pytest.raises(paillier.CustodianRefused, match="no valid proof that the sender knows its plaintext"):
        decrypt(custodians, 0, agg, "copies")

    # Assert
    assert not any("copies" in done for done in decrypted_rounds(custodians))


def test_the_same_member_twice_in_the_log_is_refused(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: three firms contribute; the operator replays the victim's receipt (its signed request) in the log
    agg = start_aggregator(custodians.public_key)
    [victim, *_] = firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    open_round(agg, "twice", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "twice")
        f.client.contribute_paillier("twice")
    assert agg.admin("POST", "/api/v1/rounds/twice/run").json()["state"] == "aggregating"
    receipt = next(e for e in fetch_log(agg.http, BASE)
                   if e.type == translog.CONTRIBUTION_RECEIPT and e.payload["member"] == fingerprint(public_key_b64(victim.key)))
    log_as_aggregator(agg, translog.CONTRIBUTION_RECEIPT, dict(receipt.payload))

    with pytest.raises(paillier.CustodianRefused, match="contributed more than once"):
        decrypt(custodians, 0, agg, "twice")

    assert not any("twice" in done for done in decrypted_rounds(custodians))


# ------------------------------------------------------------ (d) twice per round, (e) below the minimum


def test_the_honest_round_decrypts_each_stage_once_and_a_second_request_is_refused(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: three firms post every stage, both custodians decrypt every stage: the factor is published
    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    spec = open_round(agg, "once", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "once")
    ended = run_stages(agg, custodians, firms, "once")
    assert ended["state"] == "published", ended
    posts = [f"paillier:contribution:{s}" for s in paillier.STAGE_NAMES]
    assert all([s for s in f.sent("once") if s.startswith("paillier:contribution")] == posts for f in firms)
    assert stage_entries(agg, "once") == [(s, "proceed") for s in paillier.STAGE_NAMES]
    with agg.store.transaction() as tx:
        stored = tx.get_aggregate("once")
    assert stored is not None
    # Assert: the stored sums are exactly the plaintext sums of the firms' approved vectors (screen and values slots)
    rows = [node_rounds.approved_contribution(f.store, "once")[1].ints for f in firms]
    plain = [sum(col) for col in zip(*rows, strict=True)]
    kept = [(slot.name, got, want) for slot, got, want in zip(vector_layout(spec), stored[0], plain, strict=True)
            if got is not None]
    assert kept and all(got == want for _name, got, want in kept), kept
    assert {"w", "count"} <= {name for name, _g, _w in kept}

    # Execute / Assert: the operator serves the request again (e.g. with a subset), each custodian refuses
    subset = [json.loads(c.body) for c in _rows(agg, "once")][:2]
    again = agg.lying(lambda _path, doc: doc, lambda path: {"contributions": subset} if path.endswith("-request") else None)
    for i in range(2):
        with pytest.raises(paillier.CustodianRefused, match="already ended"):
            decrypt(custodians, i, agg, "once", http=again)
    assert all({"once", *(f"once/{s}" for s in paillier.STAGE_NAMES[1:])} <= done for done in decrypted_rounds(custodians))
    for f in firms:  # the node posts each stage once: the round ended, nothing more is sent
        assert f.client.contribute_paillier("once")["sent"] is None


def test_a_round_where_one_firm_holds_90_percent_stops_after_dominance_before_any_component_sum(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: firm 0 produces 13.5 Mt against the others' 1.5 Mt (90 % of the total)
    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id, first_production=13_500_000.0)
    open_round(agg, "dominated", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "dominated")

    # Execute
    ended = run_stages(agg, custodians, firms, "dominated")

    # Assert: suppressed by the dominance rule after the dominance stage; no values contribution was ever made
    assert ended["state"] == "suppressed" and "dominance" in ended["decision"], ended
    assert stage_entries(agg, "dominated") == [("screen", "proceed"), ("dominance", "stop")]
    with agg.store.transaction() as tx:
        assert tx.count_contributions("dominated", "values") == 0 and tx.count_contributions("dominated", "cells") == 0
        assert tx.get_aggregate("dominated") is None
    assert all(done & {"dominated", "dominated/dominance", "dominated/values"} == {"dominated", "dominated/dominance"}
               for done in decrypted_rounds(custodians))
    for f in firms:
        assert "paillier:contribution:values" not in f.sent("dominated")
        assert f.client.contribute_paillier("dominated")["waiting_for"] is None
    with pytest.raises(paillier.CustodianRefused, match="already ended"):
        decrypt(custodians, 0, agg, "dominated", http=agg.lying(lambda _p, d: d, lambda p: {"contributions": []}
                                                                  if p.endswith("-request") else None))


def test_custodians_refuse_the_values_stage_unless_the_log_shows_dominance_passed(
    custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: a dishonest aggregator's log: screen decided 'proceed', then values contributions of the three firms,
    # with the dominance stage missing, stopped, or decided after the values were collected
    firms = [generate_identity() for _ in range(3)]
    spec = paillier_spec("skip-dominance", custodians.public_key.key_id)
    values = [paillier.encrypt_contribution(custodians.public_key, paillier.make_layout([10**6] * 3, 200, 2048),
                                            [5, 6, 7], spec.round_id, f, stage="values") for f in firms]
    screens = [paillier.encrypt_contribution(custodians.public_key, paillier.make_layout([10**6] * 3, 200, 2048),
                                             [1, 2, 3], spec.round_id, f) for f in firms]
    aggregator = generate_identity()

    def logged(*decisions: tuple[str, str]) -> list[Any]:
        log = round_log(aggregator, spec, firms, list(zip(firms, screens, strict=True)))
        for stage, decision in decisions:
            log.append(translog.STAGE, stage_payload(spec, stage, decision))
        for k, (f, c) in enumerate(zip(firms, values, strict=True)):
            log.append(translog.CONTRIBUTION_RECEIPT,
                       receipt_payload(spec.round_id, f, c.to_dict(), f"1893456100.{k:06d}", stage="values"))
        return log.entries

    def ask(log: list[Any], stage: str | None) -> None:
        custodian_decrypt(custodians.shares[0], PASSWORDS[0], spec.round_id, log=log,
                          aggregator_key=public_key_b64(aggregator), bodies=[c.to_dict() for c in values], stage=stage)

    # Execute / Assert
    with pytest.raises(paillier.CustodianRefused, match="waiting for stage 'dominance', not 'values'"):
        ask(logged(("screen", "proceed")), "values")
    with pytest.raises(paillier.CustodianRefused, match="no dominance receipt|have no dominance receipt"):
        ask(logged(("screen", "proceed")), None)
    with pytest.raises(paillier.CustodianRefused, match="stopped at stage dominance"):
        ask(logged(("screen", "proceed"), ("dominance", "stop")), "values")
    with pytest.raises(paillier.CustodianRefused, match="decides stage 'values' where the stages' order expects 'dominance'"):
        ask(logged(("screen", "proceed"), ("values", "proceed")), "cells")
    assert not any("skip-dominance/values" in done or "skip-dominance" in done for done in decrypted_rounds(custodians))


def test_fewer_contributions_than_min_participants_are_refused(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path
) -> None:
    # Prepare: three firms invited, two contribute; the aggregator asks the custodians without closing the round
    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    open_round(agg, "too-few", custodians.public_key.key_id, 3)
    for f in firms[:2]:
        consent(f, "too-few")
        f.client.contribute_paillier("too-few")
    bodies = [json.loads(c.body) for c in _rows(agg, "too-few")]

    def serve_open_round(path: str) -> Any:  # the real server says 409 while the round is open
        return {"contributions": bodies} if path.endswith("/decryption-request") else None

    lying = agg.lying(lambda _path, doc: doc, serve_open_round)

    with pytest.raises(paillier.CustodianRefused, match="2 contribution"):
        decrypt(custodians, 0, agg, "too-few", http=lying)

    assert not any("too-few" in done for done in decrypted_rounds(custodians))


def test_a_paillier_spec_without_a_key_id_is_not_a_valid_spec() -> None:
    with pytest.raises(ValueError, match=r"paillier\.key_id: missing"):
        sample_spec(INDUSTRY, n_firms=3, protocol="paillier")


# ------------------------------------------------------------------------------------------ helpers


def _rows(agg: Aggregator, round_id: str) -> list[ContributionRow]:
    with agg.store.transaction() as tx:
        return tx.list_contributions(round_id)


def _stored(agg: Aggregator, round_id: str) -> dict[str, paillier.SignedContribution]:
    out = {}
    for row in _rows(agg, round_id):
        c = paillier.SignedContribution.from_dict(json.loads(row.body))
        out[c.sender] = c
    return out


def test_pcf_node_pin_paillier_key_pins_a_fingerprint_and_refuses_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from node.contribute import PAILLIER_KEY_SETTING
    from pcf.cli import app

    monkeypatch.setenv("PCF_NODE_HOME", str(tmp_path / "node"))
    (tmp_path / "node").mkdir()
    runner = CliRunner()

    bad = runner.invoke(app, ["node", "pin-paillier-key", "not-a-fingerprint", "--json"])
    good = runner.invoke(app, ["node", "pin-paillier-key", "AB" * 32, "--json"])

    assert bad.exit_code != 0 and "64 hex digits" in bad.stdout + bad.stderr
    assert good.exit_code == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["paillier_key"] == "ab" * 32
    store = NodeStore(f"sqlite:///{tmp_path / 'node' / 'node.db'}")
    try:
        assert store.get_setting(PAILLIER_KEY_SETTING) == "ab" * 32
    finally:
        store.close()


def test_pcf_node_contribute_wait_posts_every_stage_as_the_round_opens_it(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: firm 0 runs `pcf node contribute ROUND --wait` from the start; the others and the custodians go on
    import threading

    from typer.testing import CliRunner

    import node.client
    from pcf.cli import app

    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    open_round(agg, "waiting", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "waiting")
    first = firms[0]
    monkeypatch.setattr(node.client, "AggregatorClient", lambda store, home: AggregatorClient(
        store, home, BASE, http=agg.lying(lambda _path, doc: doc), key=first.key))
    monkeypatch.setenv("PCF_NODE_HOME", str(tmp_path / "node0"))
    result: dict[str, Any] = {}

    def cli() -> None:
        out = CliRunner().invoke(app, ["node", "contribute", "waiting", "--wait", "120", "--poll", "0.05",
                                       "--db", f"sqlite:///{tmp_path / 'node0.db'}", "--json"])
        result.update(code=out.exit_code, out=out.stdout)

    # Execute
    waiter = threading.Thread(target=cli)
    waiter.start()
    try:
        for f in firms[1:]:
            assert f.client.contribute_paillier("waiting")["sent"] == "screen"
        while agg.admin("GET", "/api/v1/rounds/waiting").json()["contributions"] < 3:
            waiter.join(0.05)
        assert agg.admin("POST", "/api/v1/rounds/waiting/run").json()["state"] == "aggregating"
        while (state := agg.admin("GET", "/api/v1/rounds/waiting").json()["state"]) == "aggregating":
            request = agg.admin("GET", "/api/v1/rounds/waiting/decryption-request")
            if request.status_code == 409:  # the cohort still posts the stage
                waiter.join(0.05)
                continue
            for i in range(2):
                agg.http.post("/api/v1/rounds/waiting/partial-decryptions", content=decrypt(custodians, i, agg, "waiting"),
                              headers={"Content-Type": "application/json"})
            if agg.admin("GET", "/api/v1/rounds/waiting").json()["state"] == "aggregating":
                for f in firms[1:]:
                    assert f.client.contribute_paillier("waiting")["sent"] is not None
    finally:
        waiter.join(60)

    # Assert: the command posted each stage once as it opened and returned when the round ended
    assert state == "published"
    assert result["code"] == 0, result
    shown = json.loads(result["out"])
    assert shown["sent_now"] == list(paillier.STAGE_NAMES) and shown["waiting_for"] is None
    assert shown["state"] == "published"
    # each firm audits the contexts it was sent against the log and the published totals (node.audit)
    audited = CliRunner().invoke(app, ["node", "audit", "waiting", "--db", f"sqlite:///{tmp_path / 'node0.db'}",
                                       "--json"])  # fmt: skip
    assert audited.exit_code == 0, audited.stdout + audited.stderr
    report = json.loads(audited.stdout)
    assert report["contexts"] == ["dominance", "values", "cells"] and report["published"] and report["findings"] == []
    assert firms[1].client.audit("waiting")["findings"] == []


def test_a_stage_the_whole_cohort_did_not_post_within_its_window_aborts_the_round(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the screen is decrypted; the dominance stage opens with no time to post (window 0)
    import aggregator.round_paillier

    monkeypatch.setattr(aggregator.round_paillier, "STAGE_WINDOW", timedelta(0))
    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id)
    open_round(agg, "late", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "late")
        f.client.contribute_paillier("late")
    assert agg.admin("POST", "/api/v1/rounds/late/run").json()["state"] == "aggregating"
    for i in range(2):
        agg.http.post("/api/v1/rounds/late/partial-decryptions", content=decrypt(custodians, i, agg, "late"),
                      headers={"Content-Type": "application/json"})

    # Execute: a firm reads the stage after its window passed
    status = firms[0].client.contribute_paillier("late")

    # Assert: the round is aborted with the reason; nothing of the dominance stage was sent
    shown = agg.admin("GET", "/api/v1/rounds/late").json()
    assert shown["state"] == "aborted" and "every stage needs the whole cohort" in shown["decision"], shown
    assert status["sent"] is None and status["waiting_for"] is None
    assert all("paillier:contribution:dominance" not in f.sent("late") for f in firms)


def test_an_aggregator_that_logs_a_failing_dominance_stage_as_passed_gets_no_values_decrypted(
    start_aggregator: Callable[[paillier.SplitPublicKey], Aggregator], custodians: Custodians, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: firm 0 holds 90 % of production; the aggregator's rule is rigged to let every cell pass, so it
    # logs the dominance stage as 'proceed' and opens the values stage, which the firms then post
    import protocols.disclosure

    monkeypatch.setattr(protocols.disclosure, "decide_cells",
                        lambda _spec, _counts: (protocols.disclosure.StageDecision(True, None, "rigged"), []))
    agg = start_aggregator(custodians.public_key)
    firms = enrol_firms(agg, tmp_path, 3, pin=custodians.public_key.key_id, first_production=13_500_000.0)
    open_round(agg, "rigged", custodians.public_key.key_id, 3)
    for f in firms:
        consent(f, "rigged")
        f.client.contribute_paillier("rigged")
    assert agg.admin("POST", "/api/v1/rounds/rigged/run").json()["state"] == "aggregating"
    for _stage in ("screen", "dominance"):
        for i in range(2):
            agg.http.post("/api/v1/rounds/rigged/partial-decryptions", content=decrypt(custodians, i, agg, "rigged"),
                          headers={"Content-Type": "application/json"})
        for f in firms:
            f.client.contribute_paillier("rigged")
    assert stage_entries(agg, "rigged") == [("screen", "proceed"), ("dominance", "proceed")]
    assert all("paillier:contribution:values" in f.sent("rigged") for f in firms)

    # Execute / Assert: each custodian combines the dominance counts itself and refuses; so it does without them
    for i in range(2):
        with pytest.raises(paillier.CustodianRefused, match=r"production \(b = 1, m = 1\) fail the p %-rule"):
            decrypt(custodians, i, agg, "rigged")
    no_partials = agg.lying(lambda path, doc: {**doc, "previous_partials": []} if path.endswith("-request") else doc)
    with pytest.raises(paillier.CustodianRefused, match="checks the p %-rule's counts itself"):
        decrypt(custodians, 0, agg, "rigged", http=no_partials)
    assert all("rigged/values" not in done for done in decrypted_rounds(custodians))
