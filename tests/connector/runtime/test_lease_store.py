"""Membership and mailbox leases in PostgreSQL: exclusive, epoch-raising, renewed in one statement."""

from __future__ import annotations

import asyncio

from connector.store.leases import SqlLeases
from connector.store.sql import SqlStore
from tests.connector.runtime.pg import StatementCounter, lapse

TTL = 30.0
BOXES = [f"box-{n:02d}" for n in range(10)]


async def test_acquire_takes_free_leases_once_and_raises_their_epoch(pg_store: SqlStore) -> None:
    """A lease taken by one replica is not handed to another; taking it raised its epoch to 1."""
    leases = SqlLeases(pg_store)
    await leases.ensure(BOXES)
    got_a = await leases.acquire("a", BOXES, 6, TTL)
    got_b = await leases.acquire("b", BOXES, 10, TTL)
    assert [g.mailbox_id for g in got_a] == BOXES[:6]
    assert [g.mailbox_id for g in got_b] == BOXES[6:]
    assert {g.epoch for g in got_a + got_b} == {1}
    assert all(g.previous_owner is None for g in got_a + got_b)
    owners = {row.mailbox_id: row.owner for row in await leases.leases()}
    assert owners == {m: ("a" if m in BOXES[:6] else "b") for m in BOXES}


async def test_replicas_acquiring_at_the_same_moment_never_share_a_mailbox(pg_store: SqlStore) -> None:
    """Three replicas grabbing all mailboxes concurrently (SKIP LOCKED) end up with disjoint sets."""
    leases = SqlLeases(pg_store)
    await leases.ensure(BOXES)
    results = await asyncio.gather(*(leases.acquire(r, BOXES, len(BOXES), TTL) for r in ("a", "b", "c")))
    taken = [g.mailbox_id for result in results for g in result]
    assert sorted(taken) == BOXES  # every mailbox exactly once


async def test_lapsed_lease_is_taken_over_with_a_higher_epoch_and_not_renewed_for_its_old_owner(
    pg_store: SqlStore,
) -> None:
    """After a's TTL passed (paused), b takes its mailboxes (epoch 2, previous owner a); a's renewal
    then returns nothing, so a knows it lost them."""
    leases = SqlLeases(pg_store)
    await leases.ensure(BOXES[:3])
    await leases.acquire("a", BOXES, 3, TTL)
    await lapse(pg_store, "a")
    taken = await leases.acquire("b", BOXES, 3, TTL)
    assert [(g.mailbox_id, g.epoch, g.previous_owner) for g in taken] == [(m, 2, "a") for m in BOXES[:3]]
    assert await leases.renew("a", TTL) == {}
    assert await leases.renew("b", TTL) == dict.fromkeys(BOXES[:3], 2)


async def test_a_replica_leaving_releases_every_lease_for_others_at_once(pg_store: SqlStore) -> None:
    """SIGTERM's path: `leave` frees a's leases and heartbeat; b takes them without waiting a TTL."""
    leases = SqlLeases(pg_store)
    await leases.ensure(BOXES)
    await leases.heartbeat("a", "host-a", 101, TTL)
    await leases.heartbeat("b", "host-b", 102, TTL)
    await leases.acquire("a", BOXES, 10, TTL)
    assert await leases.leave("a") == 10
    assert [r.replica_id for r in await leases.live_replicas()] == ["b"]
    assert len(await leases.acquire("b", BOXES, 10, TTL)) == 10


async def test_renewing_many_leases_is_one_statement(pg_store: SqlStore) -> None:
    """Upkeep does not grow with the mailboxes: 600 leases are renewed by one statement."""
    leases = SqlLeases(pg_store)
    many = [f"m-{n:04d}" for n in range(600)]
    await leases.ensure(many)
    await leases.acquire("a", many, 600, TTL)
    counter = StatementCounter(pg_store)
    counter.counting = True
    renewed = await leases.renew("a", TTL)
    counter.counting = False
    assert len(renewed) == 600
    assert counter.count == 1


async def test_expired_heartbeat_is_not_a_live_replica(pg_store: SqlStore) -> None:
    """Liveness is judged by the database's clock: a heartbeat past its expiry is not listed."""
    leases = SqlLeases(pg_store)
    await leases.heartbeat("a", "host-a", 101, TTL)
    await leases.heartbeat("b", "host-b", 102, TTL)
    await lapse(pg_store, "a")
    live = await leases.live_replicas()
    assert [(r.replica_id, r.host, r.pid) for r in live] == [("b", "host-b", 102)]
