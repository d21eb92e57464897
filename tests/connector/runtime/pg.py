"""A fresh PostgreSQL database per test (several replicas share one), and ways to age leases
without sleeping: the database's clock is the only one leases obey, so tests move rows in time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from connector.store.sql import SqlStore
from tests.connector.test_store import PG_HOST, PG_PORT, _postgres_listening


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A URL to an empty PostgreSQL database made for this test."""
    if not _postgres_listening():
        pytest.skip(f"nothing listens on {PG_HOST}:{PG_PORT}; replica tests need PostgreSQL")
    name = f"test_replicas_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test", isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(pg_url)
    try:
        yield store
    finally:
        await store.close()


async def lapse(store: SqlStore, owner: str) -> None:
    """As if `owner` had been paused past its TTL: its heartbeat and leases expired a second ago."""
    async with store._writer.begin() as conn:
        await conn.execute(
            text("UPDATE mailbox_leases SET expires_at = now() - interval '1 second' WHERE owner = :o"),
            {"o": owner},
        )
        await conn.execute(
            text("UPDATE replicas SET expires_at = now() - interval '1 second' WHERE replica_id = :o"),
            {"o": owner},
        )


class StatementCounter:
    """Counts the SQL statements an engine sends while `counting` is on."""

    def __init__(self, store: SqlStore) -> None:
        self.count = 0
        self.counting = False

        @event.listens_for(store._engine.sync_engine, "before_cursor_execute")
        def _count(*_: object) -> None:
            if self.counting:
                self.count += 1
