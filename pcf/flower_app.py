"""The aggregator's recording ServerApp of a pcf-dataspace round.

A round's FAB (written by :func:`aggregator.flower_runner.write_fab_project` from
:mod:`protocols.fab`) names ``pcf.flower_app:server_app``, the secure-aggregation ServerApp of
:mod:`protocols.flower_apps`, and ``node.flower_client:client_app``, the node's store-backed
ClientApp: the only ClientApp a node runs (``node.clientapp_runner``). The plain-sum control, which
sends vectors in the clear, is not in the installed package (``tests/plain_apps.py``).

The ServerApp reads the run config of :class:`protocols.flower_apps.RunConfigKey`, plus
``record-path``: when set, every message the ServerApp receives is appended to that file
(:func:`protocols.flower_apps.message_payload`, framed by a 4-byte big-endian length), so an audit
can search exactly what the aggregator side received and match it with the nodes' outboxes, across
every stage the run sums (:func:`protocols.flower_apps.server_main`). When a stage fails,
``{"error": ...}`` is written to its result file (before the first stage: to ``result-path``) so
the aggregator stops waiting at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run

from protocols.flower_apps import RunConfigKey, message_payload, server_main

__all__ = ["RECORD_PATH", "RecordingGrid", "read_records", "recording_server_app", "server_app"]

RECORD_PATH: Final = "record-path"
"""Run-config key: file the ServerApp appends every received message to (empty: no recording)."""


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
                blob = message_payload(message)
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

    A failure is written to ``result-path`` (which ``server_main`` points at the result file of the
    stage under way) as ``{"error": ...}`` and then re-raised (the run ends failed).
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
