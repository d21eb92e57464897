"""Plumbing shared by the store's parts: engine, transactions, dialect-aware INSERT, error translation.

Several replicas may share one PostgreSQL database, so every write is one transaction that leans
on primary keys and unique constraints (INSERT ... ON CONFLICT, conditional UPDATE) instead of
reading first and deciding in Python.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Self

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.store.engine import (
    WRITE_OPTION,
    translated_errors,
)
from connector.store.fence import Fence, check_fence
from connector.store.rows import (
    utc_now,
)
from connector.store.tables import cursors

LOOKUP_CHUNK = 500  # stays under every backend's bound-parameter limit


class SqlBase:
    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._url = url
        self._secret = url.password
        self._fence: Fence | None = None  # set on a runner's copy (fenced()) when leases are in use

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        with self._errors("ping", database=self._url.database, host=self._url.host):
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    def fenced(self, fence: Fence | None) -> Self:
        """This store on the same engine, whose every write first checks `fence` in its own
        transaction (LeaseLost when the lease moved on); None: unfenced (SQLite, one process)."""
        clone = copy.copy(self)
        clone._fence = fence
        return clone

    @property
    def fence(self) -> Fence | None:
        return self._fence

    async def fence_check(self, operation: str) -> None:
        """Raises LeaseLost unless the fence still holds (right before a server-side command)."""
        if self._fence is None:
            return
        with self._errors("fence_check", mailbox=self._fence.mailbox_id):
            async with self._writer.begin() as conn:
                await check_fence(conn, self._fence, operation)

    # plumbing ------------------------------------------------------------------------
    def _errors(self, operation: str, **context: Any) -> AbstractContextManager[None]:
        return translated_errors(operation, self._secret, **context)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
        async with self._writer.begin() as conn:
            if self._fence is not None:
                await check_fence(conn, self._fence, "write")
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update."""
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table)

    async def _upsert_cursor(
        self, conn: AsyncConnection, mailbox_id: str, folder: str, cursor: str | None
    ) -> None:
        stmt = self._insert(cursors).values(
            mailbox_id=mailbox_id, folder=folder, cursor=cursor, updated_at=utc_now()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[cursors.c.mailbox_id, cursors.c.folder],
            set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at},
        )
        await conn.execute(stmt)
