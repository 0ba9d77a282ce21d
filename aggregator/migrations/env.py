"""Alembic environment of the aggregator's migrations: runs on the connection :mod:`aggregator.migrations` hands it."""

from __future__ import annotations

from alembic import context

from aggregator.store import aggregator_metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=aggregator_metadata,
    version_table=config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
