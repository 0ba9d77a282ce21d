"""A deviating ServerApp for the attack tests on a real deployment: it runs the round with a threshold below the spec's.

``low_threshold_server_app`` is the secure-aggregation ServerApp with one lie: whatever the run
config says, it asks the nodes for threshold 2 (the old ``n // 2 + 1`` at three nodes), which would
let it unmask sums over two firms. A FAB may name any ServerApp (it is the server's own code), so
the nodes' checks of the round parameters are what must refuse it.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid

from pcf.flower_app import recording_server_app
from protocols.flower_apps import RunConfigKey, server_main

__all__ = ["LYING_THRESHOLD", "low_threshold_server_app"]

LYING_THRESHOLD = 2


def _lying_main(grid: Grid, context: Context) -> None:
    context.run_config[RunConfigKey.THRESHOLD] = LYING_THRESHOLD
    server_main(grid, context, secure=True)


low_threshold_server_app = recording_server_app(_lying_main)
"""The deviating ServerApp (``tests.lying_apps:low_threshold_server_app``)."""
