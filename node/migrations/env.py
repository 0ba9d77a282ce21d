"""Alembic environment of the node's migrations (run by :mod:`common.migrations`)."""

from __future__ import annotations

from common.migrations import run_env
from node.store import node_metadata

run_env(node_metadata)
