"""Attack: the aggregator invents members (Sybils) to isolate a firm's contribution; nodes and custodians refuse.

The adversary runs the aggregator: it holds the aggregator's signing key, so it can sign any spec
and roster it likes. What it does not hold is the membership authority's key. A lying aggregator
(an HTTP server answering the node's real client) invites the victim to a round whose roster
holds members it made up, each with a different kind of bad certificate; the node, which pinned
the authority's key at enrolment, refuses the invitation with the reason and sends nothing for the
round. The custodian's member check refuses the same rosters, and the aggregator itself refuses to
enrol a key without a valid certificate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_client import InProcessClient, in_process_client
from pydantic import SecretStr

from aggregator.app import create_app
from aggregator.settings import AggregatorSettings
from keys.identity import Ed25519PrivateKey, fingerprint, generate_identity, public_key_b64, sign
from node import rounds
from node.client import AggregatorClient
from node.cohort import load_revocation_list, pin_authority_key
from node.service import import_paths
from node.store import NodeStore
from pcf.samples import background_files, firm_files, sample_spec
from protocols import certificates as c
from protocols.auth import sign_enrollment
from protocols.canonical import Kind, encode
from protocols.paillier import CustodianRefused, roster_member_keys
from protocols.roster import SignedRoster, sign_roster
from protocols.spec import sign_spec, spec_hash

AGGREGATOR = generate_identity()
AUTHORITY = generate_identity()
AUTHORITY_PUB = public_key_b64(AUTHORITY)
BASE = "http://aggregator.test"
ADMIN = "admin-token-0123456789abcdef"
CODES = ["91350100M000100Y43", "91330100716105852F", "91440300708461136T", "914403001922038216"]


def now() -> datetime:
    return datetime.now(UTC)


def certify(key: Ed25519PrivateKey, uscc: str, name: str, *, by: Ed25519PrivateKey = AUTHORITY,
            days: tuple[int, int] = (-1, 365)) -> c.MemberCertificate:
    return c.issue_certificate(by, public_key_b64(key), uscc, f"{name}有限公司", f"{name} Co., Ltd.",
                               issued_at=now() + timedelta(days=days[0]), expires_at=now() + timedelta(days=days[1]))


# ------------------------------------------------------------------------------- the lying aggregator


class LyingAggregator:
    """Answers the node's client as the aggregator would, with whatever spec and roster it chose to sign."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/aggregator":  # it is the aggregator: it holds the key and signs the challenge
            challenge = {"challenge": request.url.params["challenge"]}
            return httpx.Response(200, json={"public_key": public_key_b64(AGGREGATOR), "challenge_signature":
                                             sign(AGGREGATOR, encode(Kind.AGGREGATOR_CHALLENGE, challenge))})
        if request.url.path == "/api/v1/rounds":
            return httpx.Response(200, json=self.rounds)
        return httpx.Response(404, json={"error": "not-found", "detail": request.url.path})


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[tuple[NodeStore, AggregatorClient, LyingAggregator, Ed25519PrivateKey]]:
    store = NodeStore(f"sqlite:///{tmp_path / 'victim.db'}")
    import_paths(store, background_files() + [firm_files("aluminium")[0]])
    store.set_setting(rounds.AGGREGATOR_KEY_SETTING, public_key_b64(AGGREGATOR))
    pin_authority_key(store, AUTHORITY_PUB)
    key = generate_identity()
    server = LyingAggregator()
    http = httpx.Client(transport=httpx.MockTransport(server.handle))
    client = AggregatorClient(store, tmp_path, BASE, http=http, key=key, insecure_http=True)
    yield store, client, server, key
    http.close()
    store.close()


def invite(server: LyingAggregator, victim_key: Ed25519PrivateKey,
           others: list[tuple[Ed25519PrivateKey, c.MemberCertificate | None]]) -> tuple[str, SignedRoster]:
    spec = sample_spec("aluminium", protocol="secagg")
    members = [(victim_key, certify(victim_key, CODES[0], "Victim Aluminium")), *others]
    roster = {str(1000 + i): public_key_b64(k) for i, (k, _) in enumerate(members)}
    certs = {str(1000 + i): cert for i, (_, cert) in enumerate(members) if cert is not None}
    signed = sign_roster(AGGREGATOR, spec.round_id, spec_hash(spec), roster, certs)
    server.rounds = [{"signed_spec": sign_spec(spec, AGGREGATOR).model_dump(mode="json"),
                      "roster": signed.model_dump(mode="json")}]
    return spec.round_id, signed


