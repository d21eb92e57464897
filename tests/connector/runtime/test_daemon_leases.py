"""A daemon's runners under leases: a handover finishes the batch in flight; a replica paused past
its TTL writes nothing after waking (no cursor, no post-action, no item) and stops the mailbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connector.iwd import IWDClient
from connector.models import FetchResult
from connector.runtime.daemon import Daemon
from connector.runtime.identity import ReplicaIdentity
from connector.runtime.wiring import attach_leases
from connector.sandbox import SandboxIWD
from connector.store.leases import SqlLeases
from connector.store.sql import SqlStore
from providers.fake import FakeInboundProvider
from tests.acceptance.status_rig import maildir_box, settings_for
from tests.connector.runtime.pg import lapse
from tests.mailfactory import make_message

BATCH = 2


class GatedProvider(FakeInboundProvider):
    """Batches of two; the first fetch waits for the test, as a slow server would."""

    def __init__(self, raws: list[bytes]) -> None:
        super().__init__({"INBOX": raws})
        self.fetches = 0
        self.fetching = asyncio.Event()
        self.gate = asyncio.Event()

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        self.fetches += 1
        if self.fetches == 1:
            self.fetching.set()
            await self.gate.wait()
        return await super().fetch(folder, cursor, BATCH)


async def test_handover_delivers_and_commits_the_batch_in_flight_then_stops(
    pg_store: SqlStore, sandbox_iwd: SandboxIWD, tmp_path: Path
) -> None:
    """The lease is handed over while a batch is being fetched: its two messages still become items
    with their post-actions and cursor, and no further batch is fetched by this replica."""
    provider = GatedProvider([make_message(n, to="mb-1@example.com") for n in range(6)])
    settings = settings_for(sandbox_iwd, [maildir_box("mb-1", tmp_path)], replicas={"replica_id": "a"})
    async with IWDClient(settings.iwd) as iwd:
        daemon = Daemon(settings, pg_store, iwd, provider_factory=lambda _box: provider)
        attach_leases(daemon, pg_store, ReplicaIdentity("a", "host-a", 1))
        await daemon.start()
        try:
            await asyncio.wait_for(provider.fetching.wait(), 15)
            handover = asyncio.create_task(daemon.drop("mb-1"))
            await asyncio.sleep(0)  # the handover has begun and waits for the cycle
            provider.gate.set()
            await asyncio.wait_for(handover, 30)
        finally:
            await daemon.stop()
    assert sandbox_iwd.control.store.count_items() == BATCH
    assert [(folder, uid) for folder, uid, _ in provider.actions] == [("INBOX", "0"), ("INBOX", "1")]
    assert await pg_store.get_cursor("mb-1", "INBOX") == "2"
    assert provider.fetches == 1
    assert "mb-1" not in daemon.runners


async def test_a_replica_waking_after_its_ttl_writes_nothing_and_stops_the_mailbox(
    pg_store: SqlStore, sandbox_iwd: SandboxIWD, tmp_path: Path
) -> None:
    """Paused mid-fetch past the TTL while replica b took the mailbox: on waking, its first write is
    refused, so no item, no post-action and no cursor come from it; it stops the mailbox and counts
    the refusal."""
    provider = GatedProvider([make_message(n, to="mb-1@example.com") for n in range(6)])
    settings = settings_for(sandbox_iwd, [maildir_box("mb-1", tmp_path)], replicas={"replica_id": "a"})
    async with IWDClient(settings.iwd) as iwd:
        daemon = Daemon(settings, pg_store, iwd, provider_factory=lambda _box: provider)
        manager = attach_leases(daemon, pg_store, ReplicaIdentity("a", "host-a", 1))
        assert manager is not None
        await daemon.start()
        try:
            await asyncio.wait_for(provider.fetching.wait(), 15)
            runner = daemon.runners["mb-1"]
            await lapse(pg_store, "a")  # the pause outlived the TTL ...
            (taken,) = await SqlLeases(pg_store).acquire("b", ["mb-1"], 1, 30)  # ... and b took over
            provider.gate.set()  # SIGCONT: the cycle goes on with what it fetched
            await runner.poll()  # waits for the cycle in flight, then declines: the runner is closing
            await manager.settle()
        finally:
            await daemon.stop()
    assert taken.epoch == 2
    assert sandbox_iwd.control.store.count_items() == 0
    assert provider.actions == []
    assert await pg_store.get_cursor("mb-1", "INBOX") is None
    assert "mb-1" not in daemon.runners
    refused = daemon.metrics.registry.get_sample_value(
        "iwd_email_fenced_writes_refused_total", {"mailbox": "mb-1"}
    )
    assert refused is not None and refused >= 1


async def test_run_once_beside_a_running_replica_serves_only_the_mailboxes_nobody_holds(
    pg_store: SqlStore, sandbox_iwd: SandboxIWD, tmp_path: Path
) -> None:
    """`run --once` on a shared PostgreSQL: mb-1 is held by a live replica, so it is left alone; mb-2
    (free) and mb-3 (its owner's lease lapsed) get their cycle under a lease of their own, and both
    leases are free again when the one-shot ends."""
    leases = SqlLeases(pg_store)
    await leases.ensure(["mb-1", "mb-2", "mb-3"])
    await leases.acquire("live", ["mb-1"], 1, 30)
    await leases.acquire("dead", ["mb-3"], 1, 30)
    await lapse(pg_store, "dead")
    providers = {
        box: FakeInboundProvider({"INBOX": [make_message(n, to=f"{box}@example.com") for n in range(2)]})
        for box in ("mb-1", "mb-2", "mb-3")
    }
    boxes = [maildir_box(box, tmp_path / box) for box in providers]
    settings = settings_for(sandbox_iwd, boxes, replicas={"replica_id": "once"})
    async with IWDClient(settings.iwd) as iwd:
        daemon = Daemon(settings, pg_store, iwd, provider_factory=lambda box: providers[box.id])
        attach_leases(daemon, pg_store, ReplicaIdentity("once", "host-o", 1))
        results = await daemon.run_once()
    assert sorted(results) == ["mb-2", "mb-3"]
    assert all(report is not None and report.delivered == 2 for report in results.values())
    assert sandbox_iwd.control.store.count_items() == 4
    assert providers["mb-1"].actions == []
    assert await pg_store.get_cursor("mb-1", "INBOX") is None
    owners = {row.mailbox_id: row.owner for row in await leases.leases()}
    assert owners["mb-1"] == "live"
    assert owners["mb-2"] is None and owners["mb-3"] is None


async def test_a_reload_during_a_handover_starts_no_runner_for_the_mailbox_given_up(
    pg_store: SqlStore, sandbox_iwd: SandboxIWD, tmp_path: Path
) -> None:
    """Replica z hands mb-1 over (replica b joined) while a batch is in flight; a reload that changes
    mb-1 meanwhile must not start a fresh runner, which would poll after the lease went to b."""
    built: list[GatedProvider] = []

    def factory(_box: object) -> GatedProvider:
        built.append(GatedProvider([make_message(n, to="mb-1@example.com") for n in range(6)]))
        return built[-1]

    settings = settings_for(sandbox_iwd, [maildir_box("mb-1", tmp_path)], replicas={"replica_id": "z"})
    async with IWDClient(settings.iwd) as iwd:
        daemon = Daemon(settings, pg_store, iwd, provider_factory=factory)
        manager = attach_leases(daemon, pg_store, ReplicaIdentity("z", "host-z", 1))
        assert manager is not None
        await daemon.start()
        try:
            await manager.settle()  # the runner of the lease won is built
            await asyncio.wait_for(built[0].fetching.wait(), 15)
            await SqlLeases(pg_store).heartbeat("b", "host-b", 2, 30)  # b joins: z's share is 0
            await manager.round()  # the handover begins and waits for the batch in flight
            changed = settings.model_copy(deep=True)
            changed.mailboxes[0] = changed.mailboxes[0].model_copy(update={"poll_interval_seconds": 2})
            reload = asyncio.create_task(daemon.apply_settings(changed))
            await asyncio.sleep(0.1)  # the reload waits, like the handover, for the batch in flight
            built[0].gate.set()
            reloaded = await asyncio.wait_for(reload, 30)
            await asyncio.wait_for(manager.settle(), 30)
            runners_after = dict(daemon.runners)
        finally:
            await daemon.stop()
    assert reloaded["changed"] == ["mb-1"]
    assert len(built) == 1  # no second runner (and no second connection) was started
    assert runners_after == {}
    assert sandbox_iwd.control.store.count_items() == BATCH
