"""The Store on SQLAlchemy 2 async: SQLite by default, PostgreSQL for shared deployments.

This class adds opening (with migrations), cursors and quarantine to the ledger operations in
connector/store/ledger_sql.py; the shared plumbing is connector/store/base.py.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from connector.errors import StoreError
from connector.models import RawMessage
from connector.store import migration
from connector.store.engine import (
    create_engine,
    enable_sqlite_wal,
    parse_url,
)
from connector.store.ledger_sql import LedgerSql
from connector.store.rows import (
    clean_optional_text,
    clean_text,
    quarantine_entry,
    utc_now,
)
from connector.store.tables import cursors, quarantine
from connector.store.types import QuarantineEntry


class SqlStore(LedgerSql):
    """Implements connector.store.types.Store. Build it with `await SqlStore.open(url)`."""

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        """Connects and migrates to the newest schema (idempotent; existing data is kept)."""
        parsed = parse_url(url)
        engine = create_engine(parsed)
        store = cls(engine, parsed)
        try:
            with store._errors("open", database=parsed.database, host=parsed.host):
                if store.dialect == "sqlite":
                    await enable_sqlite_wal(engine)
                await migration.upgrade(store._writer)
        except BaseException:
            await engine.dispose()
            raise
        return store

    # cursors -------------------------------------------------------------------------
    async def get_cursor(self, mailbox_id: str, folder: str) -> str | None:
        with self._errors("get_cursor", mailbox=mailbox_id, folder=folder):
            async with self._read() as conn:
                value = await conn.scalar(
                    select(cursors.c.cursor).where(
                        cursors.c.mailbox_id == mailbox_id, cursors.c.folder == folder
                    )
                )
        return None if value is None else str(value)

    async def set_cursor(self, mailbox_id: str, folder: str, cursor: str | None) -> None:
        with self._errors("set_cursor", mailbox=mailbox_id, folder=folder):
            async with self._write() as conn:
                await self._upsert_cursor(conn, mailbox_id, folder, cursor)

    # quarantine ----------------------------------------------------------------------
    async def quarantine_put(self, mailbox_id: str, message: RawMessage, error: str) -> QuarantineEntry:
        now = utc_now()
        folder, provider_id = message.folder, message.provider_id
        stmt = self._insert(quarantine).values(
            mailbox_id=mailbox_id,
            folder=folder,
            provider_id=provider_id,
            raw=bytes(message.raw),
            error=clean_text(error),
            attempts=1,
            first_seen_at=now,
            last_attempt_at=now,
            internal_date=message.internal_date,
            size=message.size,
            headers_only=message.headers_only,
            thread_hint=clean_optional_text(message.thread_hint),
        )
        # A repeat keeps the first raw bytes, their metadata and the first-seen time; a new
        # failure of a resolved entry reopens it, because it needs a person again.
        stmt = stmt.on_conflict_do_update(
            index_elements=[quarantine.c.mailbox_id, quarantine.c.folder, quarantine.c.provider_id],
            set_={
                "attempts": quarantine.c.attempts + 1,
                "error": stmt.excluded.error,
                "last_attempt_at": stmt.excluded.last_attempt_at,
                "resolved_external_id": None,
            },
        ).returning(*quarantine.c)
        with self._errors("quarantine_put", mailbox=mailbox_id, folder=folder, provider_id=provider_id):
            async with self._write() as conn:
                row = (await conn.execute(stmt)).one()
        return quarantine_entry(row)

    async def quarantine_list(
        self, mailbox_id: str | None = None, include_resolved: bool = False
    ) -> list[QuarantineEntry]:
        query = select(quarantine).order_by(quarantine.c.first_seen_at, quarantine.c.id)
        if mailbox_id is not None:
            query = query.where(quarantine.c.mailbox_id == mailbox_id)
        if not include_resolved:
            query = query.where(quarantine.c.resolved_external_id.is_(None))
        with self._errors("quarantine_list", mailbox=mailbox_id):
            async with self._read() as conn:
                return [quarantine_entry(row) for row in await conn.execute(query)]

    async def quarantine_get(self, entry_id: int) -> QuarantineEntry | None:
        with self._errors("quarantine_get", quarantine_id=entry_id):
            async with self._read() as conn:
                row = (await conn.execute(select(quarantine).where(quarantine.c.id == entry_id))).first()
        return None if row is None else quarantine_entry(row)

    async def quarantine_resolve(self, entry_id: int, external_id: str) -> None:
        with self._errors("quarantine_resolve", quarantine_id=entry_id, external_id=external_id):
            async with self._write() as conn:
                result = await conn.execute(
                    update(quarantine)
                    .where(quarantine.c.id == entry_id)
                    .values(resolved_external_id=external_id)
                )
                if result.rowcount != 1:
                    raise StoreError(
                        "no quarantine entry with this id", quarantine_id=entry_id, external_id=external_id
                    )

    async def quarantine_count(self, mailbox_id: str | None = None) -> int:
        query = (
            select(func.count()).select_from(quarantine).where(quarantine.c.resolved_external_id.is_(None))
        )
        if mailbox_id is not None:
            query = query.where(quarantine.c.mailbox_id == mailbox_id)
        with self._errors("quarantine_count", mailbox=mailbox_id):
            async with self._read() as conn:
                return int(await conn.scalar(query) or 0)
