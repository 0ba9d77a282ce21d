"""Alembic environment of the node's migrations: runs on the connection :mod:`node.migrations` hands it."""

from __future__ import annotations

from alembic import context

from node.store import node_metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=node_metadata,
    version_table=config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
