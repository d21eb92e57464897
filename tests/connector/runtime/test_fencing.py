"""Fencing on PostgreSQL: a runner's writes land only while the lease it started under is current."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from connector.errors import LeaseLost
from connector.store.fence import Fence
from connector.store.leases import SqlLeases
from connector.store.sql import SqlStore
from connector.store.types import LedgerEntry, LedgerState
from tests.connector.runtime.pg import lapse

TTL = 30.0


def pending(n: int) -> LedgerEntry:
    return LedgerEntry(
        external_id=f"ext-box-{n}",
        mailbox_id="box",
        folder="INBOX",
        provider_id=f"9:{n}",
        raw_sha256="0" * 64,
    )


async def _lease(store: SqlStore, owner: str) -> Fence:
    leases = SqlLeases(store)
    await leases.ensure(["box"])
    (got,) = await leases.acquire(owner, ["box"], 1, TTL)
    return Fence("box", owner, got.epoch)


async def test_fenced_commit_lands_while_the_lease_is_held(pg_store: SqlStore) -> None:
    """Holding the lease, the ledger commit and the cursor advance are written together."""
    fenced = pg_store.fenced(await _lease(pg_store, "a"))
    await fenced.ledger_record_intent(pending(1))
    await fenced.ledger_commit_many([("ext-box-1", "iwd-1")], cursor=("box", "INBOX", "9:1"))
    assert await pg_store.get_cursor("box", "INBOX") == "9:1"
    assert await pg_store.ledger_count("box", LedgerState.DELIVERED) == 1


async def test_commit_after_a_takeover_is_refused_and_writes_nothing(pg_store: SqlStore) -> None:
    """A paused replica wakes after b took the mailbox: its commit raises LeaseLost, and neither the
    cursor nor the ledger entry moves."""
    fence_a = await _lease(pg_store, "a")
    old = pg_store.fenced(fence_a)
    await old.ledger_record_intent(pending(1))
    await old.set_cursor("box", "INBOX", "9:0")
    await lapse(pg_store, "a")
    (taken,) = await SqlLeases(pg_store).acquire("b", ["box"], 1, TTL)
    assert taken.epoch == fence_a.epoch + 1
    with pytest.raises(LeaseLost) as refused:
        await old.ledger_commit_many([("ext-box-1", "iwd-1")], cursor=("box", "INBOX", "9:1"))
    assert refused.value.context["mailbox"] == "box" and refused.value.context["epoch"] == fence_a.epoch
    assert await pg_store.get_cursor("box", "INBOX") == "9:0"
    assert await pg_store.ledger_count("box", LedgerState.PENDING) == 1
    with pytest.raises(LeaseLost):
        await old.ledger_mark_acted_many(["ext-box-1"])


async def test_lapsed_lease_refuses_writes_even_before_anyone_takes_it(pg_store: SqlStore) -> None:
    """Expiry alone (database clock) ends the right to write: nobody took it yet, still refused."""
    old = pg_store.fenced(await _lease(pg_store, "a"))
    await lapse(pg_store, "a")
    with pytest.raises(LeaseLost):
        await old.set_cursor("box", "INBOX", "9:5")
    assert await pg_store.get_cursor("box", "INBOX") is None


async def test_post_action_check_refuses_once_the_lease_is_gone(pg_store: SqlStore) -> None:
    """The check made right before a post-action's server command passes under the lease and
    raises LeaseLost after a takeover, so the flag is never set by the old owner."""
    fence = await _lease(pg_store, "a")
    fenced = pg_store.fenced(fence)
    await fenced.fence_check("post_action")
    await lapse(pg_store, "a")
    await SqlLeases(pg_store).acquire("b", ["box"], 1, TTL)
    with pytest.raises(LeaseLost):
        await fenced.fence_check("post_action")


async def test_a_released_lease_refuses_its_old_runner(pg_store: SqlStore) -> None:
    """After a handover (release), a straggling write of the old runner is refused."""
    fence = await _lease(pg_store, "a")
    await SqlLeases(pg_store).release("a", ["box"])
    with pytest.raises(LeaseLost):
        await pg_store.fenced(fence).set_cursor("box", "INBOX", "1")


async def test_a_replica_paused_inside_a_fenced_write_cannot_block_the_takeover(pg_store: SqlStore) -> None:
    """a is stopped right after its fence check, holding the lease row: the server ends that session
    after a third of the TTL, so b takes the mailbox once the lease lapsed and a's write never lands."""
    leases = SqlLeases(pg_store)
    await leases.ensure(["box"])
    (got,) = await leases.acquire("a", ["box"], 1, 0.6)
    fenced = pg_store.fenced(Fence("box", "a", got.epoch, ttl_seconds=0.6))
    paused = fenced._write()
    conn = await paused.__aenter__()  # the fence check passed; then SIGSTOP
    try:
        taken = []
        for _ in range(100):  # b's rounds, until the lapsed lease is free to take
            taken = await leases.acquire("b", ["box"], 1, 30)
            if taken:
                break
            await asyncio.sleep(0.1)
        assert [(t.mailbox_id, t.previous_owner) for t in taken] == [("box", "a")]
        with pytest.raises(DBAPIError):  # SIGCONT: a's transaction was ended by the server
            await conn.execute(text("UPDATE cursors SET cursor = 'stale'"))
    finally:
        with contextlib.suppress(Exception):
            await paused.__aexit__(None, None, None)
    assert await pg_store.get_cursor("box", "INBOX") is None
