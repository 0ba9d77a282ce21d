"""Flower ServerApp/ClientApp adapters for secure aggregation (and the plain-sum baseline's server side), and an in-process Grid.

The plain-sum baseline's ClientApp, which sends a vector in the clear, is not in the installed
package: it lives in ``tests/plain_apps.py``.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    Context,
    Error,
    Message,
    RecordDict,
    UserConfigValue,
)
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict  # pylint: disable=E0611
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from keys.identity import load_private_key, load_public_key_b64
from protocols.secagg import (
    AdvertiseRequest,
    AggregateResult,
    ClientPhase,
    ClientState,
    ConsistencyReply,
    ConsistencyRequest,
    EncryptedShare,
    KeyAdvertisement,
    MaskedInputReply,
    MaskedInputRequest,
    ProtocolViolation,
    Reply,
    Request,
    RoundParams,
    SecAggClient,
    SecAggServer,
    ShareKeysReply,
    ShareKeysRequest,
    Stage,
    UnmaskReply,
    UnmaskRequest,
    default_value_bits,
    encode_input,
)

__all__ = [
    "MESSAGE_TYPE_PLAIN",
    "MESSAGE_TYPE_SECAGG",
    "NEXT_STAGE_FILE",
    "STOP_FILE",
    "InProcessGrid",
    "InputProvider",
    "NodeConfigKey",
    "NodeInputs",
    "RecordKey",
    "RunConfigKey",
    "StageOrder",
    "content_to_reply",
    "content_to_request",
    "handle_secagg_message",
    "json_file_provider",
    "load_provider",
    "message_payload",
    "plain_server_app",
    "reply_to_content",
    "request_stage_context",
    "request_to_content",
    "result_to_json",
    "round_stage_context",
    "run_plain_sum",
    "run_secagg",
    "secagg_client_app",
    "secagg_server_app",
    "server_main",
]

log = logging.getLogger(__name__)

MESSAGE_TYPE_SECAGG = "query.secagg"
MESSAGE_TYPE_PLAIN = "query.plainsum"


class RecordKey:
    """Names of the records and of their fields in messages and in the node's context state."""

    CONFIG = "secagg"
    ARRAYS = "secagg-arrays"
    STATE_PREFIX = "secagg-state/"
    STATE = "state"
    STAGE = "stage"
    ROUND_ID = "round-id"
    RECIPIENT = "recipient"
    SENDER = "sender"
    PARTICIPANTS = "participants"
    VECTOR_LENGTH = "vector-length"
    THRESHOLD = "threshold"
    DEGREE = "degree"
    VALUE_BITS = "value-bits"
    INDEX = "index"
    CIPHER_PK = "cipher-pk"
    MASK_PK = "mask-pk"
    SIGNATURE = "signature"
    AD_SENDERS = "ad-senders"
    AD_INDICES = "ad-indices"
    AD_CIPHER_PKS = "ad-cipher-pks"
    AD_MASK_PKS = "ad-mask-pks"
    AD_SIGNATURES = "ad-signatures"
    SHARE_PEERS = "share-peers"
    SHARE_CIPHERTEXTS = "share-ciphertexts"
    MASKED = "masked"
    SURVIVORS = "survivors"
    SIGNERS = "signers"
    SIGNATURES = "signatures"
    SEED_OWNERS = "seed-owners"
    SEED_SHARES = "seed-shares"
    KEY_OWNERS = "key-owners"
    KEY_SHARES = "key-shares"
    VECTOR = "vector"
    PLAIN = "plainsum"
    STAGE_CONTEXT = "stage-context"
    """Advertise request (and the node's per-round state): the aggregator-signed disclosure-stage context, JSON."""


class NodeConfigKey:
    """``node_config`` keys read by the ClientApps (``flower-supernode --node-config``)."""

    PROVIDER = "secagg-provider"
    """``module:function`` of an :class:`InputProvider`; default :func:`json_file_provider`."""
    INPUT = "secagg-input"
    """Path of the JSON file read by :func:`json_file_provider`."""


class RunConfigKey:
    """``run_config`` keys read by the ServerApps (``[tool.flwr.app.config]`` / ``flwr run -c``)."""

    ROUND_ID = "round-id"
    VECTOR_LENGTH = "vector-length"
    ROSTER_PATH = "roster-path"
    PARTICIPANTS = "participants"
    THRESHOLD = "threshold"
    DEGREE = "degree"
    STAGE_TIMEOUT = "stage-timeout"
    CONNECT_TIMEOUT = "connect-timeout"
    RESULT_PATH = "result-path"
    VALUE_BITS = "value-bits"
    """Input bound b (values in [-2**b, 2**b)); 0 or absent: the default for the participant count."""
    STAGE_CONTEXT = "stage-context"
    """The first stage's aggregator-signed context (JSON, empty for none); sent in the advertise requests."""
    RUN_TIMEOUT = "run-timeout"
    """Seconds after its start until which the ServerApp waits for further stages of the run
    (:data:`NEXT_STAGE_FILE`, :data:`STOP_FILE`); 0 or absent: the run is one secure sum."""


