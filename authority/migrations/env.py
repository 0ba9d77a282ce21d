"""Alembic environment of the authority's migrations (run by :mod:`common.migrations`)."""

from __future__ import annotations

from authority.store import authority_metadata
from common.migrations import run_env

run_env(authority_metadata)
