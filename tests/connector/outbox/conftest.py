"""Fixtures for reply tests: a real SMTP server, a private Dovecot, an in-process sandbox IWD."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from connector.config import ConnectorSettings
from connector.iwd import IWDClient
from connector.outbox.worker import OutboxWorker
from connector.sandbox import create_app
from connector.status import StatusBoard
from connector.store.outbox import SqlOutbox
from connector.store.sql import SqlStore
from tests.connector.outbox.smtp_peer import SmtpPeer
from tests.peers.dovecot import Dovecot
from tests.peers.sandbox import ASGI_URL, asgi_client, inbound_payload, raw_http


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


class Clock:
    """A clock tests move by hand (retries without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    settings: ConnectorSettings
    store: SqlStore
    outbox: SqlOutbox
    iwd: IWDClient
    app: Starlette
    worker: OutboxWorker
    clock: Clock
    board: StatusBoard

    async def inbound_item(self, n: int, mailbox: str = "support") -> dict[str, Any]:
        created = await self.iwd.create_email(inbound_payload(n, mailbox_id=mailbox))
        return await self.iwd.get_email(created.id)

    async def queue_in_iwd(self, body: dict[str, Any]) -> str:
        async with raw_http(self.app) as http:
            resp = await http.post("/iwd/v3/emails", json={"direction": "outbound", **body})
            assert resp.status_code == 201, resp.text
            return str(resp.json()["id"])

    async def drain(self, rounds: int = 10) -> None:
        """Ticks until nothing is due (the worker's loop, without its waits)."""
        for _ in range(rounds):
            await self.worker.tick()
            if not await self.outbox.outbox_due(self.clock(), 1) and not await self.iwd.list_outbound():
                return


def settings_for(
    smtp: SmtpPeer,
    *,
    dovecot: Dovecot | None = None,
    user: tuple[str, str] | None = None,
    box_extra: dict[str, Any] | None = None,
    **top: Any,
) -> ConnectorSettings:
    box: dict[str, Any] = {
        "id": "support",
        "address": "support@example.com",
        "display_name": "Example Support",
        "provider": "maildir",
        "maildir": {"path": tempfile.mkdtemp(prefix="outbox-md-")},
        "smtp": smtp.smtp_block(),
    }
    if dovecot is not None and user is not None:
        box.update(
            provider="imap",
            imap={
                "host": "127.0.0.1",
                "port": dovecot.plain_port,
                "security": "starttls",
                "username": user[0],
                "password": user[1],
                "ca_file": dovecot.ca_file,
                "timeout_seconds": 10,
            },
        )
    box.update(box_extra or {})
    data: dict[str, Any] = {
        "iwd": {"url": ASGI_URL, "api_key": "k", "ccid": "c"},
        "mailboxes": [box],
        "outbox": {"retry_schedule_seconds": [60, 300], "retry_jitter": 0, "retry_horizon_seconds": 3600},
    }
    data.update(top)
    return ConnectorSettings.model_validate(data)


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Rig] = []

    async def make(settings: ConnectorSettings) -> Rig:
        store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path}/store-{len(made)}.db")
        app = create_app(":memory:")
        iwd = asgi_client(app)
        outbox = SqlOutbox(store)
        clock = Clock()
        board = StatusBoard()
        worker = OutboxWorker(settings, outbox, iwd, board, clock=clock, rand=lambda: 0.0)
        rig = Rig(settings, store, outbox, iwd, app, worker, clock, board)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.worker.dispatcher.close()
        await rig.iwd.aclose()
        await rig.store.close()
