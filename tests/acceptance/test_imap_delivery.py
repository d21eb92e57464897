"""End to end: Dovecot → ImapInboundProvider → MailboxSync → sandbox IWD (in-process), real SQLite store."""

from __future__ import annotations

import asyncio
import imaplib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from connector.config import ConnectorSettings, MailboxSettings
from connector.errors import ProviderUnavailable
from connector.runtime.daemon import Daemon
from connector.sandbox import SandboxIWD, control_of, create_app
from connector.status import MailboxState, StatusBoard
from connector.store import open_store
from connector.store.types import Store
from connector.sync.pipeline import MailboxSync
from providers.imap import ImapInboundProvider
from providers.registry import build_inbound
from tests.peers.dovecot import Dovecot, imap_mailbox, sample_message
from tests.peers.sandbox import asgi_client, iwd_settings, real_client


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


@dataclass
class Rig:
    dovecot: Dovecot
    user: tuple[str, str]
    box: MailboxSettings
    provider: ImapInboundProvider
    sync: MailboxSync
    app: Any
    store: Store

    def item_count(self) -> int:
        return int(control_of(self.app).store.count_items())

    def seen_uids(self) -> list[int]:
        client = imaplib.IMAP4("127.0.0.1", self.dovecot.plain_port)
        client.login(*self.user)
        client.select("INBOX")
        _, data = client.uid("SEARCH", "SEEN")
        client.logout()
        return [int(x) for x in (data[0] or b"").split()]


@pytest.fixture
async def rig(dovecot: Dovecot) -> AsyncIterator[Rig]:
    user = dovecot.add_user()
    workdir = tempfile.mkdtemp(prefix="imap-e2e-", dir="/tmp")
    box = imap_mailbox(dovecot, user, mailbox_id="support", post_action="mark_read")
    store = await open_store(f"sqlite+aiosqlite:///{workdir}/state.db")
    app = create_app(":memory:")
    iwd = asgi_client(app)
    provider = ImapInboundProvider(box)
    sync = MailboxSync(box, provider, store, iwd)
    try:
        yield Rig(dovecot, user, box, provider, sync, app, store)
    finally:
        await provider.close()
        await iwd.aclose()
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_thousand_messages_become_exactly_one_item_each(rig: Rig) -> None:
    """1,000 messages → 1,000 items, all marked \\Seen after commit; a second cycle adds nothing."""
    rig.dovecot.deliver(rig.user[0], [sample_message(i) for i in range(1000)])
    report = await rig.sync.run_cycle()
    assert report.delivered == 1000 and rig.item_count() == 1000
    again = await rig.sync.run_cycle()
    assert again.delivered == 0 and rig.item_count() == 1000
    assert len(rig.seen_uids()) == 1000


async def test_idle_wakes_the_cycle_and_the_item_exists_within_two_seconds(rig: Rig) -> None:
    """A message appended while the provider idles is an IWD item less than 2 s later."""
    await rig.sync.run_cycle()
    waiter = asyncio.create_task(rig.provider.wait_for_change("INBOX", 10))
    await asyncio.sleep(0)
    started = time.monotonic()
    rig.dovecot.deliver(rig.user[0], [sample_message(1)])
    assert await asyncio.wait_for(waiter, 5)
    await rig.sync.run_cycle()
    assert rig.item_count() == 1 and time.monotonic() - started < 2


async def test_uidvalidity_change_creates_no_duplicates(rig: Rig) -> None:
    """After a UIDVALIDITY change the folder is replayed and the ledger creates zero duplicate items."""
    rig.dovecot.deliver(rig.user[0], [sample_message(i) for i in range(20)])
    await rig.sync.run_cycle()
    rig.dovecot.doveadm("mailbox", "update", "-u", rig.user[0], "--uid-validity", "777", "INBOX")
    rig.dovecot.deliver(rig.user[0], [sample_message(100)])
    report = await rig.sync.run_cycle()
    assert report.resynced_folders == ["INBOX"]
    assert rig.item_count() == 21