def honest(i: int) -> tuple[Ed25519PrivateKey, c.MemberCertificate]:
    key = generate_identity()
    return key, certify(key, CODES[i], f"Honest Smelter {i}")


def sybil_self_signed() -> tuple[Ed25519PrivateKey, c.MemberCertificate | None]:
    key = generate_identity()
    return key, certify(key, CODES[3], "Phantom Metals", by=AGGREGATOR)


def sybil_without_certificate() -> tuple[Ed25519PrivateKey, c.MemberCertificate | None]:
    return generate_identity(), None


def sybil_with_another_firms_certificate() -> tuple[Ed25519PrivateKey, c.MemberCertificate | None]:
    real = generate_identity()
    return generate_identity(), certify(real, CODES[3], "Real Smelter")


def sybil_expired() -> tuple[Ed25519PrivateKey, c.MemberCertificate | None]:
    key = generate_identity()
    return key, certify(key, CODES[3], "Closed Smelter", days=(-400, -1))


def sybil_relabelled_authority() -> tuple[Ed25519PrivateKey, c.MemberCertificate | None]:
    key, cert = sybil_self_signed()
    assert cert is not None
    return key, cert.model_copy(update={"authority_key_id": fingerprint(AUTHORITY_PUB)})


def sybil_second_key_of_the_victim_firm() -> tuple[Ed25519PrivateKey, c.MemberCertificate | None]:
    key = generate_identity()
    return key, certify(key, CODES[0], "Victim Aluminium")  # the authority would refuse; a stolen old one


SYBILS: dict[str, tuple[Callable[[], tuple[Ed25519PrivateKey, c.MemberCertificate | None]], str]] = {
    "certificate signed by the aggregator": (sybil_self_signed, c.WRONG_AUTHORITY),
    "aggregator's certificate relabelled with the authority's key id": (sybil_relabelled_authority, c.SIGNATURE),
    "no certificate": (sybil_without_certificate, c.MISSING),
    "another firm's certificate": (sybil_with_another_firms_certificate, c.KEY_MISMATCH),
    "expired certificate": (sybil_expired, c.EXPIRED),
    "the victim's own USCC under a second key": (sybil_second_key_of_the_victim_firm, c.DUPLICATE_CODE),
}


def assert_nothing_sent_for(store: NodeStore, round_id: str) -> None:
    assert rounds.outbox(store, round_id) == []
    assert {row.round_id for row in rounds.outbox(store)} <= {"-"}  # only the listing of open rounds left
    with pytest.raises(rounds.ConsentError, match="no invitation"):
        rounds.approve(store, round_id, firm_uuid(store), confirm_zeros=True)


def firm_uuid(store: NodeStore) -> str:
    return next(p.uuid for p in store.bundle().processes.values() if p.annual_production)


# ------------------------------------------------------------------------------------------ nodes


@pytest.mark.parametrize("attack", list(SYBILS), ids=list(SYBILS))
def test_node_refuses_a_roster_with_an_invented_member_and_sends_nothing(victim: Any, attack: str) -> None:
    store, client, server, key = victim
    make_sybil, reason = SYBILS[attack]
    round_id, _ = invite(server, key, [honest(1), make_sybil()])

    with pytest.raises(c.CertificateRejected) as refused:
        client.fetch_invitations()

    assert refused.value.reason == reason
    assert "1002" in str(refused.value)  # the firm reads which member and why
    assert_nothing_sent_for(store, round_id)


def test_two_sybils_next_to_the_victim_are_refused_even_when_min_participants_is_met(victim: Any) -> None:
    store, client, server, key = victim
    round_id, _ = invite(server, key, [sybil_self_signed(), sybil_without_certificate()])
    with pytest.raises(c.CertificateRejected):
        client.fetch_invitations()
    assert_nothing_sent_for(store, round_id)


