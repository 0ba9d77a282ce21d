"""The `pcf` command: one Typer application with a sub-command group per role.

Exit codes come in bands per component: 1-9 general (2: usage), 10-19 node, 20-29 aggregator,
30-39 keys and custodians, 40-49 demo, 50-59 verify.
"""

from __future__ import annotations

import os

import typer

from node.cli import node_app

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

app = typer.Typer(
    help="pcf-dataspace: industry-average product carbon footprint factors from firms' primary data, "
    "by secure aggregation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(node_app, name="node")


def _mount_optional() -> None:
    """Mount the role groups whose modules exist (each role's CLI lives in its own package)."""
    try:
        from aggregator.cli import agg_app
    except ImportError:
        pass
    else:
        app.add_typer(agg_app, name="agg", help="The association's aggregator.")
    try:
        from keys.cli import keys_app
    except ImportError:
        pass
    else:
        app.add_typer(keys_app, name="keys", help="Identities, TLS material and key custodians.")
    try:
        from pcf.extra import register
    except ImportError:
        pass
    else:
        register(app)


_mount_optional()

__all__ = ["app"]