async def test_dovecot_restart_loses_nothing(rig: Rig) -> None:
    """Mail delivered across a Dovecot kill/restart all becomes items once the server is back."""
    rig.dovecot.deliver(rig.user[0], [sample_message(i) for i in range(10)])
    await rig.sync.run_cycle()
    rig.dovecot.kill()
    try:
        rig.dovecot.deliver(rig.user[0], [sample_message(50 + i) for i in range(5)])
    finally:
        rig.dovecot.start()
    try:
        await rig.sync.run_cycle()
    except ProviderUnavailable:
        await rig.sync.run_cycle()
    assert rig.item_count() == 15
    assert len(rig.seen_uids()) == 15


async def test_wrong_ca_shows_a_clear_tls_error_in_status_and_in_iwd(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """A mailbox whose CA did not sign Dovecot's certificate is `error` with a TLS message an
    administrator can act on, in the status board and in the status IWD holds."""
    user = dovecot.add_user()
    box = imap_mailbox(dovecot, user, mailbox_id="wrong-ca", ca_file=dovecot.wrong_ca_file)
    settings = ConnectorSettings.model_validate(
        {
            "iwd": iwd_settings(sandbox_iwd.url).model_dump() | {"api_key": "sandbox-key"},
            "mailboxes": [box],
        }
    )
    board = StatusBoard()
    async with real_client(sandbox_iwd) as iwd:
        reports = await Daemon(settings, store, iwd, provider_factory=build_inbound, board=board).run_once()
        inbound = board.get("wrong-ca").inbound
        await iwd.put_mailbox_status("wrong-ca", board.get("wrong-ca").to_json())
        held = {m["mailboxId"]: m for m in await iwd.list_mailboxes()}["wrong-ca"]
    assert reports["wrong-ca"] is None
    assert inbound.state is MailboxState.ERROR
    assert inbound.last_error is not None and "TLS certificate verify failed" in inbound.last_error.message
    assert "TLS certificate verify failed" in held["status"]["inbound"]["lastError"]["message"]
    assert user[1] not in str(held)


async def test_a_due_poll_ends_idle_instead_of_waiting_behind_it(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """With IDLE on and a 60 s interval, a poll that falls due while the push loop idles runs its
    cycle at once; it does not wait for IDLE's timeout, and IDLE resumes after it."""
    user = dovecot.add_user()
    box = imap_mailbox(dovecot, user, mailbox_id="idler").model_copy(update={"poll_interval_seconds": 60})
    settings = ConnectorSettings.model_validate(
        {"iwd": iwd_settings(sandbox_iwd.url).model_dump() | {"api_key": "sandbox-key"}, "mailboxes": [box]}
    )
    async with real_client(sandbox_iwd) as iwd:
        daemon = Daemon(settings, store, iwd, provider_factory=build_inbound)
        await daemon.start()
        try:
            runner = daemon.runners["idler"]

            def idling() -> bool:
                flags = runner.flags
                return runner.lock.locked() and flags.cycle_task is None and not flags.push_polling

            deadline = time.monotonic() + 20
            while not idling():
                assert time.monotonic() < deadline, "the push loop never started idling"
                await asyncio.sleep(0.05)
            report = await asyncio.wait_for(runner.poll(), 20)  # IDLE's own timeout is 60 s
            assert report is not None
            dovecot.deliver(user[0], [sample_message(i) for i in range(3)])  # IDLE is back and reports these

            async def arrived() -> bool:
                return len([i async for i in iwd.iter_emails(mailbox_id="idler")]) == 3

            deadline = time.monotonic() + 20
            while not await arrived():
                assert time.monotonic() < deadline, "mail delivered after the poll never arrived"
                await asyncio.sleep(0.05)
        finally:
            await daemon.stop()
