"""The Flower App Bundle components of a pcf-dataspace round: recording ServerApps and the node's ClientApps.

A round's FAB (written by :func:`aggregator.flower_runner.write_fab_project`) names these objects:

``server_app``
    The secure-aggregation ServerApp of :mod:`protocols.flower_apps`; ``client_app`` is the node's
    store-backed ClientApp (:data:`node.flower_client.client_app`).
``plain_server_app`` / ``plain_client_app``
    The plain-sum control (no privacy: every node sends its approved vector in the clear). Only the
    canary test uses it, to prove that its search finds values that do cross the wire.

Both ServerApps read the run config of :class:`protocols.flower_apps.RunConfigKey`, plus
``record-path``: when set, every message the ServerApp receives is appended to that file (its
serialised content, framed by a 4-byte big-endian length), so an audit can search exactly what
the aggregator side received. When the round fails, ``{"error": ...}`` is written to
``result-path`` so the aggregator stops waiting at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_to_proto
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run

from node.flower_client import DB_KEY, HOME_KEY, client_app, store_provider
from node.rounds import log_outbound
from node.store import NodeStore, default_db_url
from protocols.flower_apps import (
    RecordKey,
    RunConfigKey,
    handle_plain_message,
    server_main,
)

__all__ = [
    "RECORD_PATH",
    "RecordingGrid",
    "client_app",
    "plain_client_app",
    "plain_server_app",
    "read_records",
    "recording_server_app",
    "server_app",
]

RECORD_PATH: Final = "record-path"
"""Run-config key: file the ServerApp appends every received message to (empty: no recording)."""


def _serialised(message: Message) -> bytes:
    if message.has_error():
        return f"error {message.error.code}: {message.error.reason}".encode()
    blob: bytes = recorddict_to_proto(message.content).SerializeToString()
    return blob


class RecordingGrid(Grid):
    """A Grid that delegates to ``grid`` and appends the content of every message it receives to ``path``."""

    def __init__(self, grid: Grid, path: Path) -> None:
        self.grid = grid
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def _record(self, messages: Iterable[Message]) -> list[Message]:
        received = list(messages)
        with open(self.path, "ab") as out:
            for message in received:
                blob = _serialised(message)
                out.write(len(blob).to_bytes(4, "big") + blob)
        return received

    def set_run(self, run: Run) -> None:
        """Set the run of the wrapped grid."""
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self.grid.run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        """Create a message with the wrapped grid."""
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Node ids of the wrapped grid."""
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push through the wrapped grid."""
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull through the wrapped grid, recording what arrives."""
        return self._record(self.grid.pull_messages(message_ids))

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Send and receive through the wrapped grid, recording what arrives."""
        return self._record(self.grid.send_and_receive(messages, timeout=timeout))


def read_records(path: Path) -> list[bytes]:
    """The message contents a :class:`RecordingGrid` appended to ``path``, in order."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out


def _write_failure(context: Context, exc: BaseException) -> None:
    target = str(context.run_config.get(RunConfigKey.RESULT_PATH, "") or "")
    if not target:
        return
    out = Path(target)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), encoding="utf-8")
    tmp.replace(out)


def recording_server_app(main: Callable[[Grid, Context], None]) -> ServerApp:
    """A ServerApp running ``main`` over a :class:`RecordingGrid` when ``record-path`` is set.

    A failure is written to ``result-path`` as ``{"error": ...}`` and then re-raised (the run ends failed).
    """
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        record = str(context.run_config.get(RECORD_PATH, "") or "")
        try:
            main(RecordingGrid(grid, Path(record)) if record else grid, context)
        except Exception as exc:
            _write_failure(context, exc)
            raise

    return app


server_app = recording_server_app(lambda grid, context: server_main(grid, context, secure=True))
"""The secure-aggregation ServerApp (``pcf.flower_app:server_app``)."""

plain_server_app = recording_server_app(lambda grid, context: server_main(grid, context, secure=False))
"""The plain-sum control ServerApp: it sees every vector in the clear (tests only)."""

plain_client_app = ClientApp()
"""The plain-sum control ClientApp: sends the node's approved vector in the clear (tests only)."""


@plain_client_app.query("plainsum")
def _plain(message: Message, context: Context) -> Message:
    reply = handle_plain_message(message, context, store_provider)
    cfg = message.content.config_records.get(RecordKey.CONFIG)
    round_id = str(cfg.get(RecordKey.ROUND_ID, "?")) if cfg is not None else "?"
    home = Path(str(context.node_config.get(HOME_KEY, ""))).expanduser()
    store = NodeStore(str(context.node_config.get(DB_KEY, "") or default_db_url(home)))
    try:
        log_outbound(store, round_id, "superlink", "plainsum:vector", recorddict_to_proto(reply.content).SerializeToString())
    finally:
        store.close()
    return reply
