"""The node's Flower ClientApp: secure aggregation fed from the node's own store and consent.

Run by ``flower-supernode`` with node config ``pcf-home`` (the node's home: store, identity key)
and optionally ``pcf-db`` (a database URL). For each round the app:

* reads the round's spec and roster from the invitation the node verified against the enrolled
  aggregator key (never from the server's messages);
* after ``screen``, takes the stage's context from the stage's advertise request (a round's stages
  share one Flower run), keeps it in the run's per-round state for the stage's later messages, and
  verifies it with the enrolled aggregator key and checks it before computing or sending anything;
* before advertising keys, checks the server's round parameters against that invitation
  (:class:`protocols.secagg_policy.RoundPolicy`: participants from the signed roster and at least
  ``min_participants``, the threshold, degree, vector length and bound of the spec), then spends
  the firm's consent on this Flower run (:func:`node.rounds.spend_consent`): a second run of the
  same round is refused, across SuperNode and ClientApp restarts;
* rebuilds the approved contribution and checks it against the firm's consent (nothing is sent
  for a round the firm has not approved);
* answers each secagg stage with :func:`protocols.flower_apps.handle_secagg_message` and appends
  every reply (size, SHA-256 of its serialised content) to the node's outbox; a refusal is an
  error reply whose reason is recorded in the outbox too (stage ``secagg:refused:<stage>``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.common.serde import recorddict_to_proto

from keys.identity import load_private_key, load_public_key_b64, public_key_b64
from node.rounds import (
    AGGREGATOR_KEY_SETTING,
    approved_contribution,
    invitation,
    log_outbound,
    outbox_round,
    spend_stage,
)
from node.store import NodeStore, default_db_url
from protocols.disclosure import (
    ContextRejected,
    SignedStageContext,
    Stage,
    StageContext,
    check_context,
    split_stage_round_id,
    stage_layout,
    stage_round_id,
    stage_vector,
    verify_context,
)
from protocols.flower_apps import NodeInputs, RecordKey, handle_secagg_message, message_payload, round_stage_context
from protocols.secagg_policy import RoundPolicy

__all__ = ["IDENTITY_FILE", "client_app", "store_provider"]

IDENTITY_FILE = "identity.pem"
HOME_KEY = "pcf-home"
DB_KEY = "pcf-db"


def _store(context: Context) -> tuple[Path, NodeStore]:
    home = Path(str(context.node_config.get(HOME_KEY, ""))).expanduser()
    if not home.is_dir():
        raise ValueError(f"node_config[{HOME_KEY!r}] = {str(home)!r}: not a folder; accepted: the node's PCF_HOME")
    url = str(context.node_config.get(DB_KEY, "") or default_db_url(home))
    return home, NodeStore(url)


def _stage_context(context: Context, round_id: str, aggregator_key: str | None) -> StageContext | None:
    """The stage context the round's advertise request carried, verified with the enrolled aggregator key.

    ``round_id`` is the secagg round id ``<round id>/<stage>``; ``None`` for ``screen``, which takes
    no context. A context for another round or stage than the round id names is refused here,
    before anything is computed from it.
    """
    base_id, stage = split_stage_round_id(round_id)
    raw = round_stage_context(context, round_id)
    if stage == Stage.SCREEN:
        if raw:
            raise ContextRejected(f"round {base_id}, stage {stage}: the screen stage takes no stage context")
        return None
    if not raw:
        raise ContextRejected(f"round {base_id}, stage {stage}: the request carries no stage context; nothing is contributed")
    if aggregator_key is None:
        raise ContextRejected("this node has not enrolled with an aggregator")
    try:
        signed = SignedStageContext.model_validate_json(raw)
    except ValueError as exc:
        raise ContextRejected(f"round {base_id}, stage {stage}: the stage context is malformed: {exc}") from None
    verified = verify_context(signed, load_public_key_b64(aggregator_key))
    if verified.stage != stage or verified.round_id != base_id:
        raise ContextRejected(
            f"round {base_id}, stage {stage}: the stage context is for round {verified.round_id!r}, "
            f"stage {verified.stage!s}; nothing is contributed"
        )
    return verified


def store_provider(context: Context, round_id: str) -> NodeInputs:
    """Inputs from the node's store for one disclosure stage (``<round id>/<stage>``): identity, roster, stage vector.

    The stage vector is computed from the approved contribution and, after ``screen``, from the
    stage context the aggregator signed, verified and checked (``protocols.disclosure.check_context``)
    before anything is computed; the policy requires the screen's cohort as participants.
    """
    base_id, stage = split_stage_round_id(round_id)
    home, store = _store(context)
    try:
        spec, roster = invitation(store, base_id)
        identity = load_private_key(home / IDENTITY_FILE)
        aggregator_key = store.get_setting(AGGREGATOR_KEY_SETTING)
    finally:
        store.close()
    if spec.protocol != "secagg":
        raise ValueError(f"round {base_id!r} uses protocol {spec.protocol!r}, not secagg; nothing is contributed")
    stage_context = _stage_context(context, round_id, aggregator_key)
    own_key = public_key_b64(identity)
    db = str(context.node_config.get(DB_KEY, "") or default_db_url(home))

    def approved() -> list[int]:
        s = NodeStore(db)
        try:
            _spec2, contribution = approved_contribution(s, base_id)
        finally:
            s.close()
        return [int(i) for i in contribution.ints]

    def vector() -> list[int]:
        ints = approved()
        if stage_context is not None:
            check_context(spec, stage_context, stage, own_key, ints)
        return stage_vector(spec, ints, stage, stage_context)

    def claim() -> None:
        if stage_context is not None:  # refuse before the stage is recorded as answered
            check_context(spec, stage_context, stage, own_key, approved())
        s = NodeStore(db)
        try:
            spend_stage(s, base_id, stage, str(context.run_id))
        finally:
            s.close()

    policy = RoundPolicy.from_spec(spec, roster)
    by_key = {key: int(node) for node, key in roster.items()}
    policy = replace(
        policy,
        round_id=stage_round_id(base_id, stage),
        vector_length=len(stage_layout(spec, stage, stage_context)),
        cohort=(
            frozenset(by_key[k] for k in stage_context.cohort if k in by_key) if stage_context is not None else None
        ),
    )
    return NodeInputs(
        identity,
        {int(k): load_public_key_b64(v) for k, v in roster.items()},
        vector,
        policy=policy.check,
        claim=claim,
    )


def _request_head(message: Message) -> tuple[str, str]:
    """Round id and stage a request claims (for the outbox; ``?`` when it names none)."""
    cfg = message.content.config_records.get(RecordKey.CONFIG) if message.has_content() else None
    if cfg is None:
        return "?", "?"
    return str(cfg.get(RecordKey.ROUND_ID, "?")), str(cfg.get(RecordKey.STAGE, "?"))


client_app = ClientApp()


@client_app.query("secagg")
def _secagg(message: Message, context: Context) -> Message:
    try:
        reply = handle_secagg_message(message, context, store_provider)
    except Exception as exc:
        # The runner (or SuperNode) turns the exception into this error reply: record exactly it as sent.
        round_id, stage = _request_head(message)
        round_id, disclosure = outbox_round(round_id)
        stage = f"{disclosure}{stage}"
        reason = f"{type(exc).__name__}: {exc}"
        payload = message_payload(Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=message))
        try:
            _home, store = _store(context)
        except ValueError:
            raise exc from None
        try:
            log_outbound(store, round_id, "superlink", f"secagg:refused:{stage}", payload, note=reason)
        finally:
            store.close()
        raise
    cfg = reply.content.config_records.get("secagg")
    round_id, disclosure = outbox_round(str(cfg.get("round-id", "?")) if cfg is not None else "?")
    stage = disclosure + (str(cfg.get("stage", "reply")) if cfg is not None else "reply")
    payload = recorddict_to_proto(reply.content).SerializeToString()
    _home, store = _store(context)
    try:
        log_outbound(store, round_id, "superlink", f"secagg:{stage}", payload)
    finally:
        store.close()
    return reply
