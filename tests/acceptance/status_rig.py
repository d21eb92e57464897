"""A running daemon in this process, wired exactly like `email-connector run` (runtime.app.Runtime)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from connector.api.server import ApiServer
from connector.config import ConnectorSettings
from connector.errors import IWDUnavailable
from connector.iwd import IWDClient
from connector.runtime.app import Runtime
from connector.runtime.daemon import Daemon, ProviderFactory
from connector.sandbox import SandboxIWD
from connector.status import StatusBoard
from connector.store.types import Store
from tests.peers.sandbox import iwd_settings

FAST_STATUS = {
    "heartbeat_seconds": 30,
    "coalesce_seconds": 0.05,
    "watchdog_seconds": 0.2,
    "stall_factor": 3,
    "stall_min_seconds": 0,
}


def maildir_box(mailbox_id: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "id": mailbox_id,
        "address": f"{mailbox_id}@example.com",
        "provider": "maildir",
        "maildir": {"path": str(path)},
        "poll_interval_seconds": 1,
        **extra,
    }


def settings_for(
    sandbox: SandboxIWD, boxes: list[dict[str, Any]], *, retry: float = 0.5, **top: Any
) -> ConnectorSettings:
    data: dict[str, Any] = {
        "iwd": iwd_settings(sandbox.url, max_retry_seconds=retry).model_dump() | {"api_key": sandbox.api_key},
        "http": {"host": "127.0.0.1", "port": 0},
        "status": FAST_STATUS,
        "mailboxes": boxes,
    }
    data.update(top)
    return ConnectorSettings.model_validate(data)


@dataclass
class Running:
    runtime: Runtime
    daemon: Daemon

    @property
    def board(self) -> StatusBoard:
        return self.daemon.board

    @property
    def http_url(self) -> str:
        server = next(s for s in self.daemon.services if isinstance(s, ApiServer))
        return f"http://127.0.0.1:{server.port}"

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.http_url, headers=headers, trust_env=False)


@contextlib.asynccontextmanager
async def running(
    settings: ConnectorSettings,
    store: Store,
    iwd: IWDClient,
    *,
    config_path: Path | None = None,
    provider_factory: ProviderFactory | None = None,
) -> AsyncIterator[Running]:
    rt = Runtime(settings, store, iwd, StatusBoard(), config_path=config_path)
    daemon = rt.daemon()
    if provider_factory is not None:
        daemon.provider_factory = provider_factory
    await daemon.start()
    try:
        yield Running(rt, daemon)
    finally:
        await daemon.stop()


async def wait_for(predicate: Callable[[], Awaitable[bool]], within: float = 15.0, what: str = "") -> None:
    """Polls `predicate` until true (no fixed sleeps); fails naming what it waited for."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return
        except IWDUnavailable:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {within} s: {what}")


def iwd_mailbox(sandbox: SandboxIWD, mailbox_id: str) -> dict[str, Any] | None:
    """What the sandbox IWD holds for one mailbox: {'config', 'status', ...} or None."""
    for item in sandbox.control.store.list_mailboxes():
        if item["mailboxId"] == mailbox_id:
            return item
    return None


def iwd_state(sandbox: SandboxIWD, mailbox_id: str) -> str | None:
    item = iwd_mailbox(sandbox, mailbox_id)
    status = item and item.get("status")
    return str(status["inbound"]["state"]) if status else None