def test_a_certified_cohort_is_shown_in_the_preview_with_names_codes_and_disclosure(victim: Any) -> None:
    store, client, server, key = victim
    round_id, _ = invite(server, key, [honest(1), honest(2)])
    assert client.fetch_invitations() == [round_id]

    shown = rounds.preview(store, round_id, firm_uuid(store), confirm_zeros=True).to_dict()

    assert [(m["uscc"], m["legal_name_en"]) for m in shown["cohort"]] == [
        (CODES[0], "Victim Aluminium Co., Ltd."), (CODES[1], "Honest Smelter 1 Co., Ltd."),
        (CODES[2], "Honest Smelter 2 Co., Ltd.")]
    assert shown["disclosure"]["min_participants"] == 3 and shown["disclosure"]["p_percent"] == 10
    assert shown["disclosure"]["refused"] == []


def test_a_revocation_loaded_after_the_invitation_stops_the_contribution(victim: Any) -> None:
    store, client, server, key = victim
    other_key, other_cert = honest(1)
    round_id, _ = invite(server, key, [(other_key, other_cert), honest(2)])
    assert client.fetch_invitations() == [round_id]
    rounds.approve(store, round_id, firm_uuid(store), confirm_zeros=True)

    crl = c.sign_revocation_list(AUTHORITY, 2, [other_cert.serial], issued_at=now(), next_update=now() + timedelta(7))
    load_revocation_list(store, crl.model_dump(mode="json"))

    with pytest.raises(c.CertificateRejected) as refused:
        rounds.approved_contribution(store, round_id)  # what every sending path calls first
    assert refused.value.reason == c.REVOKED
    assert rounds.outbox(store, round_id) == []
    # an older list, validly signed, cannot un-revoke (the aggregator could replay one)
    older = c.sign_revocation_list(AUTHORITY, 1, [], issued_at=now(), next_update=now() + timedelta(7))
    with pytest.raises(c.CertificateRejected, match="older"):
        load_revocation_list(store, older.model_dump(mode="json"))
    with pytest.raises(c.CertificateRejected):
        rounds.approved_contribution(store, round_id)


def test_a_revocation_list_signed_by_the_aggregator_is_not_loaded(victim: Any) -> None:
    store, _client, _server, _key = victim
    forged = c.sign_revocation_list(AGGREGATOR, 99, [], issued_at=now(), next_update=now() + timedelta(7))
    with pytest.raises(c.CertificateRejected) as refused:
        load_revocation_list(store, forged.model_dump(mode="json"))
    assert refused.value.reason == c.WRONG_AUTHORITY


# -------------------------------------------------------------------------------------- custodians


@pytest.mark.parametrize("attack", list(SYBILS), ids=list(SYBILS))
def test_custodian_refuses_a_roster_with_an_invented_member(attack: str) -> None:
    make_sybil, _reason = SYBILS[attack]
    spec = sample_spec("aluminium", protocol="secagg")
    victim = generate_identity()
    members = [(victim, certify(victim, CODES[0], "Victim Aluminium")), honest(1), make_sybil()]
    roster = {fingerprint(public_key_b64(k)): public_key_b64(k) for k, _ in members}
    certs = {fingerprint(public_key_b64(k)): cert for k, cert in members if cert is not None}
    signed = sign_roster(AGGREGATOR, spec.round_id, spec_hash(spec), roster, certs)
    agg = public_key_b64(AGGREGATOR)

    with pytest.raises(CustodianRefused, match="Sybil or revoked member"):
        roster_member_keys(signed, agg, spec.round_id, spec_hash(spec), authority_key=AUTHORITY_PUB, now=now())
    honest_only = sign_roster(AGGREGATOR, spec.round_id, spec_hash(spec), dict(list(roster.items())[:2]),
                              {k: v for k, v in certs.items() if k in list(roster)[:2]})
    assert len(roster_member_keys(honest_only, agg, spec.round_id, spec_hash(spec), authority_key=AUTHORITY_PUB,
                                  now=now())) == 2


# ------------------------------------------------------------------------------------- enrolment


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[InProcessClient]:
    settings = AggregatorSettings(
        environment="development", home=tmp_path / "aggregator", db_url=f"sqlite:///{tmp_path / 'aggregator.db'}",
        admin_token=SecretStr(ADMIN), pact_client_secret=SecretStr("pact-secret-0123456789abcdef"),
        authority_public_key=AUTHORITY_PUB, insecure_http=True,
    )
    app = create_app(settings)
    with in_process_client(app, "http://testserver") as http:
        yield http


