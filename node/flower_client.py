"""The node's Flower ClientApp: secure aggregation fed from the node's own store and consent.

Run by ``flower-supernode`` with node config ``pcf-home`` (the node's home: store, identity key)
and optionally ``pcf-db`` (a database URL). For each round the app:

* reads the round's spec and roster from the invitation the node verified against the enrolled
  aggregator key (never from the server's messages);
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

from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.common.serde import recorddict_to_proto

from keys.identity import load_private_key, load_public_key_b64
from node.rounds import approved_contribution, invitation, log_outbound, spend_consent
from node.store import NodeStore, default_db_url
from protocols.flower_apps import NodeInputs, RecordKey, handle_secagg_message, message_payload
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


def store_provider(context: Context, round_id: str) -> NodeInputs:
    """Inputs from the node's store: identity, the invitation's roster, the approved vector."""
    home, store = _store(context)
    try:
        spec, roster = invitation(store, round_id)
        identity = load_private_key(home / IDENTITY_FILE)
    finally:
        store.close()
    if spec.protocol != "secagg":
        raise ValueError(f"round {round_id!r} uses protocol {spec.protocol!r}, not secagg; nothing is contributed")

    def vector() -> list[int]:
        s = NodeStore(str(context.node_config.get(DB_KEY, "") or default_db_url(home)))
        try:
            _spec2, contribution = approved_contribution(s, round_id)
        finally:
            s.close()
        return [int(i) for i in contribution.ints]

    def claim() -> None:
        s = NodeStore(str(context.node_config.get(DB_KEY, "") or default_db_url(home)))
        try:
            spend_consent(s, round_id, str(context.run_id))
        finally:
            s.close()

    return NodeInputs(
        identity,
        {int(k): load_public_key_b64(v) for k, v in roster.items()},
        vector,
        policy=RoundPolicy.from_spec(spec, roster).check,
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
    stage = str(cfg.get("stage", "reply")) if cfg is not None else "reply"
    round_id = str(cfg.get("round-id", "?")) if cfg is not None else "?"
    payload = recorddict_to_proto(reply.content).SerializeToString()
    _home, store = _store(context)
    try:
        log_outbound(store, round_id, "superlink", f"secagg:{stage}", payload)
    finally:
        store.close()
    return reply
