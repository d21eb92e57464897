"""The fencing token: a write made under a mailbox lease is refused once that lease has moved on.

A `Fence` names the lease a runner was started under (mailbox, owner, epoch). Every write that
matters runs `check_fence` first in its own transaction: the check reads the lease row with the
database clock (`expires_at > now()`) and locks it `FOR SHARE`, so a takeover (which updates that
row) waits until the write has committed, and a write after a takeover finds another epoch and is
rolled back. Either the write lands while the lease is ours, or it does not land at all. A replica
paused inside such a transaction is cut off by the server (idle_in_transaction_session_timeout, a
third of the TTL, set for that transaction only), so it cannot hold the lease row past its TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.errors import LeaseLost
from connector.store.lease_tables import mailbox_leases


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a runner holds: writes are valid only while (owner, epoch) is current."""

    mailbox_id: str
    owner: str
    epoch: int
    ttl_seconds: float = 30.0  # the lease's TTL: bounds how long a write may hold the lease row


MIN_HOLD_MS = 100


@runtime_checkable
class Fenced(Protocol):
    """A store that can check its fence without writing (right before a server-side command)."""

    async def fence_check(self, operation: str) -> None: ...


def db_now(dialect: str, plus_seconds: float = 0.0) -> Any:
    """The database's clock (`now()`) on PostgreSQL, where replicas share it; SQLite serves one
    process only, whose own clock is then the only one."""
    if dialect == "postgresql":
        return func.now() + timedelta(seconds=plus_seconds) if plus_seconds else func.now()
    return datetime.now(UTC) + timedelta(seconds=plus_seconds)


async def check_fence(conn: AsyncConnection, fence: Fence, operation: str) -> None:
    """Raises LeaseLost (the transaction then rolls back) unless `fence` is the live lease."""
    columns: list[Any] = [mailbox_leases.c.epoch]
    if conn.dialect.name == "postgresql":
        # A replica paused inside this transaction would hold the row lock, and so block the
        # takeover, for as long as it is paused: the server ends such a session after a third of
        # the TTL (its transaction rolls back, nothing of it lands), well before the lease lapses.
        hold_ms = str(max(int(fence.ttl_seconds * 1000 / 3), MIN_HOLD_MS))
        columns.append(func.set_config("idle_in_transaction_session_timeout", hold_ms, True))
    query = select(*columns).where(
        mailbox_leases.c.mailbox_id == fence.mailbox_id,
        mailbox_leases.c.owner == fence.owner,
        mailbox_leases.c.epoch == fence.epoch,
        mailbox_leases.c.expires_at > db_now(conn.dialect.name),
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    if await conn.scalar(query) is None:
        raise LeaseLost(
            "write refused: this replica no longer holds the mailbox's lease",
            mailbox=fence.mailbox_id,
            owner=fence.owner,
            epoch=fence.epoch,
            operation=operation,
        )
