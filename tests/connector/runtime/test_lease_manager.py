"""Lease managers of two or three replicas on one PostgreSQL: fair shares, handover, takeover after
a kill, a paused replica that finds its leases gone, and upkeep that stays a few statements."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from connector.config import ReplicaSettings
from connector.errors import LeaseLost, StoreError
from connector.runtime.identity import ReplicaIdentity
from connector.runtime.lease_metrics import LeaseMetrics
from connector.runtime.leases import LeaseManager
from connector.store.fence import Fence
from connector.store.leases import SqlLeases
from connector.store.sql import SqlStore
from tests.connector.runtime.pg import StatementCounter, lapse

BOXES = [f"box-{n:02d}" for n in range(10)]


class FakeHost:
    """Records the runners a manager starts and stops instead of running mailboxes."""

    def __init__(self, mailboxes: Sequence[str]) -> None:
        self.mailboxes = list(mailboxes)
        self.running: dict[str, Fence] = {}
        self.dropped: list[str] = []

    def lease_candidates(self) -> Sequence[str]:
        return self.mailboxes

    async def take(self, mailbox_id: str, fence: Fence) -> None:
        assert mailbox_id not in self.running, "a fresh runner while the old one still runs"
        self.running[mailbox_id] = fence

    async def drop(self, mailbox_id: str) -> None:
        self.running.pop(mailbox_id, None)
        self.dropped.append(mailbox_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Replica:
    def __init__(
        self, store: SqlStore, name: str, mailboxes: Sequence[str] = BOXES, ttl_seconds: float = 30
    ) -> None:
        self.host = FakeHost(mailboxes)
        self.registry = CollectorRegistry()
        self.clock = Clock()
        self.manager = LeaseManager(
            SqlLeases(store),
            ReplicaIdentity(name, f"host-{name}", 100),
            ReplicaSettings(lease_ttl_seconds=ttl_seconds),
            self.host,
            LeaseMetrics(self.registry),
            clock=self.clock,
        )

    async def round(self) -> None:
        await self.manager.round()
        await self.manager.settle()

    def metric(self, name: str) -> float:
        total = 0.0
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name:
                    total += sample.value
        return total


async def rounds(replicas: Sequence[Replica], times: int = 3) -> None:
    for _ in range(times):
        for replica in replicas:
            await replica.round()


def assert_partition(replicas: Sequence[Replica], shares: Sequence[int]) -> None:
    running = [set(r.host.running) for r in replicas]
    assert [len(r) for r in running] == list(shares)
    assert set().union(*running) == set(BOXES)
    assert sum(len(r) for r in running) == len(BOXES)  # nobody runs a mailbox twice
    for replica in replicas:
        assert set(replica.manager.held) == set(replica.host.running)


async def test_three_replicas_converge_to_their_fair_shares(pg_store: SqlStore) -> None:
    """10 mailboxes over 3 replicas settle at 4/3/3, each mailbox run by exactly one replica."""
    a, b, c = Replica(pg_store, "a"), Replica(pg_store, "b"), Replica(pg_store, "c")
    await a.round()
    assert len(a.host.running) == 10  # alone at first: it runs everything
    await rounds([a, b, c])
    assert_partition([a, b, c], [4, 3, 3])
    assert a.metric("iwd_email_leases_held") == 4


async def test_a_newcomer_gets_its_share_by_handover_after_the_batch(pg_store: SqlStore) -> None:
    """Scaling 1 -> 2: the first replica stops runners it hands over (drop), releases them, and the
    second takes them as takeovers with a new epoch."""
    a, b = Replica(pg_store, "a"), Replica(pg_store, "b")
    await a.round()
    first = dict(a.host.running)
    await rounds([b, a, b])
    assert_partition([a, b], [5, 5])
    assert sorted(a.host.dropped) == sorted(b.host.running)
    for mailbox_id, fence in b.host.running.items():
        assert fence.epoch == first[mailbox_id].epoch + 1
    assert b.metric("iwd_email_lease_takeovers_total") == 5


async def test_a_stopped_replica_releases_so_others_take_over_at_once(pg_store: SqlStore) -> None:
    """SIGTERM (scale-down 2 -> 1): after stop() the survivor's next round takes every mailbox."""
    a, b = Replica(pg_store, "a"), Replica(pg_store, "b")
    await rounds([a, b])
    await a.manager.stop()
    assert a.metric("iwd_email_leases_held") == 0
    await b.round()
    assert_partition([b], [10])


async def test_a_killed_replica_s_mailboxes_are_taken_once_its_lease_lapsed(pg_store: SqlStore) -> None:
    """kill -9: no release; once a's TTL passed (database clock), b takes over a's mailboxes."""
    a, b = Replica(pg_store, "a"), Replica(pg_store, "b")
    await rounds([a, b])
    mine = set(a.host.running)
    await b.round()
    assert len(b.host.running) == 5  # a's leases are still live: nothing taken early
    before = b.metric("iwd_email_lease_takeovers_total")
    await lapse(pg_store, "a")
    await b.round()
    assert set(b.host.running) == set(BOXES)
    assert b.metric("iwd_email_lease_takeovers_total") - before == len(mine) == 5


