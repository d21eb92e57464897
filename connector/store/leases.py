"""Membership and mailbox leases on the SQL store's engine (several replicas, one PostgreSQL).

Every expiry is set and compared with the database's clock, so replicas whose clocks disagree
still agree on who holds what. Upkeep is batched: one heartbeat and one renewal statement per
round, however many mailboxes a replica holds. The epoch of a lease rises each time it changes
hands (or is taken again after it lapsed); it is the fencing token of connector/store/fence.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from connector.store.engine import WRITE_OPTION, translated_errors
from connector.store.fence import db_now
from connector.store.lease_tables import mailbox_leases, replicas
from connector.store.sql import SqlStore


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    replica_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseRow:
    mailbox_id: str
    owner: str | None  # None: free (never taken, released, or its owner's lease lapsed)
    epoch: int
    expires_at: datetime | None
    acquired_at: datetime | None


@dataclass(frozen=True, slots=True)
class Acquired:
    mailbox_id: str
    epoch: int
    previous_owner: str | None  # another replica's (lapsed or released) lease: a takeover


class SqlLeases:
    """Replica heartbeats and mailbox leases over an open SqlStore."""

    def __init__(self, store: SqlStore, *, own_pool: bool = False) -> None:
        """`own_pool`: a small pool of its own (PostgreSQL), so that upkeep never queues behind
        the mailboxes' work for a connection of the store's pool."""
        self._own = own_pool and store.dialect == "postgresql"
        if self._own:
            self._engine = create_async_engine(store._url, pool_size=2, max_overflow=2, pool_recycle=1800)
        else:
            self._engine = store._engine
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        self._secret = store._url.password
        self.dialect = store.dialect

    async def close(self) -> None:
        if self._own:
            await self._engine.dispose()

    @asynccontextmanager
    async def _write(self, operation: str, **context: Any) -> AsyncIterator[AsyncConnection]:
        with translated_errors(operation, self._secret, **context):
            async with self._writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _read(self, operation: str) -> AsyncIterator[AsyncConnection]:
        with translated_errors(operation, self._secret):
            async with self._engine.connect() as conn:
                yield conn

    def _now(self, plus_seconds: float = 0.0) -> Any:
        return db_now(self.dialect, plus_seconds)

    def _insert(self, table: Any) -> Any:
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(table)

    # ------------------------------------------------------------------ membership

    async def heartbeat(self, replica_id: str, host: str, pid: int, ttl_seconds: float) -> None:
        """Says this replica is alive until now() + TTL (one upsert)."""
        stmt = self._insert(replicas).values(
            replica_id=replica_id,
            host=host,
            pid=pid,
            started_at=self._now(),
            heartbeat_at=self._now(),
            expires_at=self._now(ttl_seconds),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[replicas.c.replica_id],
            set_={
                "host": stmt.excluded.host,
                "pid": stmt.excluded.pid,
                "heartbeat_at": stmt.excluded.heartbeat_at,
                "expires_at": stmt.excluded.expires_at,
            },
        )
        async with self._write("replica_heartbeat", replica=replica_id) as conn:
            await conn.execute(stmt)

    async def leave(self, replica_id: str) -> int:
        """A clean stop: every lease of this replica is released at once, so others take them
        without waiting for the TTL; returns how many were released."""
        async with self._write("replica_leave", replica=replica_id) as conn:
            released = await self._release(conn, replica_id, None)
            await conn.execute(delete(replicas).where(replicas.c.replica_id == replica_id))
        return released

    async def live_replicas(self) -> list[ReplicaRow]:
        """Replicas whose heartbeat has not expired, by id (the order every replica agrees on)."""
        query = select(replicas).where(replicas.c.expires_at > self._now()).order_by(replicas.c.replica_id)
        async with self._read("live_replicas") as conn:
            return [
                ReplicaRow(r.replica_id, r.host, r.pid, r.started_at, r.heartbeat_at, r.expires_at)
                for r in await conn.execute(query)
            ]

    async def forget_expired(self, older_than_seconds: float) -> None:
        """Drops heartbeat rows of replicas dead for long (their leases lapsed long ago)."""
        stmt = delete(replicas).where(replicas.c.expires_at < self._now(-older_than_seconds))
        async with self._write("forget_replicas") as conn:
            await conn.execute(stmt)

    # ------------------------------------------------------------------ leases

    async def ensure(self, mailbox_ids: Sequence[str]) -> None:
        """A free lease row for each mailbox that has none yet (epoch 0)."""
        if not mailbox_ids:
            return
        rows = [{"mailbox_id": m, "owner": None, "epoch": 0} for m in dict.fromkeys(mailbox_ids)]
        async with self._write("lease_ensure") as conn:
            await conn.execute(self._insert(mailbox_leases).on_conflict_do_nothing(), rows)

    async def renew(self, owner: str, ttl_seconds: float) -> dict[str, int]:
        """Extends every live lease of `owner` in one statement; returns mailbox id -> epoch of
        those still held (a lease that lapsed is not revived: it must be acquired again)."""
        stmt = (
            update(mailbox_leases)
            .where(mailbox_leases.c.owner == owner, mailbox_leases.c.expires_at > self._now())
            .values(expires_at=self._now(ttl_seconds))
            .returning(mailbox_leases.c.mailbox_id, mailbox_leases.c.epoch)
        )
        async with self._write("lease_renew", owner=owner) as conn:
            return {str(m): int(e) for m, e in (await conn.execute(stmt)).all()}

    async def acquire(
        self, owner: str, mailbox_ids: Sequence[str], limit: int, ttl_seconds: float
    ) -> list[Acquired]:
        """Takes up to `limit` of `mailbox_ids` whose lease is free or lapsed, raising each one's
        epoch; rows another replica is taking at this moment are skipped (SKIP LOCKED)."""
        if limit <= 0 or not mailbox_ids:
            return []
        free = or_(
            mailbox_leases.c.owner.is_(None),
            mailbox_leases.c.expires_at.is_(None),  # released
            mailbox_leases.c.expires_at <= self._now(),  # lapsed
        )
        pick = (
            select(mailbox_leases.c.mailbox_id, mailbox_leases.c.owner)
            .where(mailbox_leases.c.mailbox_id.in_(list(mailbox_ids)), free)
            .order_by(mailbox_leases.c.mailbox_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._write("lease_acquire", owner=owner) as conn:
            previous = {str(m): o for m, o in (await conn.execute(pick)).all()}
            if not previous:
                return []
            stmt = (
                update(mailbox_leases)
                .where(mailbox_leases.c.mailbox_id.in_(list(previous)), free)
                .values(
                    owner=owner,
                    epoch=mailbox_leases.c.epoch + 1,
                    expires_at=self._now(ttl_seconds),
                    acquired_at=self._now(),
                )
                .returning(mailbox_leases.c.mailbox_id, mailbox_leases.c.epoch)
            )
            rows = (await conn.execute(stmt)).all()
        return [
            Acquired(str(m), int(e), None if previous[str(m)] == owner else previous[str(m)])
            for m, e in sorted(rows)
        ]

    async def release(self, owner: str, mailbox_ids: Sequence[str]) -> int:
        """Gives leases back (a handover after the mailbox's batch finished)."""
        if not mailbox_ids:
            return 0
        async with self._write("lease_release", owner=owner) as conn:
            return await self._release(conn, owner, mailbox_ids)

    async def _release(self, conn: AsyncConnection, owner: str, mailbox_ids: Sequence[str] | None) -> int:
        stmt = update(mailbox_leases).where(mailbox_leases.c.owner == owner)
        if mailbox_ids is not None:
            stmt = stmt.where(mailbox_leases.c.mailbox_id.in_(list(mailbox_ids)))
        # the owner stays, to tell the next holder whom it took over from; no expiry = free
        stmt = stmt.where(mailbox_leases.c.expires_at.is_not(None)).values(expires_at=None)
        result = await conn.execute(stmt)
        return int(result.rowcount or 0)

    async def leases(self) -> list[LeaseRow]:
        """Every lease as it stands by the database's clock: a lapsed one shows no owner."""
        live = mailbox_leases.c.expires_at > self._now()
        query = select(mailbox_leases, live.label("live")).order_by(mailbox_leases.c.mailbox_id)
        async with self._read("leases") as conn:
            return [
                LeaseRow(
                    r.mailbox_id,
                    r.owner if r.live else None,
                    int(r.epoch),
                    r.expires_at if r.live else None,
                    r.acquired_at,
                )
                for r in await conn.execute(query)
            ]
