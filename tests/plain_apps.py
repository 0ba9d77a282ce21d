"""The plain-sum control (no privacy): every node sends its approved vector in the clear. Tests only.

It lives here, not in the installed package, so no ClientApp a firm installs sends plaintext; a
node's gate (``node.clientapp_runner``) refuses any FAB naming one of these apps. The canary test
runs the control on SuperNodes started without the gate, to prove its search finds values that do
cross the wire. The SuperLink's ServerApp process imports this module as ``tests.plain_apps``
(the repository root is on its ``PYTHONPATH``).

``plain_server_app``
    The recording plain-sum ServerApp (:func:`pcf.flower_app.recording_server_app`).
``plain_client_app``
    Answers with the vector of :func:`protocols.flower_apps.json_file_provider`'s input file.
``store_plain_client_app``
    Answers with the node's whole approved vector from its store (every slot, not a disclosure
    stage's), and logs the reply in its outbox.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_to_proto

from node.flower_client import DB_KEY, HOME_KEY, store_provider
from node.rounds import approved_contribution, log_outbound
from node.store import NodeStore, default_db_url
from pcf.flower_app import recording_server_app
from protocols.disclosure import Stage
from protocols.flower_apps import InputProvider, NodeInputs, RecordKey, _cfg, _field, _provider, server_main
from protocols.secagg import encode_input

__all__ = ["handle_plain_message", "plain_client_app", "plain_server_app", "store_plain_client_app"]


def handle_plain_message(message: Message, context: Context, provider: InputProvider | None = None) -> Message:
    """Answer the plain-sum baseline: the node's vector, in the clear (bound-checked, never clipped)."""
    cfg = _cfg(message.content)
    round_id = _field(cfg, RecordKey.ROUND_ID, str)
    inputs = (provider or _provider(context))(context, round_id)
    vector = encode_input(
        inputs.vector(), _field(cfg, RecordKey.VECTOR_LENGTH, int), _field(cfg, RecordKey.VALUE_BITS, int)
    )
    return Message(RecordDict({RecordKey.ARRAYS: ArrayRecord({RecordKey.VECTOR: Array(vector)})}), reply_to=message)


plain_server_app = recording_server_app(lambda grid, context: server_main(grid, context, secure=False))
"""The plain-sum control ServerApp: it sees every vector in the clear."""

plain_client_app = ClientApp()
"""ClientApp answering ``query.plainsum`` from the JSON input file of the node config."""


@plain_client_app.query("plainsum")
def _plain_query(message: Message, context: Context) -> Message:
    return handle_plain_message(message, context)


store_plain_client_app = ClientApp()
"""ClientApp answering ``query.plainsum`` with the node's approved vector (its store and consent)."""


def full_vector_provider(context: Context, round_id: str) -> NodeInputs:
    """The node's whole approved vector (every slot of the layout), whatever stage the round id names."""
    base_id = round_id.rpartition("/")[0] or round_id
    home = Path(str(context.node_config.get(HOME_KEY, ""))).expanduser()
    db = str(context.node_config.get(DB_KEY, "") or default_db_url(home))
    staged = store_provider(context, f"{base_id}/{Stage.SCREEN}")  # identity and roster, as the node trusts them

    def vector() -> list[int]:
        store = NodeStore(db)
        try:
            return [int(i) for i in approved_contribution(store, base_id)[1].ints]
        finally:
            store.close()

    return NodeInputs(staged.identity, staged.roster, vector)


@store_plain_client_app.query("plainsum")
def _plain_store(message: Message, context: Context) -> Message:
    reply = handle_plain_message(message, context, full_vector_provider)
    cfg = message.content.config_records.get(RecordKey.CONFIG)
    round_id = str(cfg.get(RecordKey.ROUND_ID, "?")) if cfg is not None else "?"
    home = Path(str(context.node_config.get(HOME_KEY, ""))).expanduser()
    store = NodeStore(str(context.node_config.get(DB_KEY, "") or default_db_url(home)))
    try:
        log_outbound(store, round_id, "superlink", "plainsum:vector", recorddict_to_proto(reply.content).SerializeToString())
    finally:
        store.close()
    return reply
