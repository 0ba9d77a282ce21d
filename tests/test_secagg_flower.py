"""Secure aggregation through Flower's Message API, in process (protocols.flower_apps.InProcessGrid)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Context, Message, RecordDict, UserConfig
from flwr.clientapp import ClientApp
from plain_apps import plain_client_app

from keys.identity import generate_identity, public_key_b64, save_private_key
from protocols.flower_apps import (
    MESSAGE_TYPE_SECAGG,
    InProcessGrid,
    NodeConfigKey,
    RecordKey,
    content_to_request,
    plain_server_app,
    request_to_content,
    run_plain_sum,
    run_secagg,
    secagg_client_app,
    secagg_server_app,
)
from protocols.secagg import (
    AdvertiseRequest,
    ClientPhase,
    ClientState,
    RoundParams,
    SecAggAborted,
    ShareKeysRequest,
    Stage,
    advertisement_payload,
    to_signed,
)

N = 10
D = 500
NODES = [2**63 + 17 * i for i in range(N)]  # Flower node ids are uint64; half exceed int64


@dataclasses.dataclass
class Federation:
    keys: dict[int, Ed25519PrivateKey]
    roster: dict[int, str]
    roster_path: Path
    vectors: dict[int, npt.NDArray[np.int64]]
    node_configs: dict[int, dict[str, str]]

    def expected(self, nodes: tuple[int, ...] | list[int]) -> npt.NDArray[np.int64]:
        total: npt.NDArray[np.int64] = np.sum([self.vectors[n] for n in nodes], axis=0, dtype=np.int64)
        return total


def server_context(run_config: UserConfig) -> Context:
    """The Context a ServerApp gets: only its run config matters here."""
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    """Ten nodes, each with an identity key file, the roster and its vector in a JSON input file."""
    keys = {node: generate_identity() for node in NODES}
    roster = {node: public_key_b64(key) for node, key in keys.items()}
    roster_path = tmp_path / "roster.json"
    roster_path.write_text(json.dumps({str(n): k for n, k in roster.items()}))
    rng = np.random.default_rng(3)
    vectors = {node: rng.integers(-(2**40), 2**40, D, dtype=np.int64) for node in NODES}
    configs = {}
    for i, node in enumerate(NODES):
        node_dir = tmp_path / f"node{i}"
        node_dir.mkdir()
        save_private_key(keys[node], node_dir / "identity.pem")
        doc = {
            "identity_key_path": "identity.pem",
            "roster": {str(n): k for n, k in roster.items()},
            "vector": [int(v) for v in vectors[node]],
        }
        (node_dir / "input.json").write_text(json.dumps(doc))
        configs[node] = {NodeConfigKey.INPUT: str(node_dir / "input.json")}
    return Federation(keys, roster, roster_path, vectors, configs)


def stage_of(message: Message) -> str:
    return str(message.content.config_records[RecordKey.CONFIG][RecordKey.STAGE])


def drop_at(stage: Stage, nodes: list[int]) -> Callable[[int, Message], bool]:
    """Nodes in ``nodes`` stop answering from ``stage`` on."""
    order = [s.value for s in Stage]
    return lambda node, msg: node in nodes and order.index(stage_of(msg)) >= order.index(stage.value)


def test_server_app_sums_client_apps_exactly_via_json_provider(federation: Federation, tmp_path: Path) -> None:
    grid = InProcessGrid({n: secagg_client_app for n in NODES}, federation.node_configs)
    result_path = tmp_path / "result.json"
    run_config: UserConfig = {
        "round-id": "2024-steel",
        "vector-length": D,
        "roster-path": str(federation.roster_path),
        "result-path": str(result_path),
        "stage-timeout": 5.0,
        "connect-timeout": 1.0,
    }
    secagg_server_app(grid, server_context(run_config))
    result = json.loads(result_path.read_text())
    assert result["contributors"] == sorted(NODES)
    assert [int(v) for v in result["total_signed"]] == federation.expected(NODES).tolist()
    for node in NODES:  # per-round client state stayed in each node's context, secrets wiped
        stored = grid.contexts[node].state.config_records[RecordKey.STATE_PREFIX + "2024-steel"]
        blob = stored[RecordKey.STATE]
        assert isinstance(blob, bytes)
        state = ClientState.from_json(blob)
        assert state.phase == ClientPhase.DONE and state.mask_sk == b""


@pytest.mark.parametrize("stage", list(Stage))
def test_dropouts_at_each_stage_are_tolerated_over_flower(federation: Federation, stage: Stage) -> None:
    lost = NODES[:3]
    grid = InProcessGrid({n: secagg_client_app for n in NODES}, federation.node_configs, drop=drop_at(stage, lost))
    result = run_secagg(grid, NODES, f"r-{stage.value}", D, federation.roster, timeout=1.0)
    # Nodes lost after the masked-input stage had already contributed their masked inputs.
    expected = tuple(sorted(NODES)) if stage in (Stage.CONSISTENCY, Stage.UNMASK) else tuple(sorted(NODES[3:]))
    assert result.contributors == expected
    assert np.array_equal(to_signed(result.total), federation.expected(list(expected)))


def test_round_below_threshold_aborts_and_writes_no_result(federation: Federation, tmp_path: Path) -> None:
    grid = InProcessGrid(
        {n: secagg_client_app for n in NODES}, federation.node_configs, drop=drop_at(Stage.MASKED_INPUT, NODES[:5])
    )
    result_path = tmp_path / "result.json"
    run_config: UserConfig = {
        "round-id": "r",
        "vector-length": D,
        "roster-path": str(federation.roster_path),
        "result-path": str(result_path),
        "connect-timeout": 1.0,
    }
    with pytest.raises(SecAggAborted) as info:
        secagg_server_app(grid, server_context(run_config))
    assert (info.value.stage, info.value.survivors, info.value.threshold) == (Stage.MASKED_INPUT, 5, 6)
    assert not result_path.exists()


def test_node_whose_provider_fails_is_a_dropout_not_a_failure(federation: Federation, tmp_path: Path) -> None:
    broken = NODES[4]
    federation.node_configs[broken] = {NodeConfigKey.INPUT: str(tmp_path / "missing.json")}
    grid = InProcessGrid({n: secagg_client_app for n in NODES}, federation.node_configs)
    result = run_secagg(grid, NODES, "r", D, federation.roster)
    assert broken not in result.contributors
    assert np.array_equal(to_signed(result.total), federation.expected(list(result.contributors)))


def test_provider_is_replaceable_by_module_function_reference(
    federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The custom provider contributes 2x the vector of the JSON file: the sum must show it.
    (tmp_path / "my_provider.py").write_text(
        "import numpy as np\n"
        "from protocols.flower_apps import NodeInputs, json_file_provider\n"
        "def doubled(context, round_id):\n"
        "    base = json_file_provider(context, round_id)\n"
        "    return NodeInputs(base.identity, base.roster, lambda: np.asarray(base.vector(), dtype=np.int64) * 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    configs = {n: {**cfg, NodeConfigKey.PROVIDER: "my_provider:doubled"} for n, cfg in federation.node_configs.items()}
    grid = InProcessGrid({n: secagg_client_app for n in NODES}, configs)
    result = run_secagg(grid, NODES, "r", D, federation.roster)
    assert np.array_equal(to_signed(result.total), 2 * federation.expected(NODES))


def test_plain_sum_baseline_matches_secure_sum(federation: Federation, tmp_path: Path) -> None:
    plain_grid = InProcessGrid({n: plain_client_app for n in NODES}, federation.node_configs)
    plain = run_plain_sum(plain_grid, NODES, "r", D)
    secure = run_secagg(
        InProcessGrid({n: secagg_client_app for n in NODES}, federation.node_configs), NODES, "r", D, federation.roster
    )
    assert np.array_equal(plain.total, secure.total)
    result_path = tmp_path / "plain.json"
    run_config: UserConfig = {
        "round-id": "r",
        "vector-length": D,
        "roster-path": str(federation.roster_path),
        "result-path": str(result_path),
        "connect-timeout": 1.0,
    }
    plain_server_app(plain_grid, server_context(run_config))
    assert [int(v) for v in json.loads(result_path.read_text())["total_signed"]] == federation.expected(NODES).tolist()


class RecordingGrid(InProcessGrid):
    """Keeps every message it delivers; can rewrite messages in flight (a malicious relay)."""

    def __init__(
        self,
        apps: Mapping[int, ClientApp],
        node_configs: Mapping[int, Mapping[str, str]],
        *,
        rewrite: Callable[[Message], Message] | None = None,
    ) -> None:
        super().__init__(apps, node_configs)
        self.sent: list[Message] = []
        self.rewrite = rewrite

    def _deliver(self, message: Message) -> Message | None:
        if self.rewrite is not None:
            message = self.rewrite(message)
        self.sent.append(message)
        return super()._deliver(message)


def test_replayed_stage_message_gets_an_error_reply(federation: Federation) -> None:
    grid = RecordingGrid({n: secagg_client_app for n in NODES}, federation.node_configs)
    run_secagg(grid, NODES, "r", D, federation.roster)
    share_keys = next(m for m in grid.sent if stage_of(m) == Stage.SHARE_KEYS.value)
    replies = list(
        grid.send_and_receive(
            [Message(share_keys.content, dst_node_id=share_keys.metadata.dst_node_id, message_type=MESSAGE_TYPE_SECAGG)]
        )
    )
    assert len(replies) == 1 and replies[0].has_error()
    assert "replayed or out of order" in (replies[0].error.reason or "")


def test_relay_that_substitutes_a_public_key_is_caught_by_the_peer(federation: Federation) -> None:
    victim, target = NODES[0], NODES[1]
    attacker = Ed25519PrivateKey.generate()

    def substitute(message: Message) -> Message:
        if message.metadata.dst_node_id != victim or stage_of(message) != Stage.SHARE_KEYS.value:
            return message
        request = content_to_request(message.content)
        assert isinstance(request, ShareKeysRequest)
        ads = []
        for ad in request.advertisements:
            if ad.sender == target:
                fake = bytes(32 * [5])
                payload = advertisement_payload(ad.round_id, ad.sender, ad.index, fake, ad.mask_pk)
                ad = dataclasses.replace(ad, cipher_pk=fake, signature=attacker.sign(payload))
            ads.append(ad)
        message.content = request_to_content(dataclasses.replace(request, advertisements=tuple(ads)))
        return message

    grid = RecordingGrid({n: secagg_client_app for n in NODES}, federation.node_configs, rewrite=substitute)
    result = run_secagg(grid, NODES, "r", D, federation.roster)
    assert victim not in result.contributors  # it refused to go on, and was dropped
    assert np.array_equal(to_signed(result.total), federation.expected(list(result.contributors)))


def test_client_app_without_input_file_config_fails_with_a_clear_error() -> None:
    app: ClientApp = secagg_client_app
    grid = InProcessGrid({1: app, 2: app, 3: app}, {})
    with pytest.raises(SecAggAborted):
        run_secagg(grid, [1, 2, 3], "r", 4, {n: public_key_b64(generate_identity()) for n in (1, 2, 3)})
    probe = Message(
        request_to_content(AdvertiseRequest(RoundParams.create("probe", [1, 2, 3], 4), 1)),
        dst_node_id=1,
        message_type=MESSAGE_TYPE_SECAGG,
    )
    reply = next(iter(grid.send_and_receive([probe])))
    assert "secagg-input" in (reply.error.reason or "") and "not a file" in (reply.error.reason or "")
