"""The outbox on the SQL store's engine: OutboxStore for SqlStore, by composition.

`SqlOutbox(store)` shares the SqlStore's engine (and so its SQLite WAL/BEGIN IMMEDIATE setup
and PostgreSQL pool); `open_store()` is unchanged and the r0002 revision runs with the others at
open. Every state change is one conditional UPDATE, so a stale worker can never move a reply
backwards (e.g. a `sent` reply back to `sending`).

Several replicas share the outbox through claims (r0004): a replica claims due replies in a batch
(`FOR UPDATE SKIP LOCKED`, so two replicas never claim the same row), keeps its claims alive
while it works, and every state change it makes requires the claim to be its own. Claim expiry
uses the database's clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.errors import LeaseLost, StoreError
from connector.store.engine import WRITE_OPTION, translated_errors
from connector.store.fence import db_now
from connector.store.lease_tables import replicas
from connector.store.outbox_tables import auto_ack, outbox
from connector.store.rows import clean_optional_text, clean_text
from connector.store.sql import SqlStore
from connector.store.types import OUTBOX_OPEN_STATES, OutboxEntry, OutboxState

_REQUEUE_FROM = (OutboxState.UNCERTAIN, OutboxState.FAILED, OutboxState.RETRYING)
_CLAIMABLE = (OutboxState.QUEUED, OutboxState.RETRYING, OutboxState.SENDING)
_LOOKUP_CHUNK = 500
LOCAL_OWNER = "local"
DEFAULT_CLAIM_TTL_SECONDS = 30.0


class OutboxConflict(StoreError):
    """outbox_finish found the row in another state than the caller expected: another worker (a
    second daemon on the same database, a person's resend) moved it first. `current` is the row
    as it is now; nothing was written."""

    code = "outbox_conflict"

    def __init__(self, current: OutboxEntry, expected: OutboxState, wanted: OutboxState) -> None:
        super().__init__(
            f"reply is {current.state.value}, not {expected.value}: not moved to {wanted.value}",
            reply_id=current.id,
        )
        self.current = current


def outbox_entry(row: Row[Any]) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        mailbox_id=row.mailbox_id,
        origin=row.origin,
        iwd_item_id=row.iwd_item_id,
        request=json.loads(row.request),
        request_sha256=row.request_sha256,
        message_id=row.message_id,
        state=OutboxState(row.state),
        phase=row.phase,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        first_attempt_at=row.first_attempt_at,
        sent_at=row.sent_at,
        last_error_code=row.last_error_code,
        last_error=row.last_error,
        results=json.loads(row.results or "{}"),
        reported_state=row.reported_state,
        claim_owner=row.claim_owner,
        claim_expires_at=row.claim_expires_at,
    )


class SqlOutbox:
    """Implements connector.store.types.OutboxStore over an open SqlStore; `owner` is the
    replica whose claims this instance takes, holding each for `claim_ttl_seconds`."""

    def __init__(
        self,
        store: SqlStore,
        *,
        owner: str = LOCAL_OWNER,
        claim_ttl_seconds: float = DEFAULT_CLAIM_TTL_SECONDS,
    ) -> None:
        self._engine = store._engine
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        self._secret = store._url.password
        self._dialect = store.dialect
        self.owner = owner
        self.claim_ttl_seconds = claim_ttl_seconds

    def _now(self, plus_seconds: float = 0.0) -> Any:
        return db_now(self._dialect, plus_seconds)

    def _mine(self) -> Any:
        """The row's claim is this replica's (lapsed or not: nobody else took it)."""
        return outbox.c.claim_owner == self.owner

    def _claimable(self) -> Any:
        """Nobody else holds a live claim on the row."""
        return or_(
            outbox.c.claim_owner.is_(None),
            outbox.c.claim_owner == self.owner,
            outbox.c.claim_expires_at.is_(None),
            outbox.c.claim_expires_at <= self._now(),
        )

    @asynccontextmanager
    async def _write(self, operation: str, **context: Any) -> AsyncIterator[AsyncConnection]:
        with translated_errors(operation, self._secret, **context):
            async with self._writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _read(self, operation: str, **context: Any) -> AsyncIterator[AsyncConnection]:
        with translated_errors(operation, self._secret, **context):
            async with self._engine.connect() as conn:
                yield conn

    def _insert(self, table: Any) -> Any:
        module = postgresql if self._dialect == "postgresql" else sqlite
        return module.insert(table)

    async def _row(self, conn: AsyncConnection, reply_id: str) -> OutboxEntry | None:
        row = (await conn.execute(select(outbox).where(outbox.c.id == reply_id))).first()
        return None if row is None else outbox_entry(row)

    # ------------------------------------------------------------------ writes

    async def outbox_enqueue(self, entry: OutboxEntry) -> tuple[OutboxEntry, bool]:
        now = entry.created_at
        if now is None:
            raise ValueError("entry.created_at is required")
        stmt = (
            self._insert(outbox)
            .values(
                id=entry.id,
                mailbox_id=entry.mailbox_id,
                origin=entry.origin,
                iwd_item_id=entry.iwd_item_id,
                request=clean_text(json.dumps(entry.request, ensure_ascii=False, sort_keys=True)),
                request_sha256=entry.request_sha256,
                message_id=entry.message_id,
                state=OutboxState.QUEUED.value,
                attempts=0,
                next_attempt_at=entry.next_attempt_at or now,
                created_at=now,
                updated_at=now,
                results="{}",
            )
            .on_conflict_do_nothing(index_elements=[outbox.c.id])
        )
        async with self._write("outbox_enqueue", reply_id=entry.id) as conn:
            created = (await conn.execute(stmt)).rowcount == 1
            stored = await self._row(conn, entry.id)
        if stored is None:
            raise StoreError("outbox row vanished right after insert", reply_id=entry.id)
        return stored, created

    async def outbox_claim(self, reply_id: str, now: datetime) -> OutboxEntry | None:
        stmt = (
            update(outbox)
            .where(
                outbox.c.id == reply_id,
                outbox.c.state.in_([s.value for s in OUTBOX_OPEN_STATES]),
                self._claimable(),
            )
            .values(
                state=OutboxState.SENDING.value,
                attempts=outbox.c.attempts + 1,
                phase=None,
                updated_at=now,
                first_attempt_at=func.coalesce(outbox.c.first_attempt_at, now),
                claim_owner=self.owner,
                claim_expires_at=self._now(self.claim_ttl_seconds),
            )
        )
        async with self._write("outbox_claim", reply_id=reply_id) as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return None
            return await self._row(conn, reply_id)

    async def outbox_set_phase(self, reply_id: str, phase: str) -> None:
        """The last word before DATA: lands only while this replica's claim is live (database
        clock), else raises LeaseLost and the message must not be transferred."""
        stmt = (
            update(outbox)
            .where(
                outbox.c.id == reply_id,
                outbox.c.state == OutboxState.SENDING.value,
                self._mine(),
                outbox.c.claim_expires_at > self._now(),
            )
            .values(phase=phase)
        )
        async with self._write("outbox_set_phase", reply_id=reply_id) as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                raise LeaseLost(
                    "reply claim lost before DATA: another replica may send it",
                    reply_id=reply_id,
                    owner=self.owner,
                )

    async def outbox_claim_due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Claims up to `limit` replies due at `now` (the worker's clock, as next_attempt_at was
        set with it) that no other replica holds, oldest first; rows another replica is claiming
        at this moment are skipped (SKIP LOCKED). The claim's expiry uses the database's clock."""
        pick = (
            select(outbox.c.id)
            .where(
                outbox.c.state.in_([s.value for s in OUTBOX_OPEN_STATES]),
                or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
                self._claimable(),
            )
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self._claim("outbox_claim_due", pick)

    async def outbox_claim_stranded(self, *, everything: bool = False) -> list[OutboxEntry]:
        """Claims replies left `sending` by a replica that is gone: its claim lapsed and it has no
        live heartbeat (or it is this replica's own from before a restart). `everything`: all
        `sending` rows (SQLite, where the file lock proves no other process runs)."""
        query = select(outbox.c.id).where(outbox.c.state == OutboxState.SENDING.value)
        if not everything:
            live = select(replicas.c.replica_id).where(
                replicas.c.expires_at > self._now(), replicas.c.replica_id != self.owner
            )
            query = query.where(
                or_(outbox.c.claim_expires_at.is_(None), outbox.c.claim_expires_at <= self._now()),
                or_(outbox.c.claim_owner.is_(None), outbox.c.claim_owner.not_in(live)),
            )
        query = query.order_by(outbox.c.updated_at).with_for_update(skip_locked=True)
        return await self._claim("outbox_claim_stranded", query)

    async def _claim(self, operation: str, pick: Any) -> list[OutboxEntry]:
        """Claims the rows `pick` selects (locked, SKIP LOCKED) for this replica, in `pick`'s order."""
        async with self._write(operation, owner=self.owner) as conn:
            ids = [str(i) for i in (await conn.scalars(pick)).all()]
            if not ids:
                return []
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(claim_owner=self.owner, claim_expires_at=self._now(self.claim_ttl_seconds))
            )
            rows = await conn.execute(select(outbox).where(outbox.c.id.in_(ids)))
            found = {r.id: outbox_entry(r) for r in rows}
        return [found[i] for i in ids if i in found]

    async def outbox_renew_claims(self) -> int:
        """Keeps this replica's live claims alive (one statement, however many it holds)."""
        stmt = (
            update(outbox)
            .where(
                self._mine(),
                outbox.c.state.in_([s.value for s in _CLAIMABLE]),
                outbox.c.claim_expires_at > self._now(),
            )
            .values(claim_expires_at=self._now(self.claim_ttl_seconds))
        )
        async with self._write("outbox_renew_claims", owner=self.owner) as conn:
            return int((await conn.execute(stmt)).rowcount or 0)

    async def outbox_release_claims(self, *, everyone: bool = False) -> int:
        """Hands back claimed replies this replica did not get to (still queued or retrying);
        `everyone`: any replica's (one process alone on its store, at start-up)."""
        stmt = update(outbox).where(outbox.c.state.in_([s.value for s in OUTBOX_OPEN_STATES]))
        if not everyone:
            stmt = stmt.where(self._mine())
        stmt = stmt.values(claim_owner=None, claim_expires_at=None)
        async with self._write("outbox_release_claims", owner=self.owner) as conn:
            return int((await conn.execute(stmt)).rowcount or 0)

    async def outbox_finish(
        self,
        reply_id: str,
        state: OutboxState,
        *,
        now: datetime,
        results: dict[str, dict[str, Any]] | None = None,
        error_code: str | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        sent_at: datetime | None = None,
        expected: OutboxState = OutboxState.SENDING,
    ) -> OutboxEntry:
        """Compare-and-set: writes only while the row is still in `expected` (by default `sending`,
        i.e. the caller's own claim); raises OutboxConflict when someone else moved it."""
        async with self._write("outbox_finish", reply_id=reply_id, state=state.value) as conn:
            current = await self._row(conn, reply_id)
            if current is None:
                raise StoreError("no outbox row with this id", reply_id=reply_id)
            if current.state is not expected:
                raise OutboxConflict(current, expected, state)
            merged = {**current.results, **(results or {})}
            values: dict[str, Any] = {
                "state": state.value,
                "updated_at": now,
                "results": json.dumps(merged, sort_keys=True),
                "last_error_code": error_code,
                "last_error": clean_optional_text(error),
                "next_attempt_at": next_attempt_at,
            }
            if sent_at is not None:
                values["sent_at"] = sent_at
            guarded = update(outbox).where(outbox.c.id == reply_id, outbox.c.state == expected.value)
            if expected is OutboxState.SENDING:  # our own attempt: only while nobody took the claim over
                guarded = guarded.where(or_(self._mine(), outbox.c.claim_owner.is_(None)))
            if (await conn.execute(guarded.values(**values))).rowcount != 1:
                raced = await self._row(conn, reply_id)
                assert raced is not None
                raise OutboxConflict(raced, expected, state)
            stored = await self._row(conn, reply_id)
        assert stored is not None
        return stored

    async def outbox_requeue(self, reply_id: str, now: datetime) -> OutboxEntry | None:
        """Keeps only the results of recipients the server accepted: everyone else (refused,
        deferred, or unconfirmed after an uncertain DATA) is sent to again."""
        open_states = [s.value for s in _REQUEUE_FROM]
        async with self._write("outbox_requeue", reply_id=reply_id) as conn:
            current = await self._row(conn, reply_id)
            if current is None or current.state not in _REQUEUE_FROM:
                return None
            kept = {a: r for a, r in current.results.items() if r.get("accepted") is True}
            stmt = (
                update(outbox)
                .where(outbox.c.id == reply_id, outbox.c.state.in_(open_states))
                .values(
                    state=OutboxState.QUEUED.value,
                    next_attempt_at=now,
                    updated_at=now,
                    phase=None,
                    results=json.dumps(kept, sort_keys=True),
                )
            )
            if (await conn.execute(stmt)).rowcount != 1:
                return None
            return await self._row(conn, reply_id)

    async def outbox_mark_reported(self, reply_id: str, state: OutboxState) -> None:
        stmt = update(outbox).where(outbox.c.id == reply_id).values(reported_state=state.value)
        async with self._write("outbox_mark_reported", reply_id=reply_id) as conn:
            await conn.execute(stmt)

    async def auto_ack_claim(
        self, mailbox_id: str, sender: str, now: datetime, period_seconds: float
    ) -> bool:
        sender = clean_text(sender.lower())
        cutoff = now - timedelta(seconds=period_seconds)
        insert = self._insert(auto_ack).values(mailbox_id=mailbox_id, sender=sender, last_sent_at=now)
        insert = insert.on_conflict_do_update(
            index_elements=[auto_ack.c.mailbox_id, auto_ack.c.sender],
            set_={"last_sent_at": insert.excluded.last_sent_at},
            where=auto_ack.c.last_sent_at <= cutoff,
        )
        async with self._write("auto_ack_claim", mailbox=mailbox_id) as conn:
            return bool((await conn.execute(insert)).rowcount == 1)

    # ------------------------------------------------------------------ reads

    async def outbox_get(self, reply_id: str) -> OutboxEntry | None:
        async with self._read("outbox_get", reply_id=reply_id) as conn:
            return await self._row(conn, reply_id)

    async def outbox_due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        query = (
            select(outbox)
            .where(
                outbox.c.state.in_([s.value for s in OUTBOX_OPEN_STATES]),
                or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
            )
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(limit)
        )
        async with self._read("outbox_due") as conn:
            return [outbox_entry(r) for r in await conn.execute(query)]

    async def outbox_in_state(self, state: OutboxState, limit: int = 1000) -> list[OutboxEntry]:
        query = select(outbox).where(outbox.c.state == state.value).order_by(outbox.c.created_at).limit(limit)
        async with self._read("outbox_in_state", state=state.value) as conn:
            return [outbox_entry(r) for r in await conn.execute(query)]

    async def outbox_unreported(self, limit: int = 100) -> list[OutboxEntry]:
        query = (
            select(outbox)
            .where(
                outbox.c.iwd_item_id.is_not(None),
                outbox.c.state.not_in([OutboxState.QUEUED.value, OutboxState.SENDING.value]),
                or_(outbox.c.reported_state.is_(None), outbox.c.reported_state != outbox.c.state),
            )
            .order_by(outbox.c.updated_at)
            .limit(limit)
        )
        async with self._read("outbox_unreported") as conn:
            return [outbox_entry(r) for r in await conn.execute(query)]

    async def outbox_counts(self, mailbox_id: str | None = None) -> dict[OutboxState, int]:
        query = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        if mailbox_id is not None:
            query = query.where(outbox.c.mailbox_id == mailbox_id)
        async with self._read("outbox_counts", mailbox=mailbox_id) as conn:
            rows = (await conn.execute(query)).all()
        counts = dict.fromkeys(OutboxState, 0)
        for state, count in rows:
            counts[OutboxState(state)] = int(count)
        return counts

    async def outbox_counts_by_mailbox(self) -> dict[str, dict[OutboxState, int]]:
        """Every mailbox's counts in one query (the worker's tick, not one query per mailbox)."""
        query = select(outbox.c.mailbox_id, outbox.c.state, func.count()).group_by(
            outbox.c.mailbox_id, outbox.c.state
        )
        async with self._read("outbox_counts_by_mailbox") as conn:
            rows = (await conn.execute(query)).all()
        counts: dict[str, dict[OutboxState, int]] = {}
        for mailbox_id, state, count in rows:
            counts.setdefault(str(mailbox_id), dict.fromkeys(OutboxState, 0))[OutboxState(state)] = int(count)
        return counts

    async def outbox_known_message_ids(self, message_ids: Sequence[str]) -> set[str]:
        unique = list(dict.fromkeys(message_ids))
        found: set[str] = set()
        async with self._read("outbox_known_message_ids") as conn:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                query = select(outbox.c.message_id).where(outbox.c.message_id.in_(chunk))
                found.update(str(v) for v in (await conn.scalars(query)).all())
        return found
