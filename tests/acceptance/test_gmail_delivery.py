"""End to end: Gmail emulator → GmailInboundProvider → MailboxSync → sandbox IWD, real SQLite store."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.config import ConnectorSettings, MailboxSettings
from connector.errors import AuthFailed, Throttled
from connector.runtime.daemon import Daemon
from connector.sandbox import SandboxIWD, control_of, create_app
from connector.status import MailboxState, StatusBoard
from connector.store import open_store
from connector.store.types import Store
from connector.sync.delivery import external_id
from connector.sync.pipeline import MailboxSync
from providers.gmail import GmailInboundProvider
from providers.gmail.api import RetryPolicy
from providers.registry import build_inbound
from tests.mailfactory import make_message
from tests.peers.authority import FakeAuthority
from tests.peers.gmail_emulator import GmailEmulator
from tests.peers.sandbox import asgi_client, iwd_settings, real_client

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_wait_seconds=0.5)


@pytest.fixture
def emu() -> Iterator[GmailEmulator]:
    with GmailEmulator() as server:
        yield server


@pytest.fixture(scope="module")
def authority() -> Iterator[FakeAuthority]:
    with FakeAuthority() as auth:
        yield auth


def gmail_box(emu: GmailEmulator, oauth: dict[str, Any] | None = None, **extra: Any) -> MailboxSettings:
    return MailboxSettings.model_validate(
        {
            "id": "gmail-support",
            "address": emu.address,
            "provider": "gmail",
            "post_action": "mark_read",
            "gmail": {"oauth": oauth or {"kind": "static", "token": "test-token"}, "api_endpoint": emu.url},
        }
        | extra
    )


def refresh_oauth(authority: FakeAuthority, refresh_token: str | None = None) -> dict[str, Any]:
    return {
        "kind": "google_refresh",
        "client_id": authority.client_id,
        "client_secret": authority.client_secret,
        "refresh_token": refresh_token or authority.refresh_token,
        "token_uri": authority.google_token_uri,
        "ca_file": authority.ca_file,
    }


@dataclass
class Rig:
    emu: GmailEmulator
    box: MailboxSettings
    sync: MailboxSync
    app: Any
    # (message id, its item existed in IWD) for every id in a post-action request
    acted: list[tuple[str, bool]] = field(default_factory=list)

    def item_count(self) -> int:
        return int(control_of(self.app).store.count_items())

    def watch_post_actions(self, _method: str, path: str, body: Any) -> None:
        if path.endswith(("/batchModify", "/modify", "/trash")):
            ids = body.get("ids", []) if isinstance(body, dict) and "ids" in body else [path.split("/")[-2]]
            store = control_of(self.app).store
            for msg_id in ids:
                ext = external_id(self.box.id, "INBOX", msg_id)
                self.acted.append((msg_id, store.find_by_external_id(ext) is not None))


async def make_rig(emu: GmailEmulator, box: MailboxSettings, **provider_args: Any) -> AsyncIterator[Rig]:
    workdir = tempfile.mkdtemp(prefix="gmail-e2e-", dir="/tmp")
    store = await open_store(f"sqlite+aiosqlite:///{workdir}/state.db")
    app = create_app(":memory:")
    iwd = asgi_client(app)
    provider = GmailInboundProvider(box, retry=FAST, **provider_args)
    rig = Rig(emu, box, MailboxSync(box, provider, store, iwd), app)
    emu.on_request = rig.watch_post_actions
    try:
        yield rig
    finally:
        emu.on_request = None
        await provider.close()
        await iwd.aclose()
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def rig(emu: GmailEmulator) -> AsyncIterator[Rig]:
    async for r in make_rig(emu, gmail_box(emu)):
        yield r


async def test_every_message_becomes_one_item_and_is_marked_read_only_after(rig: Rig) -> None:
    ids = [rig.emu.add_message(make_message(n)) for n in range(30)]
    report = await rig.sync.run_cycle()
    assert report.delivered == 30 and rig.item_count() == 30
    assert all("UNREAD" not in rig.emu.labels_of(i) for i in ids)
    assert sorted(i for i, _ in rig.acted) == sorted(ids) and all(existed for _, existed in rig.acted)
    again = await rig.sync.run_cycle()
    assert again.delivered == 0 and rig.item_count() == 30
    later = [rig.emu.add_message(make_message(100 + n)) for n in range(3)]
    third = await rig.sync.run_cycle()
    assert third.delivered == 3 and rig.item_count() == 33 and third.resynced_folders == []
    assert all("UNREAD" not in rig.emu.labels_of(i) for i in later)


async def test_expired_history_resyncs_without_duplicates(rig: Rig) -> None:
    for n in range(10):
        rig.emu.add_message(make_message(n))
    await rig.sync.run_cycle()
    rig.emu.add_message(make_message(50))
    rig.emu.expire_history()
    report = await rig.sync.run_cycle()
    assert report.resynced_folders == ["INBOX"] and report.delivered == 1
    assert rig.item_count() == 11


async def test_retry_after_is_honoured_and_lasting_throttling_loses_nothing(rig: Rig) -> None:
    ids = [rig.emu.add_message(make_message(n)) for n in range(5)]
    rig.emu.fail_next(429, retry_after="0.3", count=2, path_contains="/messages/")
    started = time.monotonic()
    report = await rig.sync.run_cycle()
    assert time.monotonic() - started >= 0.3 and report.delivered == 5 and rig.item_count() == 5
    more = [rig.emu.add_message(make_message(10 + n)) for n in range(5)]
    rig.emu.fail_next(429, retry_after="0.05", count=30, path_contains="/messages/")
    with pytest.raises(Throttled) as info:
        await rig.sync.run_cycle()
    assert info.value.retry_after_seconds == 0.05
    rig.emu.faults.clear()
    assert rig.item_count() == 5 and all("UNREAD" in rig.emu.labels_of(i) for i in more)
    final = await rig.sync.run_cycle()
    assert final.delivered == 5 and rig.item_count() == 10
    assert all("UNREAD" not in rig.emu.labels_of(i) for i in ids + more)


async def test_rejected_token_is_refreshed_and_the_cycle_recovers(
    emu: GmailEmulator, authority: FakeAuthority
) -> None:
    """The emulator stops accepting the access token (expired): a 401, one refresh at the token
    endpoint, and the same cycle goes on; nothing is lost."""
    authority.on_token = emu.tokens.add
    emu.tokens.clear()
    try:
        async for rig in make_rig(emu, gmail_box(emu, refresh_oauth(authority))):
            emu.add_message(make_message(1))
            await rig.sync.run_cycle()
            posts = authority.count("POST", "/token")
            emu.tokens.clear()  # the access token has expired at Google
            emu.add_message(make_message(2))
            report = await rig.sync.run_cycle()
            assert report.delivered == 1 and rig.item_count() == 2
            assert authority.count("POST", "/token") == posts + 1
    finally:
        authority.on_token = None


async def test_unrecoverable_401_ends_as_auth_required(
    emu: GmailEmulator, authority: FakeAuthority, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """Every token the authority issues is refused by Gmail (access revoked): after one refresh
    the mailbox is auth_required in the status board, and no token appears in the error."""
    emu.add_message(make_message(1))
    box = gmail_box(emu, refresh_oauth(authority))
    settings = ConnectorSettings.model_validate(
        {"iwd": iwd_settings(sandbox_iwd.url).model_dump() | {"api_key": "sandbox-key"}, "mailboxes": [box]}
    )
    board = StatusBoard()
    async with real_client(sandbox_iwd) as iwd:
        reports = await Daemon(settings, store, iwd, provider_factory=build_inbound, board=board).run_once()
    inbound = board.get("gmail-support").inbound
    assert reports["gmail-support"] is None and inbound.state is MailboxState.AUTH_REQUIRED
    assert inbound.last_error is not None and "401" in inbound.last_error.message
    assert not any(token in inbound.last_error.message for token in authority.issued)
    assert sandbox_iwd.control.store.count_items() == 0


async def test_revoked_refresh_token_is_auth_failed(emu: GmailEmulator, authority: FakeAuthority) -> None:
    emu.add_message(make_message(1))
    async for rig in make_rig(emu, gmail_box(emu, refresh_oauth(authority, "rt-revoked"))):
        with pytest.raises(AuthFailed) as info:
            await rig.sync.run_cycle()
        assert info.value.code == "auth_required" and "rt-revoked" not in str(info.value)
        assert rig.item_count() == 0
