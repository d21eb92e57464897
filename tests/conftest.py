"""Shared fixtures: the sandbox IWD (a real HTTP server), a store, a Maildir mailbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.config import MailboxSettings
from connector.iwd import IWDClient
from connector.sandbox import SandboxIWD
from connector.store import open_store
from connector.store.types import Store
from tests.connector.outbox.smtp_peer import Rules, SmtpPeer, start_peer
from tests.peers.sandbox import real_client


@pytest.fixture(scope="session")
def sandbox_iwd_server() -> Iterator[SandboxIWD]:
    with SandboxIWD() as server:
        yield server


@pytest.fixture
def sandbox_iwd(sandbox_iwd_server: SandboxIWD) -> Iterator[SandboxIWD]:
    """The session's sandbox IWD, emptied and with no faults, for each test."""
    sandbox_iwd_server.control.reset()
    yield sandbox_iwd_server
    sandbox_iwd_server.control.reset()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpPeer]:
    """A real aiosmtpd server (STARTTLS, AUTH) for the whole run."""
    yield from start_peer()


@pytest.fixture
def smtp(smtp_server: SmtpPeer) -> Iterator[SmtpPeer]:
    """The session's SMTP server with nothing received and no rules, for each test."""
    smtp_server.received.clear()
    smtp_server.held.clear()
    smtp_server.rules = Rules()
    yield smtp_server
    smtp_server.rules = Rules()


@pytest.fixture
async def iwd(sandbox_iwd: SandboxIWD) -> AsyncIterator[IWDClient]:
    async with real_client(sandbox_iwd) as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


def maildir_mailbox(root: Path, mailbox_id: str = "mb-1", **extra: Any) -> MailboxSettings:
    data: dict[str, Any] = {
        "id": mailbox_id,
        "address": f"{mailbox_id}@example.com",
        "provider": "maildir",
        "maildir": {"path": str(root)},
        "poll_interval_seconds": 1,
    }
    data.update(extra)
    return MailboxSettings.model_validate(data)
