"""A signature made by one role verifies in every other, through each role's own code; one changed byte is refused.

The aggregator runs in process (its FastAPI app behind ``httpx.ASGITransport``, :mod:`asgi_client`)
with a registrar that hands out 64-bit Flower node ids and a runner that sums the example firms'
vectors, so a whole secagg round publishes a factor without a SuperLink. The node talks to it
with its own :class:`~node.client.AggregatorClient`, and ``pcf verify`` checks the result with
:func:`pcf.verify.verify_factor`, which imports nothing of the aggregator.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from asgi_client import InProcessClient, in_process_client
from example_round import example_firms, example_spec
from pydantic import SecretStr
from stage_runner import stage_runner

from aggregator import translog
from aggregator.app import create_app
from aggregator.settings import AggregatorSettings
from aggregator.store import open_store
from keys.identity import Ed25519PrivateKey, generate_identity, load_private_key, public_key_b64, sign
from node import client as node_client
from node import rounds as node_rounds
from node.client import AggregatorClient
from node.store import NodeStore
from pcf.verify import verify_factor
from protocols.auth import sign_request
from protocols.contribution import build_contribution
from protocols.errors import InvalidSignature
from protocols.factor import PublishedFactor
from protocols.provenance import ProvenanceError, VerifyReport, check_chain, check_factor
from protocols.roster import SignedRoster
from protocols.spec import RoundSpec, SignedSpec
from protocols.translog import (
    LEGACY_FORMAT,
    LogEntry,
    entry_hash,
    legacy_v0_entry_body,
    legacy_v0_entry_hash,
    verify_chain,
)

BASE = "https://testserver"  # the in-process tier stands for a TLS connection (scope scheme https)
ADMIN = "admin-token-0123456789abcdef"
NOW = datetime(2025, 3, 1, tzinfo=UTC)


def flip(text: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` replaced by ``new`` (one byte apart), which must occur."""
    assert old in text and len(old.encode()) == len(new.encode())
    changed = text.replace(old, new, 1)
    assert sum(a != b for a, b in zip(changed.encode(), text.encode(), strict=True)) == 1
    return changed


def example_round(round_id: str) -> RoundSpec:
    return example_spec(round_id=round_id, deadline=datetime.now(UTC) + timedelta(days=1))


def _example_rows(spec: RoundSpec, roster: Sequence[Any]) -> dict[str, list[int]]:
    """The four example smelters' vectors, one per roster member (every stage summed in the clear)."""
    rows = [build_contribution(spec, f.values, f.weight, f.footprint_by_gas).ints for f in example_firms(spec)]
    keys = [m.identity_public_key for m in roster] + [f"example-{i}" for i in range(len(rows))]
    return dict(zip(keys, rows, strict=False))


summing_runner = stage_runner(_example_rows)


@dataclass
class Member:
    client: AggregatorClient
    store: NodeStore
    key: Ed25519PrivateKey


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[InProcessClient]:
    settings = AggregatorSettings(
        environment="development",
        home=tmp_path / "aggregator",
        db_url=f"sqlite:///{tmp_path / 'aggregator.db'}",
        admin_token=SecretStr(ADMIN),
        pact_client_secret=SecretStr("pact-secret-0123456789abcdef"),
    )
    node_ids = iter(range(2**63 + 1, 2**64))  # above 2**53: they must travel as strings wherever signed
    app = create_app(settings, runner=summing_runner, registrar=lambda _supernode_key: str(next(node_ids)))
    with in_process_client(app, BASE) as http:
        yield http


