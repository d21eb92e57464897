"""Two daemons on one PostgreSQL, in one process: each runs only the mailboxes it holds, every
message becomes one item, the status and replicas views tell who runs what, and a clean stop
hands everything to the survivor."""

from __future__ import annotations

import mailbox
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from connector.iwd import IWDClient
from connector.sandbox import SandboxIWD
from connector.store.sql import SqlStore
from tests.acceptance.status_rig import Running, maildir_box, running, settings_for
from tests.mailfactory import make_message

MAILBOXES = [f"mb-{n}" for n in range(4)]


@asynccontextmanager
async def replica(name: str, pg_url: str, sandbox: SandboxIWD, root: Path) -> AsyncIterator[Running]:
    boxes = [maildir_box(m, root / m) for m in MAILBOXES]
    settings = settings_for(sandbox, boxes, store={"url": pg_url}, replicas={"replica_id": name})
    async with AsyncExitStack() as stack:
        store = await SqlStore.open(pg_url)
        stack.push_async_callback(store.close)
        iwd = await stack.enter_async_context(IWDClient(settings.iwd))
        yield await stack.enter_async_context(running(settings, store, iwd))


async def settle(*replicas: Running) -> None:
    """Lease rounds until the shares are reached (what the renewal loop does every few seconds)."""
    for _ in range(2):
        for r in replicas:
            assert r.daemon.leases is not None
            await r.daemon.leases.round()
            await r.daemon.leases.settle()


async def test_two_daemons_share_the_mailboxes_and_deliver_every_message_once(
    pg_url: str, sandbox_iwd: SandboxIWD, tmp_path: Path
) -> None:
    """2 replicas x 4 mailboxes: 2 each, disjoint; 12 messages -> 12 items; status rows and
    /api/v1/replicas name the owner; after b stops, a runs all four."""
    for m in MAILBOXES:
        mailbox.Maildir(tmp_path / m, create=True)
    async with replica("a", pg_url, sandbox_iwd, tmp_path) as a:
        assert a.daemon.leases is not None
        await a.daemon.leases.settle()  # runners start beside the lease rounds
        assert sorted(a.daemon.runners) == MAILBOXES  # alone: everything
        async with replica("b", pg_url, sandbox_iwd, tmp_path) as b:
            await settle(a, b)
            assert len(a.daemon.runners) == len(b.daemon.runners) == 2
            assert sorted([*a.daemon.runners, *b.daemon.runners]) == MAILBOXES
            for n, m in enumerate(MAILBOXES):
                for k in range(3):
                    mailbox.Maildir(tmp_path / m).add(make_message(10 * n + k, to=f"{m}@example.com"))
            for r in (a, b):
                for runner in list(r.daemon.runners.values()):
                    await runner.poll()
            assert sandbox_iwd.control.store.count_items() == 12
            for m in MAILBOXES:
                items, _ = sandbox_iwd.control.store.list_items(mailbox_id=m)
                assert len(items) == 3
            async with a.http() as http:
                status = (await http.get("/api/v1/status")).json()
                view = (await http.get("/api/v1/replicas")).json()
            owners = {row["mailboxId"]: row["owner"] for row in status["mailboxes"]}
            assert owners == {m: ("a" if m in a.daemon.runners else "b") for m in MAILBOXES}
            assert all(row["leaseExpiresAt"] for row in status["mailboxes"])
            held = {r["replicaId"]: r["mailboxes"] for r in view["replicas"]}
            assert held == {"a": sorted(a.daemon.runners), "b": sorted(b.daemon.runners)}
        await settle(a)  # b stopped cleanly (released): a takes its mailboxes at once
        assert sorted(a.daemon.runners) == MAILBOXES
