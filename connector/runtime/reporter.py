"""StatusReporter: every mailbox's status and public configuration to IWD, on change and as a heartbeat.

It reads the StatusBoard and the daemon's settings (no IO of its own but the PUTs), sends a burst of
changes as one PUT per mailbox (coalescing window), and keeps what it could not send for the next
round: IWD being down delays reports, it never blocks a mailbox or the daemon. A round looks only
at the mailboxes the board marked changed and at configuration after a reload, so its cost follows
the changes, not the number of mailboxes; the heartbeat sends everything.
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

# The daemon's current mailboxes. A reload replaces the list (Daemon.apply_settings), so a list
# that is the same object as last time has the same configuration: views are derived only on a new one.
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
        self.holds = holds  # several replicas: only the lease holder speaks for a mailbox
        self.iwd = iwd
        self.mailboxes = mailboxes
        self.settings = settings
        self.metrics = metrics
        self.sent_status: dict[str, str] = {}
        self.sent_config: dict[str, str] = {}
        self._listed: Sequence[MailboxSettings] | None = None  # the list `_views` were derived from
        self._views: dict[str, tuple[dict[str, Any], str]] = {}  # mailbox -> (public view, its key)
        self._config_due: set[str] = set()  # views not sent yet: new, changed by a reload, or failed
        self._status_due: set[str] = set()  # statuses whose PUT failed, retried without a new change
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
            self.board.changed.clear()  # before the flush: a change made while a PUT is on the wire
            try:  # wakes the next round instead of waiting for the heartbeat
                await self.flush(force=heartbeat_due)
            except Exception:  # the reporter must outlive any bug in one round
                log.exception("status_report_crashed")
            wait = self.settings.heartbeat_seconds - (time.monotonic() - self._last_heartbeat)
            if self.failing:
                wait = min(wait, self._backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.board.changed.wait(), max(wait, 0.05))
            if self.settings.coalesce_seconds and not self.failing:
                await self._loop.pause(self.settings.coalesce_seconds)

    async def flush(self, *, force: bool = False) -> bool:
        """Sends what changed (everything when `force`); True when IWD took all of it.

        Only the mailboxes the board marked changed, those whose last PUT failed, and configuration
        views re-derived after a reload are looked at: an idle flush costs nothing per mailbox."""
        changed = self.board.take_changed()
        self._refresh_views(force)
        status_ids = self._status_candidates(changed, force)
        config_ids = set(self._views) if force else self._config_candidates(status_ids)
        ok = True
        for mailbox_id in sorted(config_ids):
            ok = await self._send_config(mailbox_id, force) and ok
        for mailbox_id in sorted(status_ids):
            ok = await self._send_status(mailbox_id, force) and ok
        if force and ok:
            self._last_heartbeat = time.monotonic()
        self._settle(ok)
        return ok

    def _refresh_views(self, force: bool) -> None:
        """Re-derives the public configuration views when the mailbox list is a new object (a
        reload), or on the heartbeat as a safety net; marks the views not yet sent as due."""
        listed = self.mailboxes()
        if listed is self._listed and not force:
            return
        self._listed = listed
        views: dict[str, tuple[dict[str, Any], str]] = {}
        for box in listed:
            view = public_view(box)
            views[box.id] = (view, json.dumps(view, sort_keys=True))
        for stale in set(self.sent_config) - set(views):
            self.sent_config.pop(stale, None)
        self._views = views
        self._config_due = {i for i in self._config_due if i in views} | {
            i for i, (_, key) in views.items() if self.sent_config.get(i) != key
        }

    def _status_candidates(self, changed: set[str] | None, force: bool) -> set[str]:
        """Marked changed, or failed last time; every mailbox on the board when forced or when the
        board cannot say which changed (then fingerprints of mailboxes gone are dropped too)."""
        if force or changed is None:
            every = {status.mailbox_id for status in self.board.all()}
            for stale in set(self.sent_status) - every:
                self.sent_status.pop(stale, None)
            return every | self._status_due
        return changed | self._status_due

    def _config_candidates(self, status_ids: set[str]) -> set[str]:
        """Views due (new, changed, failed) plus any mailbox about to report status whose view this
        replica never sent: one it just gained from another replica, which held it until now."""
        unsent = {i for i in status_ids if i in self._views and i not in self.sent_config}
        return self._config_due | unsent

    async def _send_config(self, mailbox_id: str, force: bool) -> bool:
        self._config_due.discard(mailbox_id)
        if not self._ours(mailbox_id):
            self.sent_config.pop(mailbox_id, None)  # sent again once this replica holds it
            return True
        view, key = self._views[mailbox_id]
        sent, due = self.sent_config, self._config_due
        return await self._send(
            "config", mailbox_id, self.iwd.put_mailbox_config, view, key, sent, due, force
        )

    async def _send_status(self, mailbox_id: str, force: bool) -> bool:
        self._status_due.discard(mailbox_id)
        status = self.board.find(mailbox_id)
        if status is None or not self._ours(mailbox_id):
            self.sent_status.pop(mailbox_id, None)  # gone, or sent again once this replica holds it
            return True
        body = status.to_json()
        sent, due = self.sent_status, self._status_due
        put = self.iwd.put_mailbox_status
        return await self._send("status", mailbox_id, put, body, _fingerprint(body), sent, due, force)

    async def _send(
        self,
        kind: str,
        mailbox_id: str,
        call: Any,
        body: dict[str, Any],
        key: str,
        sent: dict[str, str],
        due: set[str],
        force: bool,
    ) -> bool:
        """PUTs `body` unless IWD already has it; a failed PUT stays due for the next flush."""
        if not force and sent.get(mailbox_id) == key:
            return True
        if await self._put(kind, mailbox_id, call, body):
            sent[mailbox_id] = key
            return True
        due.add(mailbox_id)  # retried by the next flush, changed or not
        return False

    def _ours(self, mailbox_id: str) -> bool:
        """Several replicas: only the lease holder speaks for a mailbox, checked right before the PUT."""
        return self.holds is None or self.holds(mailbox_id)

    async def _put(self, kind: str, mailbox_id: str, call: Any, body: dict[str, Any]) -> bool:
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