def admin(http: InProcessClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return http.request(method, path, headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs)


def enrolled_members(http: InProcessClient, tmp_path: Path, count: int) -> list[Member]:
    members = []
    for i in range(count):
        store = NodeStore(f"sqlite:///{tmp_path / f'node{i}.db'}")
        key = generate_identity()
        client = AggregatorClient(store, tmp_path / f"node{i}", BASE, http=cast(httpx.Client, http), key=key)
        # the aggregator key as the association publishes it (out of band: its key file), pinned at enrolment
        published = public_key_b64(load_private_key(tmp_path / "aggregator" / "identity.key"))
        me = client.enroll(f"冶炼厂{i}", f"Smelter {i}", f"supernode-key-{i}", published)  # the node signs it
        assert admin(http, "POST", f"/api/v1/members/{me['id']}/approve").status_code == 200
        members.append(Member(client, store, key))
    return members


def wait_published(http: InProcessClient, round_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        data: dict[str, Any] = admin(http, "GET", f"/api/v1/rounds/{round_id}").json()
        if data["state"] in ("published", "suppressed", "aborted") or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


# ------------------------------------------------------------------ aggregator signs, node verifies


def test_the_spec_and_roster_the_aggregator_signs_pass_the_nodes_invitation_check(
    aggregator: InProcessClient, tmp_path: Path
) -> None:
    members = enrolled_members(aggregator, tmp_path, 3)
    spec = example_round("cross-roles-invitation")
    assert admin(aggregator, "POST", "/api/v1/rounds", json=spec.model_dump(mode="json")).status_code == 201
    assert admin(aggregator, "POST", f"/api/v1/rounds/{spec.round_id}/open").json()["state"] == "open"

    for member in members:
        assert member.client.fetch_invitations() == [spec.round_id]
        verified, roster = node_rounds.invitation(member.store, spec.round_id)
        assert verified == spec
        assert public_key_b64(member.key) in roster.values()
        assert all(int(node_id) > 2**53 for node_id in roster)


def test_one_byte_changed_in_the_signed_spec_or_roster_is_refused_by_the_node(
    aggregator: InProcessClient, tmp_path: Path
) -> None:
    [member, *_] = enrolled_members(aggregator, tmp_path, 3)
    spec = example_round("cross-roles-tamper")
    admin(aggregator, "POST", "/api/v1/rounds", json=spec.model_dump(mode="json"))
    admin(aggregator, "POST", f"/api/v1/rounds/{spec.round_id}/open")
    [item] = member.client._signed("GET", "/api/v1/rounds?state=open").json()
    spec_text, roster_text = json.dumps(item["signed_spec"]), json.dumps(item["roster"])

    def receive(spec_json: str, roster_json: str) -> RoundSpec:
        signed = SignedSpec.model_validate_json(spec_json)
        return node_rounds.receive_invitation(member.store, signed, SignedRoster.model_validate_json(roster_json))

    with pytest.raises(InvalidSignature):
        receive(flip(spec_text, '"min_participants": 3', '"min_participants": 2'), roster_text)
    with pytest.raises(InvalidSignature):
        receive(flip(spec_text, '"region": "CN"', '"region": "CO"'), roster_text)
    node_id = next(iter(item["roster"]["roster"]))
    with pytest.raises(InvalidSignature):
        other_id = node_id[:-1] + ("8" if node_id[-1] == "9" else "9")
        receive(spec_text, flip(roster_text, f'"{node_id}"', f'"{other_id}"'))
    assert receive(spec_text, roster_text) == spec


# ---------------------------------------------------------------------- node signs, aggregator checks


def test_a_request_the_node_signs_is_accepted_and_one_changed_byte_is_refused(
    aggregator: InProcessClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [member] = enrolled_members(aggregator, tmp_path, 1)
    me = member.client._signed("GET", "/api/v1/members/me")
    assert me.status_code == 200 and me.json()["status"] == "approved"

    def one_digit_later(*args: Any, **kwargs: Any) -> dict[str, str]:
        headers = sign_request(*args, **kwargs)
        ts = headers["X-PCF-Timestamp"]
        headers["X-PCF-Timestamp"] = ts[:-1] + ("1" if ts[-1] == "0" else "0")  # 10 µs apart: fresh, not signed
        return headers

    monkeypatch.setattr(node_client, "sign_request", one_digit_later)
    refused = member.client._signed("GET", "/api/v1/members/me")
    assert refused.status_code == 401 and "does not verify" in refused.text


# ------------------------------------------------------------------ aggregator logs, pcf verify checks


def test_pcf_verify_accepts_the_log_and_factor_the_aggregator_publishes(aggregator: InProcessClient, tmp_path: Path) -> None:
    enrolled_members(aggregator, tmp_path, 4)
    spec = example_round("cross-roles-publish")
    admin(aggregator, "POST", "/api/v1/rounds", json=spec.model_dump(mode="json"))
    admin(aggregator, "POST", f"/api/v1/rounds/{spec.round_id}/open")
    assert admin(aggregator, "POST", f"/api/v1/rounds/{spec.round_id}/run").status_code == 202
    assert wait_published(aggregator, spec.round_id)["state"] == "published"
    aggregator_key = aggregator.get("/api/v1/aggregator").json()["public_key"]
    log = aggregator.get("/api/v1/log").json()["entries"]
    assert [e["type"] for e in log] == ["spec_published", "roster", *["stage"] * 4, "aggregate", "publication"]
    assert {e["format"] for e in log} == {1}
    factor_id = log[-1]["payload"]["factor_id"]

    report = verify_factor(factor_id, BASE, aggregator_public_key=aggregator_key, client=cast(httpx.Client, aggregator))
    assert report.ok, report.reason
    assert report.entries_checked == 8 and report.round_id == spec.round_id

    # one byte of the served log changed: the aggregate's n
    def altered(request: httpx.Request) -> httpx.Response:
        served = aggregator.get(request.url.path, params=dict(request.url.params))
        text = served.text
        if request.url.path == "/api/v1/log":
            text = flip(text, '"n":4', '"n":5')
        return httpx.Response(served.status_code, content=text.encode(), headers={"content-type": "application/json"})

    with httpx.Client(transport=httpx.MockTransport(altered)) as lying:
        broken = verify_factor(factor_id, BASE, aggregator_public_key=aggregator_key, client=lying)
    assert not broken.ok and broken.break_seq == 3
    assert broken.reason == "entry_hash does not match the entry's content"

    # a factor a 0.1 aggregator published: its chain would verify, its numbers are not claimed to
    factor = PublishedFactor.model_validate(aggregator.get(f"/api/v1/factors/{factor_id}").json())
    entries = [LogEntry.model_validate(e) for e in log]
    entries[-1] = entries[-1].model_copy(update={"format": LEGACY_FORMAT})
    with pytest.raises(ProvenanceError, match="release 0.1") as caught:
        check_factor(entries, aggregator_key, factor, VerifyReport(ok=False, factor_id=factor_id, base_url=BASE))
    assert caught.value.seq == 8


def test_a_receipt_the_node_signed_and_the_aggregator_logged_passes_the_chain_check(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'aggregator.db'}")
    aggregator_key, member_key = generate_identity(), generate_identity()
    body = b'{"ciphertexts":["00"]}'
    path = "/api/v1/rounds/r1/contributions"
    headers = sign_request(member_key, "POST", path, body, NOW)  # what the node sends
    receipt = {
        "round_id": "r1",
        "member": headers["X-PCF-Key"],
        "contribution_hash": hashlib.sha256(body).hexdigest(),
        "method": "POST",
        "path": path,
        "timestamp": headers["X-PCF-Timestamp"],
        "node_signature": headers["X-PCF-Signature"],
    }
    with store.transaction() as tx:
        translog.append(tx, aggregator_key, translog.SPEC_PUBLISHED, {"round_id": "r1", "spec_hash": "00"}, NOW)
        translog.append(tx, aggregator_key, translog.CONTRIBUTION_RECEIPT, receipt, NOW + timedelta(seconds=1))
    with store.transaction() as tx:
        served = [translog.row_to_entry(row).model_dump_json() for row in tx.list_log()]
    entries = [LogEntry.model_validate_json(text) for text in served]  # as pcf verify receives them
    members = {headers["X-PCF-Key"]: public_key_b64(member_key)}
    report = VerifyReport(ok=False, factor_id="-", base_url=BASE)

    check_chain(entries, public_key_b64(aggregator_key), members, report)
    assert report.entries_checked == 2

    forged = entries[1].model_copy(update={"payload": {**receipt, "path": path.replace("r1", "r2")}})
    with pytest.raises(ProvenanceError) as caught:
        check_chain([entries[0], forged], public_key_b64(aggregator_key), members, report)
    assert caught.value.seq == 2
    other = {headers["X-PCF-Key"]: public_key_b64(generate_identity())}
    broken = verify_chain(entries, public_key_b64(aggregator_key), other)
    assert broken is not None and broken.seq == 2 and "node signature" in broken.reason


# ------------------------------------------------------------------------------- release 0.1 entries


def _legacy_entry(key: Ed25519PrivateKey, seq: int, prev: str, payload: dict[str, Any]) -> LogEntry:
    """An entry as release 0.1 wrote it (untagged sorted JSON, hash over prev || body)."""
    at = (NOW + timedelta(seconds=seq)).isoformat()
    digest = legacy_v0_entry_hash(prev, legacy_v0_entry_body(seq, translog.ABORT, at, payload))
    return LogEntry(seq=seq, prev_hash=prev, type=translog.ABORT, at=at, payload=payload, entry_hash=digest,
                    signature=sign(key, bytes.fromhex(digest)), format=LEGACY_FORMAT)  # fmt: skip


def test_entries_of_release_0_1_still_verify_and_cannot_follow_current_ones() -> None:
    key = generate_identity()
    first = _legacy_entry(key, 1, translog.GENESIS_HASH, {"round_id": "r0", "reason": "铝 test"})
    second = _legacy_entry(key, 2, first.entry_hash, {"round_id": "r0", "reason": "again"})
    assert verify_chain([first, second], public_key_b64(key), {}) is None

    as_current = second.model_copy(update={"format": 1})
    broken = verify_chain([first, as_current], public_key_b64(key), {})
    assert broken is not None and broken.seq == 2 and "entry_hash" in broken.reason

    at = NOW.isoformat()
    current_hash = entry_hash(translog.GENESIS_HASH, 1, translog.ABORT, at, {"round_id": "r1", "reason": "x"})
    current = LogEntry(seq=1, prev_hash=translog.GENESIS_HASH, type=translog.ABORT, at=at,
                       payload={"round_id": "r1", "reason": "x"}, entry_hash=current_hash,
                       signature=sign(key, bytes.fromhex(current_hash)))  # fmt: skip
    assert verify_chain([current], public_key_b64(key), {}) is None
    downgraded = _legacy_entry(key, 2, current.entry_hash, {"round_id": "r1", "reason": "y"})
    broken = verify_chain([current, downgraded], public_key_b64(key), {})
    assert broken is not None and broken.seq == 2 and "format-0 entry after a format-1" in broken.reason
    floats = _legacy_entry(key, 1, translog.GENESIS_HASH, {"round_id": "r0", "reason": "x"})
    floats = floats.model_copy(update={"payload": {"round_id": "r0", "reason": 0.5}})
    broken = verify_chain([floats], public_key_b64(key), {})
    assert broken is not None and "float" in broken.reason
