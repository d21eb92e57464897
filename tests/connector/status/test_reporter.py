"""StatusReporter: bursts coalesce into one PUT per mailbox, nothing unchanged is resent, IWD down waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.config import StatusSettings
from connector.iwd import IWDClient
from connector.runtime.reporter import StatusReporter
from connector.sandbox import SandboxControl, control_of, create_app
from connector.status import StatusBoard
from tests.conftest import maildir_mailbox
from tests.peers.sandbox import asgi_client


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[tuple[IWDClient, SandboxControl]]:
    app = create_app(str(tmp_path / "iwd.db"))
    async with asgi_client(app, max_retry_seconds=0) as client:
        yield client, control_of(app)


async def test_a_burst_of_changes_is_one_put_and_unchanged_status_is_not_resent(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """50 deliveries then a flush: one status PUT and one config PUT; a second flush sends nothing."""
    iwd, control = sandbox
    board = StatusBoard()
    box = maildir_mailbox(tmp_path, "burst")
    reporter = StatusReporter(board, iwd, lambda: [box], StatusSettings())
    for _ in range(50):
        board.inbound_delivered("burst", 1.0)
    assert await reporter.flush() is True
    assert await reporter.flush() is True
    assert control.requests.count("PUT", "/iwd/v3/emails/mailboxes/burst/status") == 1
    assert control.requests.count("PUT", "/iwd/v3/emails/mailboxes/burst") == 1
    stored = control.store.list_mailboxes()[0]
    assert stored["status"]["inbound"]["deliveredTotal"] == 50
    assert stored["config"]["maildir"]["path"] == str(tmp_path)


async def test_iwd_down_keeps_the_change_for_later_without_raising(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """A failed PUT returns False (no exception) and the same change is sent once IWD answers."""
    iwd, control = sandbox
    board = StatusBoard()
    board.inbound_succeeded("x", datetime.now(UTC), quarantined=2)
    reporter = StatusReporter(board, iwd, lambda: [], StatusSettings())
    control.faults.set(fail_next=10, fail_status=503)
    assert await reporter.flush() is False
    assert reporter.failing
    control.faults.reset()
    assert await reporter.flush() is True
    assert not reporter.failing
    assert control.store.list_mailboxes()[0]["status"]["inbound"]["quarantined"] == 2


async def test_heartbeat_resends_everything(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """force=True (the heartbeat) PUTs status and config even when nothing changed."""
    iwd, control = sandbox
    board = StatusBoard()
    board.get("hb")
    reporter = StatusReporter(board, iwd, lambda: [maildir_mailbox(tmp_path, "hb")], StatusSettings())
    await reporter.flush()
    await reporter.flush(force=True)
    assert control.requests.count("PUT", "/iwd/v3/emails/mailboxes/hb/status") == 2
