"""Brings a database to the newest schema with Alembic, from an installed package.

The Alembic Config is built in code with script_location at the installed
connector/migrations directory, so no alembic.ini or working directory is needed. All revisions
run in one transaction; on PostgreSQL it first takes an advisory lock, so replicas starting
together migrate one after another (the second finds the schema at head and does nothing). On
SQLite the transaction starts with BEGIN IMMEDIATE, which serializes migrators the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import connector.migrations
from connector.errors import StoreError

# Arbitrary constant naming "iwd-email-connector schema migration" among advisory locks.
_PG_MIGRATION_LOCK_KEY = 0x1D_E3A1_0C0F_FEE5


def alembic_config(extra_version_locations: Sequence[str] = ()) -> Config:
    """An Alembic Config pointing at the packaged migrations (plus extra revision directories,
    which tests use to prove that an upgrade keeps data)."""
    here = Path(connector.migrations.__file__).parent
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(here))
    if extra_version_locations:
        locations = [str(here / "versions"), *extra_version_locations]
        config.set_main_option("version_locations", os.pathsep.join(locations))
    return config


def head_revision() -> str | None:
    """The newest revision this version of the connector knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None when it has never been migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(
    engine: AsyncEngine, target: str = "head", extra_version_locations: Sequence[str] = ()
) -> None:
    """Migrates to `target` in one transaction; raises StoreError when the database is at a
    revision this version does not know (a newer connector migrated it)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade_locked, target, extra_version_locations)


def _upgrade_locked(connection: Connection, target: str, extra_version_locations: Sequence[str]) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
    config = alembic_config(extra_version_locations)
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, target)
    except CommandError as exc:
        raise StoreError(
            "cannot migrate the store schema (was it created by a newer connector version?)",
            database_revision=current_revision(connection),
            known_head=head_revision(),
            detail=str(exc)[:300],
        ) from exc
