"""The Flower App Bundle of a round: its one approved ClientApp, its pyproject, its bytes and hash.

Both sides build the FAB from this module: the aggregator writes :func:`fab_pyproject` into the
project ``flwr run`` bundles; a node rebuilds the same bytes with :func:`build_fab` and accepts a
FAB only if its SHA-256 equals that of its own build (``node.clientapp_runner``). The bundle holds
no code: ``pyproject.toml`` names installed components, and Flower's build is deterministic (fixed
timestamps, sorted members), so the same text gives the same bytes on every machine with the same
Flower release.

Only the ``serverapp`` component is free: it is the server's own code, run on the server, and the
protocols must hold against any ServerApp, so pinning it would protect nothing.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from typing import Final

__all__ = [
    "APPROVED_CLIENTAPP",
    "DEFAULT_SERVERAPP",
    "FAB_FILES",
    "build_fab",
    "check_component",
    "fab_hash",
    "fab_pyproject",
]

APPROVED_CLIENTAPP: Final = "node.flower_client:client_app"
"""The one ClientApp a node runs: the store-backed secure-aggregation app of its installed package."""

DEFAULT_SERVERAPP: Final = "pcf.flower_app:server_app"
"""The aggregator's recording secure-aggregation ServerApp."""

FAB_FILES: Final = frozenset({"pyproject.toml", ".info/CONTENT"})
"""Every member of a round's FAB: the project file and Flower's manifest; no module."""

_COMPONENT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

_PYPROJECT = """\
[project]
name = "pcfround"
version = "1.0.0"
description = "pcf-dataspace aggregation round"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "pcf-dataspace"

[tool.flwr.app.components]
serverapp = "{serverapp}"
clientapp = "{clientapp}"

[tool.flwr.app.config]
round-id = "round"
vector-length = 1
value-bits = 0
roster-path = ""
participants = ""
threshold = 0
degree = 0
stage-timeout = 60.0
connect-timeout = 30.0
result-path = ""
record-path = ""
stage = ""
stage-context = ""
run-timeout = 0.0
"""


def check_component(ref: str) -> str:
    """Return ``ref`` if it is a ``module.path:attribute`` reference; raise ValueError otherwise."""
    if not _COMPONENT.fullmatch(ref):
        raise ValueError(f"Flower component {ref!r}: accepted: 'module.path:attribute'")
    return ref


def fab_pyproject(*, serverapp: str = DEFAULT_SERVERAPP, clientapp: str = APPROVED_CLIENTAPP) -> str:
    """The ``pyproject.toml`` of a round's Flower App project, naming installed components."""
    return _PYPROJECT.format(serverapp=check_component(serverapp), clientapp=check_component(clientapp))


def build_fab(*, serverapp: str = DEFAULT_SERVERAPP, clientapp: str = APPROVED_CLIENTAPP) -> bytes:
    """The FAB bytes ``flwr run`` sends for the project of :func:`fab_pyproject` (Flower's own builder)."""
    from flwr.cli.build import build_fab_from_files

    text = fab_pyproject(serverapp=serverapp, clientapp=clientapp).encode("utf-8")
    with warnings.catch_warnings():
        # Flower 1.41's builder uses a pathspec pattern class pathspec has deprecated; harmless here.
        warnings.filterwarnings("ignore", "GitWildMatchPattern", DeprecationWarning)
        fab, _meta = build_fab_from_files({"pyproject.toml": text})
    return fab


def fab_hash(content: bytes) -> str:
    """A FAB's hash as Flower computes it: SHA-256 of its bytes, hex."""
    return hashlib.sha256(content).hexdigest()