def enrol(http: InProcessClient, key: Ed25519PrivateKey, cert: c.MemberCertificate | None,
          org: tuple[str, str] | None = None) -> httpx.Response:
    """POST the node's signed enrolment (``protocols.auth.sign_enrollment``, as ``pcf node enroll`` sends it)."""
    zh, en = org or ((cert.legal_name_zh, cert.legal_name_en) if cert else ("某公司", "Some Co."))
    body = sign_enrollment(key, zh, en, f"supernode-key-{fingerprint(public_key_b64(key))}", cert)
    return http.post("/api/v1/members/enroll", content=body.model_dump_json(),
                     headers={"Content-Type": "application/json"})


def refused(response: httpx.Response, status: int, text: str) -> bool:
    return response.status_code == status and text in response.json()["detail"]


def test_enrolment_needs_a_valid_certificate_for_the_enrolling_key(aggregator: InProcessClient) -> None:
    key = generate_identity()
    assert refused(enrol(aggregator, key, None), 403, "needs a membership certificate")
    assert refused(enrol(aggregator, key, certify(key, CODES[0], "Phantom", by=AGGREGATOR)), 403, "wrong-authority")
    assert refused(enrol(aggregator, key, certify(generate_identity(), CODES[0], "Real")), 403, "key-mismatch")
    assert refused(enrol(aggregator, key, certify(key, CODES[0], "Old", days=(-30, -1))), 403, "expired")
    assert refused(enrol(aggregator, key, certify(key, CODES[0], "Real"), ("别名", "Alias Ltd.")), 403, "legal names")
    assert aggregator.get("/api/v1/members/keys").json() == []

    me = enrol(aggregator, key, certify(key, CODES[0], "Real"))
    assert me.status_code == 201 and me.json()["uscc"] == CODES[0]

    second = generate_identity()
    assert refused(enrol(aggregator, second, certify(second, CODES[0], "Real")), 409, "already enrolled")
    keys = aggregator.get("/api/v1/members/keys").json()
    assert [k["certificate"]["uscc"] for k in keys] == [CODES[0]]


# ------------------------------------------------------------------ the aggregator's own roster


def test_the_aggregator_rosters_only_certified_members_and_carries_their_certificates(tmp_path: Path) -> None:
    from example_round import example_spec

    from aggregator.store import MemberRow
    from protocols.roster import roster_from_log_payload, verify_roster_certificates

    settings = AggregatorSettings(
        environment="development", home=tmp_path / "aggregator", db_url=f"sqlite:///{tmp_path / 'aggregator.db'}",
        admin_token=SecretStr(ADMIN), pact_client_secret=SecretStr("pact-secret-0123456789abcdef"),
        authority_public_key=AUTHORITY_PUB, insecure_http=True,
    )
    node_ids = iter(range(2**63 + 1, 2**64))
    app = create_app(settings, registrar=lambda _key: str(next(node_ids)))
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with in_process_client(app, "https://testserver") as http:
        for i in range(3):
            key = generate_identity()
            member = enrol(http, key, certify(key, CODES[i], f"Smelter {i}")).json()
            assert http.request("POST", f"/api/v1/members/{member['id']}/approve", headers=admin).status_code == 200
        with app.state.pcf.ctx.store.transaction() as tx:  # the operator writes a member into its own database
            sybil = public_key_b64(generate_identity())
            tx.add_member(MemberRow(fingerprint=fingerprint(sybil), org_name_zh="幽灵", org_name_en="Phantom",
                                    identity_public_key=sybil, supernode_public_key="x", status="approved",
                                    flower_node_id="42", created_at=now(), updated_at=now()))
        spec = example_spec(round_id="certified-roster", deadline=now() + timedelta(days=1))
        assert http.request("POST", "/api/v1/rounds", json=spec.model_dump(mode="json"), headers=admin).is_success
        assert http.request("POST", f"/api/v1/rounds/{spec.round_id}/open", headers=admin).json()["state"] == "open"
        [entry] = [e for e in http.get("/api/v1/log").json()["entries"] if e["type"] == "roster"]

    logged = roster_from_log_payload(entry["payload"])
    assert "42" not in logged.roster and len(logged.roster) == 3
    certs = verify_roster_certificates(logged, AUTHORITY_PUB, now=now())
    assert sorted(cert.uscc for cert in certs.values()) == sorted(CODES[:3])
