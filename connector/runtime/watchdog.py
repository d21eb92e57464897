"""Watchdog: finds mailboxes whose cycle never ends and restarts their job.

A mailbox is stalled when, for `stall_factor` × its poll interval (at least `stall_min_seconds`),
no cycle has ended (successfully or with a classified error) and the running cycle made no progress
(fetched or delivered nothing). A mailbox waiting in line for an IMAP connection or login turn
(providers.base.Queued) is not stalled: its window starts when it gets one. A mailbox that keeps
failing keeps its more telling state (auth_required, error...): stalled is only for a job that
hangs. The cure: cancel the stuck cycle (the ledger makes that safe: an interrupted delivery is
redone under the same externalId), rebuild the provider connection, poll again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from connector.config import StatusSettings
from connector.runtime.services import BackgroundLoop
from providers.base import Queued

if TYPE_CHECKING:
    from connector.runtime.daemon import Daemon

log = structlog.get_logger("connector.runtime.watchdog")


class Watchdog:
    name = "watchdog"

    def __init__(self, daemon: Daemon, settings: StatusSettings) -> None:
        self.daemon = daemon
        self.settings = settings
        self._since: dict[str, float] = {}  # when the watchdog first saw the mailbox, or last restarted it
        self._loop = BackgroundLoop(self.name)

    async def start(self) -> None:
        self._loop.start(self._run())

    async def stop(self) -> None:
        await self._loop.stop()

    def window(self, interval: float) -> float:
        return max(self.settings.stall_factor * interval, self.settings.stall_min_seconds)

    async def _run(self) -> None:
        while not self._loop.stopping.is_set():
            try:
                await self.check()
            except Exception:  # the watchdog must outlive any bug in one round
                log.exception("watchdog_crashed")
            await self._loop.pause(self.settings.watchdog_seconds)

    async def check(self) -> list[str]:
        """One look at every mailbox; returns the ids it restarted."""
        now = time.monotonic()
        restarted: list[str] = []
        for stale in set(self._since) - set(self.daemon.runners):
            del self._since[stale]
        for mailbox_id, runner in list(self.daemon.runners.items()):
            since = self._since.setdefault(mailbox_id, now)
            queued = isinstance(runner.provider, Queued) and runner.provider.queued
            if runner.flags.paused or runner.flags.closing or queued:
                self._since[mailbox_id] = now
                continue
            status = self.daemon.board.get(mailbox_id)
            ended = status.last_cycle_end_at
            ended_ago = (datetime.now(UTC) - ended).total_seconds() if ended else None
            quiet = min(
                x for x in (now - since, ended_ago, now - runner.events.last_progress) if x is not None
            )
            window = self.window(runner.mailbox.poll_interval_seconds)
            if quiet < window:
                continue
            if self.daemon.board.inbound_stalled(mailbox_id, datetime.now(UTC), quiet):
                log.warning(
                    "mailbox_state", mailbox=mailbox_id, state="stalled", quiet_seconds=round(quiet, 1)
                )
            await self.daemon.restart_mailbox(mailbox_id)
            self._since[mailbox_id] = time.monotonic()
            restarted.append(mailbox_id)
        return restarted
