"""Replies among replicas: one replica claims each reply, a live replica's reply in flight is never
taken by another's recovery, and a replica whose claim lapsed sends nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text

from connector.outbox.worker import OutboxWorker
from connector.sandbox import create_app
from connector.status import StatusBoard
from connector.store.leases import SqlLeases
from connector.store.outbox import SqlOutbox
from connector.store.sql import SqlStore
from connector.store.types import OutboxState
from tests.connector.outbox.conftest import Clock, settings_for
from tests.connector.outbox.smtp_peer import Rules, SmtpPeer
from tests.connector.outbox.test_sending import reply
from tests.connector.runtime.pg import pg_url  # noqa: F401  (fixture)
from tests.connector.test_store import store_url  # noqa: F401  (the sqlite/postgresql fixture)
from tests.peers.sandbox import asgi_client

TTL = 30.0


@asynccontextmanager
async def replica_worker(url: str, smtp: SmtpPeer, name: str) -> AsyncIterator[OutboxWorker]:
    """One replica's outbox worker on the shared database, alive (heartbeat) as `name`."""
    store = await SqlStore.open(url)
    iwd = asgi_client(create_app(":memory:"))
    outbox = SqlOutbox(store, owner=name, claim_ttl_seconds=TTL)
    worker = OutboxWorker(
        settings_for(smtp), outbox, iwd, StatusBoard(), clock=Clock(), rand=lambda: 0.0, exclusive=False
    )
    await SqlLeases(store).heartbeat(name, f"host-{name}", 1, TTL)
    try:
        yield worker
    finally:
        await worker.dispatcher.close()
        await iwd.aclose()
        await store.close()


def hold_first_rcpt(smtp: SmtpPeer) -> tuple[threading.Event, threading.Event]:
    """The SMTP server stalls on the first RCPT until `release` is set (a slow server)."""
    reached, release = threading.Event(), threading.Event()

    def rcpt(_address: str) -> str | None:
        if not reached.is_set():
            reached.set()
            release.wait(30)
        return None

    smtp.rules = Rules(rcpt=rcpt)
    return reached, release


async def _lapse_claims(url: str, owner: str) -> None:
    """As if `owner` had been paused past its TTL: its claims and heartbeat expired (PostgreSQL)."""
    await _run_sql(
        url,
        f"UPDATE outbox SET claim_expires_at = now() - interval '1 second' WHERE claim_owner = '{owner}'",
        f"UPDATE replicas SET expires_at = now() - interval '1 second' WHERE replica_id = '{owner}'",
    )


async def _in_thread(wait: Callable[[float], bool]) -> None:
    assert await asyncio.to_thread(wait, 30)


async def test_a_second_replica_starting_never_resends_a_reply_in_flight(
    pg_url: str,  # noqa: F811
    smtp: SmtpPeer,
) -> None:
    """Issue #13's bug: while replica a waits on a slow RCPT, replica b starts (recovery, then a
    tick); the customer still gets the reply exactly once and it ends `sent`."""
    reached, release = hold_first_rcpt(smtp)
    async with replica_worker(pg_url, smtp, "a") as a, replica_worker(pg_url, smtp, "b") as b:
        await a.submit("r-1", reply(1))
        sending = asyncio.create_task(a.tick())
        await _in_thread(reached.wait)
        await b.recover()
        second = asyncio.create_task(b.tick())
        await asyncio.sleep(0)  # b's tick runs up to its first wait before the server answers a
        release.set()
        await asyncio.gather(sending, second)
        await b.tick()
        entry = await a.outbox.outbox_get("r-1")
    assert entry is not None and entry.state is OutboxState.SENT and entry.claim_owner == "a"
    assert list(smtp.by_message_id().values()) == [1]


async def test_replicas_claim_disjoint_replies(store_url: str, smtp: SmtpPeer) -> None:  # noqa: F811
    """Due replies claimed by one replica are not handed to another until released."""
    async with replica_worker(store_url, smtp, "a") as a, replica_worker(store_url, smtp, "b") as b:
        for n in range(6):
            await a.submit(f"r-{n}", reply(n))
        now = a.clock()
        got_a = await a.outbox.outbox_claim_due(now, 4)
        got_b = await b.outbox.outbox_claim_due(now, 10)
        assert [e.id for e in got_a] == ["r-0", "r-1", "r-2", "r-3"]
        assert [e.id for e in got_b] == ["r-4", "r-5"]
        assert await b.outbox.outbox_claim("r-0", now) is None  # a's claim stands
        assert await a.outbox.outbox_release_claims() == 4
        assert [e.id for e in await b.outbox.outbox_claim_due(now, 10)] == [f"r-{n}" for n in range(6)]


async def test_a_replica_whose_claim_lapsed_mid_send_does_not_transfer_the_message(
    pg_url: str,  # noqa: F811
    smtp: SmtpPeer,
) -> None:
    """a stalls before DATA past its TTL (paused); b recovers and sends the reply; when a goes on, its
    claim is refused right before DATA, so the customer receives the reply once, from b."""
    reached, release = hold_first_rcpt(smtp)
    async with replica_worker(pg_url, smtp, "a") as a, replica_worker(pg_url, smtp, "b") as b:
        refused: list[str] = []
        a.on_refused = refused.append
        await a.submit("r-1", reply(1))
        sending = asyncio.create_task(a.tick())
        await _in_thread(reached.wait)
        await _lapse_claims(pg_url, "a")
        await b.recover()  # a's claim lapsed and a is not alive: b settles the row (before DATA)
        settled = await b.outbox.outbox_get("r-1")
        assert settled is not None and settled.state is OutboxState.RETRYING
        release.set()
        await sending
        assert refused == ["support"]
        await b.tick()
        entry = await b.outbox.outbox_get("r-1")
    assert entry is not None and entry.state is OutboxState.SENT and entry.claim_owner == "b"
    assert list(smtp.by_message_id().values()) == [1]


async def test_recovery_takes_only_lapsed_claims_of_replicas_that_are_gone(
    pg_url: str,  # noqa: F811
    smtp: SmtpPeer,
) -> None:
    """A `sending` row is settled by another replica only when its claim lapsed AND its owner has no
    live heartbeat; a live owner's row, or a dead owner's unexpired claim, is left alone."""
    async with replica_worker(pg_url, smtp, "a") as a, replica_worker(pg_url, smtp, "b") as b:
        await a.submit("live-owner", reply(1))
        await a.outbox.outbox_claim("live-owner", a.clock())
        async with replica_worker(pg_url, smtp, "dead") as dead:
            for reply_id, n in (("dead-fresh", 2), ("dead-lapsed", 3)):
                await dead.submit(reply_id, reply(n))
                await dead.outbox.outbox_claim(reply_id, dead.clock())
        await _run_sql(
            pg_url,
            "UPDATE replicas SET expires_at = now() - interval '1 second' WHERE replica_id = 'dead'",
            "UPDATE outbox SET claim_expires_at = now() - interval '1 second' "
            "WHERE id IN ('dead-lapsed', 'live-owner')",
        )
        await b.recover()
        states = {}
        for reply_id in ("live-owner", "dead-fresh", "dead-lapsed"):
            found = await b.outbox.outbox_get(reply_id)
            assert found is not None
            states[reply_id] = found.state
    assert states == {
        "live-owner": OutboxState.SENDING,
        "dead-fresh": OutboxState.SENDING,
        "dead-lapsed": OutboxState.RETRYING,
    }


async def _run_sql(url: str, *statements: str) -> None:
    store = await SqlStore.open(url)
    try:
        async with store._writer.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await store.close()
