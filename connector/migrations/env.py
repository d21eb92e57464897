"""Alembic environment: migrates over the connection the store hands in.

The caller (connector/store/migration.py) opens the transaction and, on PostgreSQL, holds an
advisory lock, so concurrent replicas migrate one at a time; this file only runs the revisions.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import connector.store.outbox_tables  # noqa: F401 - registers the outbox tables on the metadata
from connector.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError(
            "offline (--sql) migrations are not supported; run the connector against the database"
        )
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "connector migrations run inside the connector (connector.store.migration.upgrade); "
            "pass a connection in Config.attributes['connection']"
        )
    _run(connection)


_main()
