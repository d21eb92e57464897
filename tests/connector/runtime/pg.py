"""A fresh PostgreSQL database per test (several replicas share one), and ways to age leases
without sleeping: the database's clock is the only one leases obey, so tests move rows in time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, text

from connector.store.sql import SqlStore
from tests.peers.postgres import fresh_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A URL to an empty PostgreSQL database made for this test."""
    async with fresh_database("test_replicas") as url:
        yield url


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
