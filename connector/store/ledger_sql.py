"""The delivery ledger on SQL: intents, commits with the cursor, aliases, post-action bookkeeping.

States only move forward (pending → delivered → acted); see connector/sync/delivery.py for why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Row, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.errors import StoreError
from connector.store.base import LOOKUP_CHUNK, SqlBase
from connector.store.rows import (
    clean_optional_text,
    ledger_entry,
    utc_now,
)
from connector.store.tables import ledger
from connector.store.types import LedgerEntry, LedgerState


def _ledger_values(entry: LedgerEntry, now: datetime, state: LedgerState) -> dict[str, Any]:
    """A new ledger row's columns for `entry` (message ids cleaned for both backends)."""
    return {
        "external_id": entry.external_id,
        "mailbox_id": entry.mailbox_id,
        "folder": entry.folder,
        "provider_id": entry.provider_id,
        "raw_sha256": entry.raw_sha256,
        "message_id": clean_optional_text(entry.message_id),
        "state": state.value,
        "created_at": now,
    }


class LedgerSql(SqlBase):
    # ledger --------------------------------------------------------------------------
    async def ledger_lookup(
        self, mailbox_id: str, folder: str, provider_ids: Sequence[str]
    ) -> dict[str, LedgerEntry]:
        found: dict[str, LedgerEntry] = {}
        unique = list(dict.fromkeys(provider_ids))
        with self._errors("ledger_lookup", mailbox=mailbox_id, folder=folder):
            async with self._read() as conn:
                for start in range(0, len(unique), LOOKUP_CHUNK):
                    chunk = unique[start : start + LOOKUP_CHUNK]
                    result = await conn.execute(
                        select(ledger).where(
                            ledger.c.mailbox_id == mailbox_id,
                            ledger.c.folder == folder,
                            ledger.c.provider_id.in_(chunk),
                        )
                    )
                    for row in result:
                        found[row.provider_id] = ledger_entry(row)
        return found

    async def ledger_find_content(
        self, mailbox_id: str, raw_sha256: str, message_id: str | None
    ) -> LedgerEntry | None:
        key = (raw_sha256, message_id)
        return (await self.ledger_find_contents(mailbox_id, [key])).get(key)

    async def ledger_record_intent(self, entry: LedgerEntry) -> LedgerEntry:
        return (await self.ledger_record_intents([entry]))[0]

    async def ledger_record_intents(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Many intents in one transaction (one fetched batch), each with ledger_record_intent's rules."""
        if not entries:
            return []
        first = entries[0]
        exts = [e.external_id for e in entries]
        with self._errors("ledger_record_intents", mailbox=first.mailbox_id, folder=first.folder):
            async with self._write() as conn:
                # Fast path: one multi-row INSERT ... ON CONFLICT DO NOTHING, then one read back.
                # Anything that did not land as given (a replay, a move, a clash) takes the
                # one-entry path with its checks, inside the same transaction.
                now = utc_now()
                rows = [_ledger_values(e, now, LedgerState.PENDING) for e in entries]
                await conn.execute(self._insert(ledger).on_conflict_do_nothing(), rows)
                stored = await self._ledger_rows(conn, exts)
                out: list[LedgerEntry] = []
                for entry in entries:
                    row = stored.get(entry.external_id)
                    if row is not None and (row.mailbox_id, row.folder, row.provider_id) == (
                        entry.mailbox_id,
                        entry.folder,
                        entry.provider_id,
                    ):
                        out.append(ledger_entry(row))
                    else:
                        out.append(await self._record_intent(conn, entry))
                return out

    async def _ledger_rows(self, conn: AsyncConnection, external_ids: Sequence[str]) -> dict[str, Row[Any]]:
        found: dict[str, Row[Any]] = {}
        unique = list(dict.fromkeys(external_ids))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            result = await conn.execute(
                select(ledger).where(ledger.c.external_id.in_(unique[start : start + LOOKUP_CHUNK]))
            )
            for row in result:
                found[row.external_id] = row
        return found

    async def _record_intent(self, conn: AsyncConnection, entry: LedgerEntry) -> LedgerEntry:
        context = {
            "mailbox": entry.mailbox_id,
            "folder": entry.folder,
            "provider_id": entry.provider_id,
            "external_id": entry.external_id,
        }
        insert: Insert = self._insert(ledger).values(**_ledger_values(entry, utc_now(), LedgerState.PENDING))
        # No conflict target: a clash on either key (external id, or mailbox+folder+provider id)
        # inserts nothing, and the reads below tell the two apart.
        insert = insert.on_conflict_do_nothing().returning(*ledger.c)  # type: ignore[attr-defined]
        inserted = (await conn.execute(insert)).first()
        if inserted is not None:
            return ledger_entry(inserted)
        existing = await self._ledger_row(conn, entry.external_id, lock=True)
        if existing is None:
            holder = await conn.scalar(
                select(ledger.c.external_id).where(
                    ledger.c.mailbox_id == entry.mailbox_id,
                    ledger.c.folder == entry.folder,
                    ledger.c.provider_id == entry.provider_id,
                )
            )
            raise StoreError(
                "ledger already holds this message under a different external id",
                existing_external_id=holder,
                **context,
            )
        if existing.mailbox_id != entry.mailbox_id:
            raise StoreError(
                "external id is already recorded for another mailbox",
                existing_mailbox=existing.mailbox_id,
                **context,
            )
        if (existing.folder, existing.provider_id) == (entry.folder, entry.provider_id):
            return ledger_entry(existing)
        await self._ledger_move(conn, entry, context)
        moved = await self._ledger_row(conn, entry.external_id)
        assert moved is not None
        return ledger_entry(moved)

    async def ledger_record_aliases(self, entries: Sequence[LedgerEntry]) -> None:
        """Rows for an email IWD already holds, seen under another identity (a copy in another
        folder, or a renumbered folder): they carry the first identity's IWD item id and state."""
        if not entries:
            return
        now = utc_now()
        rows = [_ledger_values(e, now, e.state) | {"iwd_id": e.iwd_id, "delivered_at": now} for e in entries]
        with self._errors("ledger_record_aliases", mailbox=entries[0].mailbox_id, folder=entries[0].folder):
            async with self._write() as conn:
                await conn.execute(self._insert(ledger).on_conflict_do_nothing(), rows)

    async def ledger_find_contents(
        self, mailbox_id: str, keys: Sequence[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], LedgerEntry]:
        """The oldest entry per (raw sha256, Message-ID) asked for; ids are compared as stored
        (cleaned), so an id with bytes the database cannot hold still matches itself."""
        wanted = {key: (key[0], clean_optional_text(key[1])) for key in keys}
        unique = list(dict.fromkeys(sha for sha, _ in keys))
        found: dict[tuple[str, str | None], LedgerEntry] = {}
        with self._errors("ledger_find_contents", mailbox=mailbox_id):
            async with self._read() as conn:
                for start in range(0, len(unique), LOOKUP_CHUNK):
                    result = await conn.execute(
                        select(ledger)
                        .where(
                            ledger.c.mailbox_id == mailbox_id,
                            ledger.c.raw_sha256.in_(unique[start : start + LOOKUP_CHUNK]),
                        )
                        .order_by(ledger.c.created_at, ledger.c.external_id)
                    )
                    for row in result:
                        found.setdefault((row.raw_sha256, row.message_id), ledger_entry(row))
        return {key: found[stored] for key, stored in wanted.items() if stored in found}

    async def _ledger_row(
        self, conn: AsyncConnection, external_id: str, lock: bool = False
    ) -> Row[Any] | None:
        query = select(ledger).where(ledger.c.external_id == external_id)
        if lock and self.dialect == "postgresql":
            query = query.with_for_update()
        return (await conn.execute(query)).first()

    async def _ledger_move(self, conn: AsyncConnection, entry: LedgerEntry, context: dict[str, str]) -> None:
        """Re-points an entry at its new (folder, provider id), e.g. after UIDVALIDITY changed."""
        holder = await conn.scalar(
            select(ledger.c.external_id).where(
                ledger.c.mailbox_id == entry.mailbox_id,
                ledger.c.folder == entry.folder,
                ledger.c.provider_id == entry.provider_id,
            )
        )
        if holder is not None:
            raise StoreError(
                "cannot move ledger entry: its new folder/provider id is held by another external id",
                existing_external_id=holder,
                **context,
            )
        await conn.execute(
            update(ledger)
            .where(ledger.c.external_id == entry.external_id)
            .values(folder=entry.folder, provider_id=entry.provider_id)
        )

    async def ledger_commit(
        self,
        external_id: str,
        iwd_id: str,
        cursor: tuple[str, str, str | None] | None = None,
        acted: bool = False,
    ) -> None:
        await self.ledger_commit_many([(external_id, iwd_id)], acted=acted, cursor=cursor)

    async def ledger_commit_many(
        self,
        commits: Sequence[tuple[str, str]],
        *,
        acted: bool = False,
        cursor: tuple[str, str, str | None] | None = None,
    ) -> None:
        """ledger_commit for a batch of (external_id, iwd_id) and the cursor, in one transaction."""
        if not commits and cursor is None:
            return
        now = utc_now()
        target = LedgerState.ACTED if acted else LedgerState.DELIVERED
        values: dict[str, Any] = {
            "state": case(
                (ledger.c.state == LedgerState.ACTED.value, LedgerState.ACTED.value), else_=target.value
            ),
            "delivered_at": func.coalesce(ledger.c.delivered_at, now),
        }
        if acted:
            values["acted_at"] = func.coalesce(ledger.c.acted_at, now)
        context: dict[str, Any] = {"items": len(commits)}
        if cursor is not None:
            context.update(mailbox=cursor[0], folder=cursor[1])
        with self._errors("ledger_commit_many", **context):
            async with self._write() as conn:
                if cursor is not None:
                    await self._upsert_cursor(conn, *cursor)
                if not commits:
                    return
                known = await self._ledger_rows(conn, [ext for ext, _ in commits])
                missing = [ext for ext, _ in commits if ext not in known]
                if missing:  # raising rolls back the cursor and every commit with it
                    raise StoreError(
                        "ledger commit for an external id with no recorded intent",
                        external_id=missing[0],
                        **context,
                    )
                await conn.execute(
                    update(ledger)
                    .where(ledger.c.external_id == bindparam("b_external_id"))
                    .values(iwd_id=bindparam("b_iwd_id"), **values),
                    [{"b_external_id": ext, "b_iwd_id": iwd} for ext, iwd in commits],
                )

    async def ledger_mark_acted_many(self, external_ids: Sequence[str]) -> None:
        """Marks delivered entries acted; pending or unknown ids are left alone (never forced forward)."""
        unique = list(dict.fromkeys(external_ids))
        with self._errors("ledger_mark_acted_many", items=len(unique)):
            async with self._write() as conn:
                for start in range(0, len(unique), LOOKUP_CHUNK):
                    await conn.execute(
                        update(ledger)
                        .where(
                            ledger.c.external_id.in_(unique[start : start + LOOKUP_CHUNK]),
                            ledger.c.state != LedgerState.PENDING.value,
                        )
                        .values(
                            state=LedgerState.ACTED.value,
                            acted_at=func.coalesce(ledger.c.acted_at, utc_now()),
                        )
                    )

    async def ledger_mark_acted(self, external_id: str) -> None:
        with self._errors("ledger_mark_acted", external_id=external_id):
            async with self._write() as conn:
                result = await conn.execute(
                    update(ledger)
                    .where(ledger.c.external_id == external_id, ledger.c.state != LedgerState.PENDING.value)
                    .values(
                        state=LedgerState.ACTED.value, acted_at=func.coalesce(ledger.c.acted_at, utc_now())
                    )
                )
                if result.rowcount == 1:
                    return
                row = await self._ledger_row(conn, external_id)
                if row is None:
                    raise StoreError("cannot mark acted: no ledger entry", external_id=external_id)
                raise StoreError(
                    "cannot mark acted: IWD delivery is not committed yet",
                    external_id=external_id,
                    state=row.state,
                    mailbox=row.mailbox_id,
                )

    async def ledger_pending_actions(self, mailbox_id: str, limit: int = 500) -> list[LedgerEntry]:
        query = (
            select(ledger)
            .where(ledger.c.mailbox_id == mailbox_id, ledger.c.state == LedgerState.DELIVERED.value)
            .order_by(ledger.c.delivered_at, ledger.c.external_id)
            .limit(limit)
        )
        with self._errors("ledger_pending_actions", mailbox=mailbox_id):
            async with self._read() as conn:
                return [ledger_entry(row) for row in await conn.execute(query)]

    async def ledger_count(self, mailbox_id: str | None = None, state: LedgerState | None = None) -> int:
        query = select(func.count()).select_from(ledger)
        if mailbox_id is not None:
            query = query.where(ledger.c.mailbox_id == mailbox_id)
        if state is not None:
            query = query.where(ledger.c.state == LedgerState(state).value)
        with self._errors("ledger_count", mailbox=mailbox_id):
            async with self._read() as conn:
                return int(await conn.scalar(query) or 0)

    async def ledger_count_items(self, mailbox_id: str) -> int:
        """Distinct IWD item ids over delivered and acted rows (a row without one is its own item)."""
        item = func.coalesce(func.nullif(ledger.c.iwd_id, ""), ledger.c.external_id)
        query = select(func.count(func.distinct(item))).where(
            ledger.c.mailbox_id == mailbox_id,
            ledger.c.state.in_([LedgerState.DELIVERED.value, LedgerState.ACTED.value]),
        )
        with self._errors("ledger_count_items", mailbox=mailbox_id):
            async with self._read() as conn:
                return int(await conn.scalar(query) or 0)
