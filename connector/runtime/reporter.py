"""StatusReporter: every mailbox's status and public configuration to IWD, on change and as a heartbeat.

It reads the StatusBoard and the daemon's settings (no IO of its own but the PUTs), sends a burst of
changes as one PUT per mailbox (coalescing window), and keeps what it could not send for the next
round: IWD being down delays reports, it never blocks a mailbox or the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from connector.config import MailboxSettings, StatusSettings, public_view
from connector.errors import ConnectorError
from connector.iwd.client import IWDClient
from connector.metrics import ConnectorMetrics
from connector.runtime.services import BackgroundLoop
from connector.status import StatusBoard

log = structlog.get_logger("connector.runtime.reporter")

MAX_BACKOFF_SECONDS = 10.0
STOP_FLUSH_SECONDS = 2.0

MailboxSource = Callable[[], Sequence[MailboxSettings]]


def _fingerprint(body: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in body.items() if k != "updatedAt"}, sort_keys=True, default=str)


class StatusReporter:
    name = "status-reporter"

    def __init__(
        self,
        board: StatusBoard,
        iwd: IWDClient,
        mailboxes: MailboxSource,
        settings: StatusSettings,
        metrics: ConnectorMetrics | None = None,
        *,
        holds: Callable[[str], bool] | None = None,
    ) -> None:
        self.board = board
        # several replicas: only the lease holder speaks for a mailbox, checked right before each PUT
        self.holds = holds
        self.iwd = iwd
        self.mailboxes = mailboxes
        self.settings = settings
        self.metrics = metrics
        self.sent_status: dict[str, str] = {}
        self.sent_config: dict[str, str] = {}
        self.failing = False
        self._backoff = 0.0
        self._last_heartbeat = 0.0
        self._loop = BackgroundLoop(self.name)

    async def start(self) -> None:
        self._loop.start(self._run())

    async def stop(self) -> None:
        await self._loop.stop()
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(self.flush(), STOP_FLUSH_SECONDS)  # last word, if IWD answers at once

    async def _run(self) -> None:
        while not self._loop.stopping.is_set():
            heartbeat_due = time.monotonic() - self._last_heartbeat >= self.settings.heartbeat_seconds
            try:
                await self.flush(force=heartbeat_due)
            except Exception:  # the reporter must outlive any bug in one round
                log.exception("status_report_crashed")
            wait = self.settings.heartbeat_seconds - (time.monotonic() - self._last_heartbeat)
            if self.failing:
                wait = min(wait, self._backoff)
            self.board.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.board.changed.wait(), max(wait, 0.05))
            if self.settings.coalesce_seconds and not self.failing:
                await self._loop.pause(self.settings.coalesce_seconds)

    async def flush(self, *, force: bool = False) -> bool:
        """Sends what changed (everything when `force`); True when IWD took all of it."""
        ok = True
        current = {box.id: box for box in self.mailboxes()}
        for stale in set(self.sent_config) - set(current):
            self.sent_config.pop(stale, None)
        for box in current.values():
            view = public_view(box)
            key = json.dumps(view, sort_keys=True)
            if force or self.sent_config.get(box.id) != key:
                if await self._put("config", box.id, self.iwd.put_mailbox_config, view):
                    self.sent_config[box.id] = key
                else:
                    ok = False
        statuses = self.board.all()
        for stale in set(self.sent_status) - {s.mailbox_id for s in statuses}:
            self.sent_status.pop(stale, None)
        for status in statuses:
            body = status.to_json()
            key = _fingerprint(body)
            if force or self.sent_status.get(status.mailbox_id) != key:
                if await self._put("status", status.mailbox_id, self.iwd.put_mailbox_status, body):
                    self.sent_status[status.mailbox_id] = key
                else:
                    ok = False
        if force and ok:
            self._last_heartbeat = time.monotonic()
        self._settle(ok)
        return ok

    async def _put(self, kind: str, mailbox_id: str, call: Any, body: dict[str, Any]) -> bool:
        if self.holds is not None and not self.holds(mailbox_id):
            return True  # not ours (any more): the lease holder reports it
        try:
            await call(mailbox_id, body)
        except (ConnectorError, ValueError) as exc:
            if self.metrics is not None:
                self.metrics.status_reports.labels(kind, "failed").inc()
            if not self.failing:
                log.warning("status_report_failed", kind=kind, mailbox=mailbox_id, error=str(exc))
            self.failing = True
            return False
        if self.metrics is not None:
            self.metrics.status_reports.labels(kind, "ok").inc()
        return True

    def _settle(self, ok: bool) -> None:
        if ok:
            if self.failing:
                log.info("status_report_recovered")
            self.failing = False
            self._backoff = 0.0
        else:
            self._backoff = min(max(self._backoff * 2, 0.5), MAX_BACKOFF_SECONDS)
