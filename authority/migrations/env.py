"""Alembic environment of the authority's migrations: runs on the connection :mod:`authority.migrations` hands it."""

from __future__ import annotations

from alembic import context

from authority.store import authority_metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=authority_metadata,
    version_table=config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