NEXT_STAGE_FILE = "next-{}.json"
"""The k-th stage after the first of a multi-stage run (k = 1, 2, ...), written by the aggregator next to
``result-path`` once it has decided on the previous result: ``{"stage", "round_id", "vector_length",
"participants", "threshold", "degree", "value_bits", "stage_context"}``. Its result goes to
``result-<stage>.json`` in the same folder."""
STOP_FILE = "stop.json"
"""Written by the aggregator next to ``result-path`` when the run has no further stage: the ServerApp exits."""


# =========================================================================== wire encoding


def _cfg(content: RecordDict) -> ConfigRecord:
    try:
        return content.config_records[RecordKey.CONFIG]
    except KeyError:
        raise ProtocolViolation(f"message has no {RecordKey.CONFIG!r} config record") from None


def _field(cfg: ConfigRecord, key: str, kind: type) -> Any:
    if key not in cfg:
        raise ProtocolViolation(f"message field {key!r} is missing")
    value = cfg[key]
    if kind is list:
        if not isinstance(value, list):
            raise ProtocolViolation(f"message field {key!r} is {type(value).__name__}; accepted: a list")
        return list(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolViolation(f"message field {key!r} is {type(value).__name__}; accepted: {kind.__name__}")
    return value


def _ints(cfg: ConfigRecord, key: str) -> list[int]:
    values = _field(cfg, key, list)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ProtocolViolation(f"message field {key!r} must list integers")
    return [int(v) for v in values]


def _bytes_list(cfg: ConfigRecord, key: str) -> list[bytes]:
    values = _field(cfg, key, list)
    if not all(isinstance(v, bytes) for v in values):
        raise ProtocolViolation(f"message field {key!r} must list byte strings")
    return [bytes(v) for v in values]


def _head(stage: Stage, round_id: str, party_key: str, party: int) -> dict[str, Any]:
    return {RecordKey.STAGE: stage.value, RecordKey.ROUND_ID: round_id, party_key: party}


def request_to_content(request: Request, *, stage_context: str = "") -> RecordDict:
    """Encode a server -> client protocol message as a RecordDict.

    ``stage_context`` (the aggregator-signed context of the round's disclosure stage, JSON) travels
    in the advertise request only; the node keeps it for the round's later messages.
    """
    cfg = _head(request.stage, request.round_id, RecordKey.RECIPIENT, request.recipient)
    if isinstance(request, AdvertiseRequest):
        p = request.params
        cfg |= {
            RecordKey.PARTICIPANTS: list(p.participants),
            RecordKey.VECTOR_LENGTH: p.vector_length,
            RecordKey.THRESHOLD: p.threshold,
            RecordKey.DEGREE: p.degree,
            RecordKey.VALUE_BITS: p.value_bits,
        }
        if stage_context:
            cfg[RecordKey.STAGE_CONTEXT] = stage_context
    elif isinstance(request, ShareKeysRequest):
        ads = request.advertisements
        cfg |= {
            RecordKey.AD_SENDERS: [ad.sender for ad in ads],
            RecordKey.AD_INDICES: [ad.index for ad in ads],
            RecordKey.AD_CIPHER_PKS: [ad.cipher_pk for ad in ads],
            RecordKey.AD_MASK_PKS: [ad.mask_pk for ad in ads],
            RecordKey.AD_SIGNATURES: [ad.signature for ad in ads],
        }
    elif isinstance(request, MaskedInputRequest):
        cfg |= {
            RecordKey.SHARE_PEERS: [es.sender for es in request.shares],
            RecordKey.SHARE_CIPHERTEXTS: [es.ciphertext for es in request.shares],
        }
    elif isinstance(request, ConsistencyRequest):
        cfg |= {RecordKey.SURVIVORS: list(request.survivors)}
    else:
        cfg |= {
            RecordKey.SIGNERS: list(request.signatures),
            RecordKey.SIGNATURES: list(request.signatures.values()),
        }
    return RecordDict({RecordKey.CONFIG: ConfigRecord(cfg)})


def content_to_request(content: RecordDict) -> Request:
    """Decode :func:`request_to_content`; raises ProtocolViolation on a malformed message."""
    cfg = _cfg(content)
    try:
        stage = Stage(_field(cfg, RecordKey.STAGE, str))
    except ValueError:
        raise ProtocolViolation(f"unknown stage {cfg.get(RecordKey.STAGE)!r}") from None
    round_id = _field(cfg, RecordKey.ROUND_ID, str)
    me = _field(cfg, RecordKey.RECIPIENT, int)
    if stage == Stage.ADVERTISE_KEYS:
        try:
            params = RoundParams(
                round_id=round_id,
                participants=tuple(_ints(cfg, RecordKey.PARTICIPANTS)),
                vector_length=_field(cfg, RecordKey.VECTOR_LENGTH, int),
                threshold=_field(cfg, RecordKey.THRESHOLD, int),
                degree=_field(cfg, RecordKey.DEGREE, int),
                value_bits=_field(cfg, RecordKey.VALUE_BITS, int),
            )
        except ValueError as err:
            raise ProtocolViolation(f"round parameters refused: {err}") from None
        return AdvertiseRequest(params, me)
    if stage == Stage.SHARE_KEYS:
        columns: list[list[Any]] = [
            _ints(cfg, RecordKey.AD_SENDERS),
            _ints(cfg, RecordKey.AD_INDICES),
            _bytes_list(cfg, RecordKey.AD_CIPHER_PKS),
            _bytes_list(cfg, RecordKey.AD_MASK_PKS),
            _bytes_list(cfg, RecordKey.AD_SIGNATURES),
        ]
        if len({len(c) for c in columns}) > 1:
            raise ProtocolViolation("advertisement columns differ in length")
        ads = tuple(KeyAdvertisement(round_id, s, i, c, m, g) for s, i, c, m, g in zip(*columns, strict=True))
        return ShareKeysRequest(round_id, me, ads)
    if stage == Stage.MASKED_INPUT:
        peers, blobs = _ints(cfg, RecordKey.SHARE_PEERS), _bytes_list(cfg, RecordKey.SHARE_CIPHERTEXTS)
        if len(peers) != len(blobs):
            raise ProtocolViolation("share columns differ in length")
        return MaskedInputRequest(
            round_id, me, tuple(EncryptedShare(s, me, b) for s, b in zip(peers, blobs, strict=True))
        )
    if stage == Stage.CONSISTENCY:
        return ConsistencyRequest(round_id, me, tuple(_ints(cfg, RecordKey.SURVIVORS)))
    signers, signatures = _ints(cfg, RecordKey.SIGNERS), _bytes_list(cfg, RecordKey.SIGNATURES)
    if len(signers) != len(signatures) or len(set(signers)) != len(signers):
        raise ProtocolViolation("signature columns differ in length or repeat a signer")
    return UnmaskRequest(round_id, me, dict(zip(signers, signatures, strict=True)))


def request_stage_context(content: RecordDict) -> str:
    """The stage context an advertise request carries (``""`` when none); raises ProtocolViolation if not a string."""
    cfg = _cfg(content)
    return _field(cfg, RecordKey.STAGE_CONTEXT, str) if RecordKey.STAGE_CONTEXT in cfg else ""


def round_stage_context(context: Context, round_id: str) -> str:
    """The stage context the advertise request of secagg round ``round_id`` carried in this run (``""``: none).

    :func:`handle_secagg_message` keeps it in the node's per-round state before the provider runs,
    so a provider reads the same context for every message of the round.
    """
    stored = context.state.config_records.get(RecordKey.STATE_PREFIX + round_id)
    value = stored.get(RecordKey.STAGE_CONTEXT, "") if stored is not None else ""
    return value if isinstance(value, str) else ""


def reply_to_content(reply: Reply) -> RecordDict:
    """Encode a client -> server protocol message as a RecordDict (masked vector in an ArrayRecord)."""
    cfg = _head(reply.stage, reply.round_id, RecordKey.SENDER, reply.sender)
    content = RecordDict()
    if isinstance(reply, KeyAdvertisement):
        cfg |= {
            RecordKey.INDEX: reply.index,
            RecordKey.CIPHER_PK: reply.cipher_pk,
            RecordKey.MASK_PK: reply.mask_pk,
            RecordKey.SIGNATURE: reply.signature,
        }
    elif isinstance(reply, ShareKeysReply):
        cfg |= {
            RecordKey.SHARE_PEERS: [es.recipient for es in reply.shares],
            RecordKey.SHARE_CIPHERTEXTS: [es.ciphertext for es in reply.shares],
        }
    elif isinstance(reply, MaskedInputReply):
        content[RecordKey.ARRAYS] = ArrayRecord({RecordKey.MASKED: Array(np.ascontiguousarray(reply.masked))})
    elif isinstance(reply, ConsistencyReply):
        cfg |= {RecordKey.SIGNATURE: reply.signature}
    else:
        cfg |= {
            RecordKey.SEED_OWNERS: list(reply.seed_shares),
            RecordKey.SEED_SHARES: list(reply.seed_shares.values()),
            RecordKey.KEY_OWNERS: list(reply.key_shares),
            RecordKey.KEY_SHARES: list(reply.key_shares.values()),
        }
    content[RecordKey.CONFIG] = ConfigRecord(cfg)
    return content


def content_to_reply(content: RecordDict) -> Reply:
    """Decode :func:`reply_to_content`; raises ProtocolViolation on a malformed message."""
    cfg = _cfg(content)
    try:
        stage = Stage(_field(cfg, RecordKey.STAGE, str))
    except ValueError:
        raise ProtocolViolation(f"unknown stage {cfg.get(RecordKey.STAGE)!r}") from None
    round_id = _field(cfg, RecordKey.ROUND_ID, str)
    sender = _field(cfg, RecordKey.SENDER, int)
    if stage == Stage.ADVERTISE_KEYS:
        return KeyAdvertisement(
            round_id,
            sender,
            _field(cfg, RecordKey.INDEX, int),
            _field(cfg, RecordKey.CIPHER_PK, bytes),
            _field(cfg, RecordKey.MASK_PK, bytes),
            _field(cfg, RecordKey.SIGNATURE, bytes),
        )
    if stage == Stage.SHARE_KEYS:
        peers, blobs = _ints(cfg, RecordKey.SHARE_PEERS), _bytes_list(cfg, RecordKey.SHARE_CIPHERTEXTS)
        if len(peers) != len(blobs):
            raise ProtocolViolation("share columns differ in length")
        return ShareKeysReply(
            round_id, sender, tuple(EncryptedShare(sender, r, b) for r, b in zip(peers, blobs, strict=True))
        )
    if stage == Stage.MASKED_INPUT:
        try:
            masked = content.array_records[RecordKey.ARRAYS][RecordKey.MASKED].numpy()
        except KeyError:
            raise ProtocolViolation("masked-input reply carries no masked vector") from None
        return MaskedInputReply(round_id, sender, masked)
    if stage == Stage.CONSISTENCY:
        return ConsistencyReply(round_id, sender, _field(cfg, RecordKey.SIGNATURE, bytes))
    columns = (
        _ints(cfg, RecordKey.SEED_OWNERS),
        _bytes_list(cfg, RecordKey.SEED_SHARES),
        _ints(cfg, RecordKey.KEY_OWNERS),
        _bytes_list(cfg, RecordKey.KEY_SHARES),
    )
    if len(columns[0]) != len(columns[1]) or len(columns[2]) != len(columns[3]):
        raise ProtocolViolation("share columns differ in length")
    return UnmaskReply(
        round_id, sender, dict(zip(columns[0], columns[1], strict=True)), dict(zip(columns[2], columns[3], strict=True))
    )


# =========================================================================== server side


PULL_INTERVAL = 0.1
"""Seconds between the ServerApp's pulls for replies (Flower's ``send_and_receive`` sleeps 3 s)."""


def _send_and_receive(grid: Grid, messages: list[Message], timeout: float | None) -> list[Message]:
    """Push ``messages``, then pull replies every :data:`PULL_INTERVAL` until all arrived or ``timeout`` passed.

    Each stage of a round costs one round trip, so a 3 s pull tick costs up to 3 s per stage.
    ``timeout=None`` waits for every reply. A grid whose ``synchronous`` attribute is true (the
    :class:`InProcessGrid`) has answered everything it will by the first pull.
    """
    pending = set(grid.push_messages(messages))
    deadline = None if timeout is None else time.monotonic() + timeout
    received: list[Message] = []
    while pending:
        for msg in grid.pull_messages(list(pending)):
            received.append(msg)
            pending.discard(msg.metadata.reply_to_message_id)
        if not pending or getattr(grid, "synchronous", False):
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(PULL_INTERVAL)
    return received


def _exchange(
    grid: Grid, contents: Mapping[int, RecordDict], message_type: str, group_id: str, timeout: float | None
) -> tuple[dict[int, RecordDict], dict[int, str]]:
    """Send one message per node and collect replies; a missing or error reply is a dropout."""
    ttl = None if timeout is None else max(timeout, 1.0) + 60.0
    messages = [
        Message(content, dst_node_id=node, message_type=message_type, group_id=group_id, ttl=ttl)
        for node, content in contents.items()
    ]
    replies: dict[int, RecordDict] = {}
    errors: dict[int, str] = {}
    for msg in _send_and_receive(grid, messages, timeout):
        node = msg.metadata.src_node_id
        if node not in contents or node in replies:
            continue
        if msg.has_error():
            errors[node] = f"client error {msg.error.code}: {(msg.error.reason or '').strip()[-300:]}"
        else:
            replies[node] = msg.content
    return replies, errors


def _decode_replies(
    server: SecAggServer, contents: Mapping[int, RecordDict], errors: Mapping[int, str]
) -> dict[int, object]:
    decoded: dict[int, object] = {}
    for node, content in contents.items():
        try:
            decoded[node] = content_to_reply(content)
        except ProtocolViolation as err:
            server.state.rejected[node] = f"malformed reply: {err}"
    for node, reason in errors.items():
        server.state.rejected[node] = reason
    return decoded


def _roster_keys(roster: Mapping[int, str] | Mapping[int, Ed25519PublicKey]) -> dict[int, Ed25519PublicKey]:
    return {
        int(node): key if isinstance(key, Ed25519PublicKey) else load_public_key_b64(key)
        for node, key in roster.items()
    }


def run_secagg(
    grid: Grid,
    node_ids: Sequence[int],
    round_id: str,
    vector_length: int,
    roster: Mapping[int, str] | Mapping[int, Ed25519PublicKey],
    *,
    threshold: int | None = None,
    degree: int | None = None,
    value_bits: int | None = None,
    timeout: float | None = 60.0,
    stage_context: str = "",
) -> AggregateResult:
    """Run one secure-aggregation round over a Flower Grid.

    Parameters
    ----------
    grid : Grid
        Flower Grid (SuperLink, simulation, or :class:`InProcessGrid`).
    node_ids : Sequence[int]
        Participating Flower node ids.
    round_id : str
        Unique id of this round (bound into every signature, key and AAD).
    vector_length : int
        Length of every node's integer input vector.
    roster : Mapping[int, str] | Mapping[int, Ed25519PublicKey]
        Node id -> enrolled Ed25519 identity key (base64url or key object).
    threshold, degree, value_bits : int | None
        Round parameters; ``None`` picks the defaults of :meth:`RoundParams.create`.
    timeout : float | None
        Seconds to wait for replies at each stage; a node that has not replied by then
        has dropped out.
    stage_context : str
        The aggregator-signed context of the disclosure stage (JSON, ``""`` for none), sent with the
        advertise requests.

    Returns
    -------
    AggregateResult
        ``total`` (numpy uint64, the sum mod 2**64 of the contributors' vectors) and
        ``contributors``.

    Raises
    ------
    SecAggAborted
        Too few nodes survived a stage; nothing is published.
    """
    params = RoundParams.create(
        round_id, node_ids, vector_length, threshold=threshold, degree=degree, value_bits=value_bits
    )
    server = SecAggServer(params, _roster_keys(roster))

    def exchange(requests: Mapping[int, Request]) -> dict[int, object]:
        contents = {node: request_to_content(req, stage_context=stage_context) for node, req in requests.items()}
        replies, errors = _exchange(grid, contents, MESSAGE_TYPE_SECAGG, round_id, timeout)
        return _decode_replies(server, replies, errors)

    try:
        requests1 = server.collect_advertisements(exchange(server.start()))
        requests2 = server.collect_shares(exchange(requests1))
        requests3 = server.collect_masked_inputs(exchange(requests2))
        requests4 = server.collect_consistency(exchange(requests3))
        result = server.collect_unmask(exchange(requests4))
    finally:
        for node, reason in sorted(server.state.rejected.items()):
            log.warning("secagg round %r: node %s excluded: %s", round_id, node, reason)
    return result


def run_plain_sum(
    grid: Grid,
    node_ids: Sequence[int],
    round_id: str,
    vector_length: int,
    *,
    value_bits: int | None = None,
    timeout: float | None = 60.0,
) -> AggregateResult:
    """Control baseline without privacy: every node sends its vector in the clear; the server adds them."""
    bits = default_value_bits(len(node_ids)) if value_bits is None else value_bits
    content = {
        node: RecordDict(
            {
                RecordKey.CONFIG: ConfigRecord(
                    {RecordKey.ROUND_ID: round_id, RecordKey.VECTOR_LENGTH: vector_length, RecordKey.VALUE_BITS: bits}
                )
            }
        )
        for node in node_ids
    }
    replies, errors = _exchange(grid, content, MESSAGE_TYPE_PLAIN, round_id, timeout)
    total = np.zeros(vector_length, dtype=np.uint64)
    contributors = []
    for node, reply in sorted(replies.items()):
        try:
            vector = reply.array_records[RecordKey.ARRAYS][RecordKey.VECTOR].numpy()
            total += encode_input(vector, vector_length, bits)
        except (KeyError, ValueError) as err:
            errors[node] = f"malformed reply: {err}"
            continue
        contributors.append(node)
    dropped = {node: Stage.MASKED_INPUT for node in node_ids if node not in contributors}
    return AggregateResult(round_id, total, tuple(contributors), dropped)


def _wait_for_nodes(grid: Grid, wanted: Iterable[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(wanted)
    while time.monotonic() < deadline and not wanted <= set(grid.get_node_ids()):
        time.sleep(0.5)


def result_to_json(result: AggregateResult) -> dict[str, Any]:
    """JSON form of a result: totals as decimal strings (uint64 does not fit JSON numbers safely)."""
    return {
        "round_id": result.round_id,
        "total": [str(int(v)) for v in result.total],
        "total_signed": [str(int(v)) for v in result.total.view(np.int64)],
        "contributors": list(result.contributors),
        "dropped": {str(node): stage.value for node, stage in result.dropped.items()},
    }


@dataclass(frozen=True)
class StageOrder:
    """One secure sum of a run: its secagg round id, parameters and where its result goes."""

    round_id: str
    vector_length: int
    participants: tuple[int, ...]
    threshold: int | None
    degree: int | None
    value_bits: int | None
    stage_context: str
    result_path: Path


_STAGE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(path)  # readers never see a half-written file


def _first_order(cfg: Mapping[str, UserConfigValue], roster: Mapping[int, str]) -> StageOrder:
    listed = str(cfg.get(RunConfigKey.PARTICIPANTS, "")).strip()
    return StageOrder(
        round_id=str(cfg[RunConfigKey.ROUND_ID]),
        vector_length=int(cfg[RunConfigKey.VECTOR_LENGTH]),
        participants=tuple(int(x) for x in listed.split(",")) if listed else tuple(sorted(roster)),
        threshold=int(cfg.get(RunConfigKey.THRESHOLD, 0)) or None,
        degree=int(cfg.get(RunConfigKey.DEGREE, 0)) or None,
        value_bits=int(cfg.get(RunConfigKey.VALUE_BITS, 0)) or None,
        stage_context=str(cfg.get(RunConfigKey.STAGE_CONTEXT, "") or ""),
        result_path=Path(str(cfg[RunConfigKey.RESULT_PATH])),
    )


def _next_order(folder: Path, k: int, deadline: float, roster: Mapping[int, str]) -> StageOrder | None:
    """Wait until ``deadline`` for the aggregator's k-th next stage; ``None`` on :data:`STOP_FILE` or time out."""
    path = folder / NEXT_STAGE_FILE.format(k)
    while not path.exists():
        if (folder / STOP_FILE).exists():
            return None
        if time.monotonic() >= deadline:
            log.warning("no further stage in %s before the run's time limit; the run ends", folder)
            return None
        time.sleep(PULL_INTERVAL / 2)
    doc = json.loads(path.read_text(encoding="utf-8"))
    stage = str(doc.get("stage", ""))
    if not _STAGE_NAME.fullmatch(stage):
        raise ValueError(f"{path}: stage {stage!r}; accepted: a lower-case stage name")
    participants = tuple(int(n) for n in doc["participants"])
    if not participants or not set(participants) <= set(roster):
        raise ValueError(f"{path}: participants {list(participants)} are not a part of the run's roster")
    return StageOrder(
        round_id=str(doc["round_id"]),
        vector_length=int(doc["vector_length"]),
        participants=participants,
        threshold=int(doc.get("threshold") or 0) or None,
        degree=int(doc.get("degree") or 0) or None,
        value_bits=int(doc.get("value_bits") or 0) or None,
        stage_context=str(doc.get("stage_context") or ""),
        result_path=folder / f"result-{stage}.json",
    )


def server_main(grid: Grid, context: Context, *, secure: bool) -> None:
    """Run the secure sums configured by :class:`RunConfigKey` keys, writing each result JSON atomically.

    The first sum is the run config's; with ``run-timeout`` set, the ServerApp then waits for the
    aggregator's next stage (:data:`NEXT_STAGE_FILE`) or :data:`STOP_FILE` beside ``result-path``, so
    the stages of a round share one Flower run. The aggregator keeps its key and every decision: each
    next stage, with its signed context, is written by it after it decided on the previous result.
    A failed stage raises; ``run_config["result-path"]`` names the result file of the stage under
    way, so a wrapper can report the failure there (:func:`pcf.flower_app.recording_server_app`).
    """
    started = time.monotonic()
    cfg = context.run_config
    roster_doc = json.loads(Path(str(cfg[RunConfigKey.ROSTER_PATH])).read_text(encoding="utf-8"))
    roster = {int(node): str(key) for node, key in roster_doc.items()}
    first = _first_order(cfg, roster)
    _wait_for_nodes(grid, first.participants, float(cfg.get(RunConfigKey.CONNECT_TIMEOUT, 30.0)))
    order: StageOrder | None = first
    timeout = float(cfg.get(RunConfigKey.STAGE_TIMEOUT, 60.0))
    run_timeout = float(cfg.get(RunConfigKey.RUN_TIMEOUT, 0.0) or 0.0)
    k = 0
    while order is not None:
        cfg[RunConfigKey.RESULT_PATH] = str(order.result_path)
        if secure:
            result = run_secagg(
                grid,
                order.participants,
                order.round_id,
                order.vector_length,
                roster,
                threshold=order.threshold,
                degree=order.degree,
                value_bits=order.value_bits,
                timeout=timeout,
                stage_context=order.stage_context,
            )
        else:
            result = run_plain_sum(
                grid, order.participants, order.round_id, order.vector_length,
                value_bits=order.value_bits, timeout=timeout,
            )  # fmt: skip
        _write_json(order.result_path, result_to_json(result))
        if run_timeout <= 0:
            return
        k += 1
        order = _next_order(order.result_path.parent, k, started + run_timeout, roster)


secagg_server_app = ServerApp()
"""ServerApp running one secure-aggregation round configured by :class:`RunConfigKey` keys."""


@secagg_server_app.main()
def _secagg_main(grid: Grid, context: Context) -> None:
    server_main(grid, context, secure=True)


plain_server_app = ServerApp()
"""ServerApp running the plain-sum baseline (no privacy) with the same run config."""


@plain_server_app.main()
def _plain_main(grid: Grid, context: Context) -> None:
    server_main(grid, context, secure=False)


# =========================================================================== client side


@dataclass(frozen=True)
class NodeInputs:
    """What a node contributes to a round: its identity, the roster it trusts, and (lazily) its vector.

    ``policy`` checks the server's round parameters against the node's invitation
    (:meth:`protocols.secagg_policy.RoundPolicy.check`); ``claim`` is called once the parameters
    passed, before the node's key advertisement is generated: it spends the firm's consent, and
    raises when the consent was already spent (a consent serves one run).
    """

    identity: Ed25519PrivateKey
    roster: Mapping[int, Ed25519PublicKey]
    vector: Callable[[], npt.ArrayLike]
    policy: Callable[[RoundParams], None] | None = None
    claim: Callable[[], None] | None = None


class InputProvider(Protocol):
    """Supplies a node's inputs for a round.

    Implementations MUST take the roster from a source the node trusts (never from the
    server), and SHOULD read the vector only when ``vector()`` is called (stage 2).
    """

    def __call__(self, context: Context, round_id: str) -> NodeInputs: ...


def json_file_provider(context: Context, round_id: str) -> NodeInputs:
    """Default provider: reads the JSON file named by ``node_config['secagg-input']``.

    The file holds ``{"identity_key_path": ..., "roster": {"<node id>": "<base64url key>"},
    "vector": [integers or decimal strings]}``; relative paths are relative to the file.
    """
    path = Path(str(context.node_config.get(NodeConfigKey.INPUT, "")))
    if not path.is_file():
        raise ValueError(
            f"node_config[{NodeConfigKey.INPUT!r}] = {str(path)!r}: not a file; accepted: path of a JSON input file"
        )
    doc = json.loads(path.read_text(encoding="utf-8"))
    key_path = Path(doc["identity_key_path"])
    identity = load_private_key(key_path if key_path.is_absolute() else path.parent / key_path)
    roster = _roster_keys({int(node): str(key) for node, key in doc["roster"].items()})

    def vector() -> npt.ArrayLike:
        return np.array([int(v) for v in doc["vector"]], dtype=object)

    return NodeInputs(identity, roster, vector)


def load_provider(spec: str) -> InputProvider:
    """Import an :class:`InputProvider` from ``module:function``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"node_config[{NodeConfigKey.PROVIDER!r}] = {spec!r}; accepted: 'module:function'")
    return cast(InputProvider, getattr(importlib.import_module(module_name), attr))


def _provider(context: Context) -> InputProvider:
    spec = context.node_config.get(NodeConfigKey.PROVIDER)
    return load_provider(str(spec)) if spec else json_file_provider


def handle_secagg_message(message: Message, context: Context, provider: InputProvider | None = None) -> Message:
    """Answer one secure-aggregation stage, keeping the round's client state in ``context.state``."""
    request = content_to_request(message.content)
    state_key = RecordKey.STATE_PREFIX + request.round_id
    stored = context.state.config_records.get(state_key)
    state = (
        ClientState.from_json(cast(bytes, stored[RecordKey.STATE]))
        if stored is not None and RecordKey.STATE in stored
        else None
    )
    if isinstance(request, AdvertiseRequest):
        if state is not None and state.phase != ClientPhase.NEW:
            raise ProtocolViolation(
                f"node {context.node_id}: round {request.round_id!r} was already started in this run; "
                "a round's keys are advertised once"
            )
        # The stage context arrives with the advertise request only: keep it for the round's later
        # messages before the provider reads it (round_stage_context); the provider verifies it.
        stored = ConfigRecord({RecordKey.STAGE_CONTEXT: request_stage_context(message.content)})
        context.state.config_records[state_key] = stored
    inputs = (provider or _provider(context))(context, request.round_id)
    client = SecAggClient(context.node_id, inputs.identity, inputs.roster, state=state, policy=inputs.policy)
    if isinstance(request, AdvertiseRequest):
        client.check_params(request.params)
        if inputs.claim is not None:
            inputs.claim()
    reply = client.handle(request, inputs.vector)
    kept: dict[str, ConfigRecordValues] = {RecordKey.STATE: client.state.to_json()}
    if stored is not None and RecordKey.STAGE_CONTEXT in stored:
        kept[RecordKey.STAGE_CONTEXT] = stored[RecordKey.STAGE_CONTEXT]
    context.state.config_records[state_key] = ConfigRecord(kept)
    return Message(reply_to_content(reply), reply_to=message)


secagg_client_app = ClientApp()
"""ClientApp answering ``query.secagg`` messages with :func:`handle_secagg_message`."""


@secagg_client_app.query("secagg")
def _secagg_query(message: Message, context: Context) -> Message:
    return handle_secagg_message(message, context)


# =========================================================================== what crossed the wire


def message_payload(message: Message) -> bytes:
    """The bytes a message carries: its content's protobuf wire form, or ``error <code>: <reason>``.

    The node's outbox hashes exactly these bytes of every reply it sends and the recording ServerApp
    keeps them of every message it receives, so the two can be matched one to one.
    """
    if message.has_error():
        return f"error {message.error.code}: {message.error.reason}".encode()
    blob: bytes = recorddict_to_proto(message.content).SerializeToString()
    return blob


# =========================================================================== in-process grid


def _over_the_wire(message: Message) -> Message:
    """A copy of ``message`` whose content went through its protobuf wire form (as via a SuperLink)."""
    blob = recorddict_to_proto(message.content).SerializeToString()
    content = recorddict_from_proto(ProtoRecordDict.FromString(blob))
    # Message(content=, metadata=) is Flower's internal constructor for received messages.
    return Message(content=content, metadata=copy.deepcopy(message.metadata))  # type: ignore[call-overload, no-any-return]


class InProcessGrid(Grid):
    """A Grid that delivers Messages straight to ClientApp objects in this process (no Ray, no servers).

    Parameters
    ----------
    apps : Mapping[int, ClientApp]
        Node id -> the ClientApp that node runs.
    node_configs : Mapping[int, Mapping[str, UserConfigValue]] | None
        Node id -> its ``node_config``.
    drop : Callable[[int, Message], bool] | None
        Returns True when node ``node_id`` must not answer ``message`` (a dropout).
    wire : bool
        Serialise every content through protobuf, as the Deployment Engine does.
    """

    def __init__(
        self,
        apps: Mapping[int, ClientApp],
        node_configs: Mapping[int, Mapping[str, UserConfigValue]] | None = None,
        *,
        drop: Callable[[int, Message], bool] | None = None,
        wire: bool = True,
        run_id: int = 1,
    ) -> None:
        self.apps = dict(apps)
        self.contexts = {
            node: Context(
                run_id=run_id,
                node_id=node,
                node_config=dict((node_configs or {}).get(node, {})),
                state=RecordDict(),
                run_config={},
            )
            for node in self.apps
        }
        self.drop = drop
        self.wire = wire
        self.synchronous = True  # every reply exists once push_messages returns
        self._run = Run.create_empty(run_id)
        self._replies: dict[str, Message] = {}
        # This process plays the ServerApp process: messages it creates carry its identity.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    def set_run(self, run: Run) -> None:
        """Set the run."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run."""
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        """Create a message (kept for the Grid interface)."""
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Ids of all nodes."""
        return list(self.apps)

    def _deliver(self, message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        if node not in self.apps or (self.drop is not None and self.drop(node, message)):
            return None
        if self.wire:
            message = _over_the_wire(message)
        try:
            reply = self.apps[node](message, self.contexts[node])
        except Exception as err:  # noqa: BLE001 -- any ClientApp failure is an error reply, as on a SuperNode
            return Message(
                Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(err).__name__}: {err}"), reply_to=message
            )
        if self.wire and reply.has_content():
            reply = _over_the_wire(reply)
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver messages now; returns their ids."""
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id
            reply = self._deliver(message)
            if reply is not None:
                self._replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Replies available for the given message ids."""
        return [self._replies.pop(mid) for mid in message_ids if mid in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Deliver and return the replies (missing ones are dropouts; nothing waits)."""
        return self.pull_messages(self.push_messages(messages))
