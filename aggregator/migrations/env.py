"""Alembic environment of the aggregator's migrations (run by :mod:`common.migrations`)."""

from __future__ import annotations

from aggregator.store import aggregator_metadata
from common.migrations import run_env

run_env(aggregator_metadata)