async def test_a_paused_replica_finds_its_leases_lost_and_its_writes_fenced(pg_store: SqlStore) -> None:
    """SIGSTOP past the TTL, then SIGCONT: b took over meanwhile; a's next round counts the leases
    lost and stops those runners, its old fence refuses writes, and it speaks for no mailbox."""
    a, b = Replica(pg_store, "a"), Replica(pg_store, "b")
    await rounds([a, b])
    old = dict(a.host.running)
    assert all(a.manager.holds(m) for m in old)
    await lapse(pg_store, "a")
    a.clock.now += 31  # the monotonic clock ran on while a was stopped
    assert not any(a.manager.holds(m) for m in old)  # no status push before it renewed again
    await b.round()
    await a.round()
    assert a.metric("iwd_email_leases_lost_total") == 5
    assert set(a.host.dropped) >= set(old)
    assert a.host.running == {}
    assert_partition([a, b], [0, 10])
    mailbox_id, fence = next(iter(old.items()))
    with pytest.raises(LeaseLost):
        await pg_store.fenced(fence).set_cursor(mailbox_id, "INBOX", "1")
    assert a.metric("iwd_email_fenced_writes_refused_total") == 5  # the refused renewals
    a.manager.refused(mailbox_id, LeaseLost("refused"))
    assert a.metric("iwd_email_fenced_writes_refused_total") == 6


async def test_upkeep_is_a_few_statements_per_round_whatever_the_mailbox_count(pg_store: SqlStore) -> None:
    """A settled replica holding 600 leases renews them with three statements per round:
    heartbeat, one renewal UPDATE, one read of the live replicas."""
    many = [f"m-{n:04d}" for n in range(600)]
    a = Replica(pg_store, "a", many)
    await a.round()
    assert len(a.host.running) == 600
    counter = StatementCounter(pg_store)
    counter.counting = True
    await a.round()
    counter.counting = False
    assert counter.count == 3


async def test_a_replica_cut_off_from_the_database_stops_its_mailboxes_after_the_ttl(
    pg_store: SqlStore,
) -> None:
    """Partition: renewals fail; within the TTL the runners go on, past it (local clock) they stop."""
    a = Replica(pg_store, "a")
    await a.round()
    assert len(a.host.running) == 10

    async def unreachable(*_: object, **__: object) -> None:
        raise StoreError("store replica_heartbeat failed: connection refused")

    a.manager.leases.heartbeat = unreachable  # type: ignore[method-assign]  # the link is cut
    a.clock.now += 10
    await a.manager.upkeep()
    assert len(a.host.running) == 10  # still within the TTL
    a.clock.now += 25
    await a.manager.upkeep()
    await a.manager.settle()
    assert a.host.running == {} and a.metric("iwd_email_leases_lost_total") == 10


async def test_a_refused_write_stops_that_mailbox_once(pg_store: SqlStore) -> None:
    """The runner reports LeaseLost: the mailbox stops, is counted lost once, refusals counted each."""
    a = Replica(pg_store, "a")
    await a.round()
    a.manager.refused("box-03", LeaseLost("refused"))
    a.manager.refused("box-03", LeaseLost("refused again"))
    await a.manager.settle()
    assert "box-03" not in a.host.running and a.host.dropped == ["box-03"]
    assert a.metric("iwd_email_leases_lost_total") == 1
    assert a.metric("iwd_email_fenced_writes_refused_total") == 2


async def test_a_database_that_stops_answering_does_not_hold_the_mailboxes(pg_store: SqlStore) -> None:
    """Partition without an error (statements hang): the round gives up when the lease's TTL ends on
    the local clock, and the replica stops its mailboxes."""
    a = Replica(pg_store, "a", ttl_seconds=0.3)  # a round is given up after one TTL
    await a.round()

    async def hang(*_: object, **__: object) -> None:
        await asyncio.sleep(3600)

    a.manager.leases.heartbeat = hang  # type: ignore[method-assign]
    a.clock.now += 0.31  # by the time the round gives up, the TTL has run out locally
    await a.manager.upkeep()
    await a.manager.settle()
    assert a.host.running == {} and a.metric("iwd_email_leases_lost_total") == 10


async def test_slow_runner_start_never_delays_the_next_renewal(pg_store: SqlStore) -> None:
    """Starting runners (slow under load, or queued behind stopping ones) happens beside the rounds:
    a round returns while they start, and the next one renews every lease in time."""
    a = Replica(pg_store, "a")
    gate = asyncio.Event()
    started: list[str] = []

    async def slow_take(mailbox_id: str, fence: Fence) -> None:
        await gate.wait()
        started.append(mailbox_id)

    a.host.take = slow_take  # type: ignore[method-assign]
    await asyncio.wait_for(a.manager.round(), 30)  # returns with all ten runners still starting
    assert len(a.manager.held) == 10 and started == []
    await asyncio.wait_for(a.manager.round(), 30)
    assert a.metric("iwd_email_leases_lost_total") == 0 and len(a.manager.held) == 10
    gate.set()
    await a.manager.settle()
    assert sorted(started) == BOXES
