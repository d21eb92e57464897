"""The running daemon: one APScheduler job per mailbox, push loops where a provider can push,
and a clean stop that lets the current message finish and commit.

A slow or failing mailbox never delays the others: each has its own job (which only starts a
cycle in the mailbox's runner, see `connector.runtime.runner`) and its own lock; a global semaphore bounds
how many cycles run at once. Mailboxes can be added, changed and removed while running (hot
reload): a removed or changed mailbox's job stops taking new cycles and its in-flight cycle
finishes and commits before its connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from connector.config import ConnectorSettings, MailboxSettings
from connector.errors import ConnectorError
from connector.faults import CrashPoints
from connector.iwd.client import IWDClient
from connector.metrics import ConnectorMetrics
from connector.runtime.runner import (
    STOP_GRACE_SECONDS,
    MailboxRunner,
    ProviderFactory,
)
from connector.runtime.services import Service
from connector.status import MailboxState, StatusBoard
from connector.store.fence import Fence
from connector.store.types import Store
from connector.sync.pipeline import CycleReport, MailboxSync, OnDelivered

if TYPE_CHECKING:
    from connector.runtime.leases import LeaseManager

log = structlog.get_logger("connector.runtime.daemon")

__all__ = ["Daemon", "MailboxRunner", "ProviderFactory"]


class Daemon:
    def __init__(
        self,
        settings: ConnectorSettings,
        store: Store,
        iwd: IWDClient,
        *,
        provider_factory: ProviderFactory,
        board: StatusBoard | None = None,
        services: list[Service] | None = None,
        metrics: ConnectorMetrics | None = None,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        self.settings = settings
        self.on_delivered = on_delivered  # the outbox's auto-acknowledgement hook
        self.services: list[Service] = list(services or [])
        self.store = store
        self.iwd = iwd
        self.provider_factory = provider_factory
        self.board = board or StatusBoard()
        self.metrics = metrics or ConnectorMetrics(self.board)
        self.stop_event = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.max_concurrent_mailboxes)
        self.runners: dict[str, MailboxRunner] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.crash = CrashPoints.from_env()
        self._reconfigure = asyncio.Lock()
        # several replicas on PostgreSQL (connector/runtime/leases.py): runners only for leases held
        self.leases: LeaseManager | None = None
        self._mailbox_stops: dict[str, asyncio.Event] = {}  # per leased mailbox: finish the batch, stop

    @property
    def push_tasks(self) -> list[asyncio.Task[None]]:
        return [r.flags.push_task for r in self.runners.values() if r.flags.push_task is not None]

    def _make_runner(self, box: MailboxSettings, fence: Fence | None = None) -> MailboxRunner | None:
        if box.sends_via is None:
            self.board.set_outbound_state(box.id, MailboxState.DISABLED)
        if not box.inbound_enabled:
            self.board.set_inbound_state(box.id, MailboxState.DISABLED)
            return None
        provider = self.provider_factory(box)
        store = self.store
        if fence is not None:  # every write of this runner checks the lease it was started under
            store = getattr(store, "fenced")(fence)  # noqa: B009 - only SqlStore is ever fenced
        sync = MailboxSync(
            box,
            provider,
            store,
            self.iwd,
            quarantine_max_attempts=self.settings.quarantine_max_attempts,
            stop=self.stop_event,
            crash=self.crash,
            on_delivered=self.on_delivered,
        )
        if fence is not None:  # a handover lets the current batch finish, then no new one starts
            sync.wind_down = self._mailbox_stops.setdefault(box.id, asyncio.Event())
            sync.wind_down.clear()
        runner = MailboxRunner(box, provider, sync, self.board, self.slots, self.metrics)
        if self.leases is not None:
            runner.on_lease_lost = self.leases.refused
        return runner

    def _build_runners(self) -> None:
        for box in self.settings.mailboxes:
            runner = self._runner_or_status(box)
            if runner is not None:
                self.runners[box.id] = runner

    def _runner_or_status(self, box: MailboxSettings, fence: Fence | None = None) -> MailboxRunner | None:
        """A mailbox whose provider cannot be built is reported and skipped; the others run."""
        try:
            return self._make_runner(box, fence)
        except (ConnectorError, NotImplementedError, ValueError) as exc:
            self.board.inbound_failed(box.id, datetime.now(UTC), exc)
            log.warning("mailbox_not_started", mailbox=box.id, error=str(exc))
            return None

    async def _seed(self, mailbox_id: str) -> None:
        """deliveredTotal and quarantine size from the store, so they survive restarts.
        deliveredTotal counts IWD items, not ledger rows (aliases share their first copy's item)."""
        try:
            total = await self.store.ledger_count_items(mailbox_id)
            quarantined = await self.store.quarantine_count(mailbox_id)
        except ConnectorError as exc:
            log.warning("status_seed_failed", mailbox=mailbox_id, error=str(exc))
            return
        self.board.set_delivered_total(mailbox_id, total)
        self.board.set_quarantined(mailbox_id, quarantined)

    async def run_once(self) -> dict[str, CycleReport | None]:
        """One cycle per mailbox, concurrently; returns each mailbox's report (None on failure).
        Beside running replicas (PostgreSQL) only the mailboxes nobody holds, each under its lease."""
        if self.leases is None:
            self._build_runners()
        else:
            await self._build_leased_runners(self.leases)
        try:
            results = await asyncio.gather(*(r.poll() for r in self.runners.values()))
            return dict(zip(self.runners, results, strict=True))
        finally:
            await self._close_providers()
            if self.leases is not None:
                await self.leases.stop()

    async def _build_leased_runners(self, leases: LeaseManager) -> None:
        held = await leases.take_free()
        skipped = [m for m in self.lease_candidates() if m not in held]
        if skipped:
            log.info("run_once_skipped", mailboxes=skipped, reason="served by a running replica")
        for box in self.settings.mailboxes:
            if box.id in skipped:
                continue
            runner = self._runner_or_status(box, held.get(box.id))
            if runner is not None:
                self.runners[box.id] = runner

    def _schedule(self, runner: MailboxRunner, delay_ms: int = 0) -> None:
        assert self.scheduler is not None
        interval = runner.mailbox.poll_interval_seconds
        self.scheduler.add_job(
            runner.poll_due,
            "interval",
            seconds=interval,
            id=runner.mailbox.id,
            max_instances=1,
            coalesce=True,
            jitter=min(interval * 0.1, 10.0),
            misfire_grace_time=int(max(interval, 1)),
            next_run_time=datetime.now(UTC) + timedelta(milliseconds=delay_ms),
            replace_existing=True,
        )

    async def start(self) -> None:
        if self.leases is None:
            self._build_runners()
            for box in self.settings.mailboxes:
                await self._seed(box.id)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        for i, runner in enumerate(self.runners.values()):
            self._schedule(runner, 50 * i)  # staggered first run
            runner.start_push()
        self.scheduler.start()
        if self.leases is not None:  # runners come and go with the leases won and lost
            await self.leases.start()
        for service in self.services:
            await service.start()
        log.info("daemon_started", mailboxes=list(self.runners), services=[s.name for s in self.services])

    # ------------------------------------------------------------ admin actions

    def poll_now(self, mailbox_id: str) -> bool:
        runner = self.runners.get(mailbox_id)
        if self.scheduler is None or runner is None or runner.flags.paused:
            return False
        try:
            self.scheduler.modify_job(mailbox_id, next_run_time=datetime.now(UTC))
        except JobLookupError:
            return False
        return True

    def pause(self, mailbox_id: str) -> bool:
        """No new cycles until resumed; the one in flight finishes."""
        runner = self.runners.get(mailbox_id)
        if runner is None:
            return False
        if not runner.flags.paused:
            runner.flags.paused = True
            self.board.set_paused(mailbox_id, True)
            log.info("mailbox_paused", mailbox=mailbox_id)
        return True

    def resume(self, mailbox_id: str) -> bool:
        runner = self.runners.get(mailbox_id)
        if runner is None:
            return False
        if runner.flags.paused:
            runner.flags.paused = False
            self.board.set_paused(mailbox_id, False)
            log.info("mailbox_resumed", mailbox=mailbox_id)
        self.poll_now(mailbox_id)
        return True

    async def retry_quarantine(
        self, mailbox_id: str, entry_id: int | None = None, *, as_unparseable: bool = False
    ) -> tuple[int, int]:
        """Retries quarantined mail now, under the mailbox's lock; returns (tried, delivered).
        `as_unparseable` delivers it flagged unparseable without converting it again (the console)."""
        runner = self.runners.get(mailbox_id)
        if runner is None:
            raise KeyError(mailbox_id)
        tried = delivered = 0
        async with runner.exclusive():
            for entry in await self.store.quarantine_list(mailbox_id):
                if entry_id is not None and entry.id != entry_id:
                    continue
                tried += 1
                delivered += int(await runner.sync.retry_quarantined(entry, as_unparseable=as_unparseable))
            self.board.set_quarantined(mailbox_id, await self.store.quarantine_count(mailbox_id))
        log.info("quarantine_retried", mailbox=mailbox_id, tried=tried, delivered=delivered)
        return tried, delivered

    async def restart_mailbox(self, mailbox_id: str) -> bool:
        """Cancel a stuck cycle and rebuild the provider connection (the watchdog's action)."""
        runner = self.runners.get(mailbox_id)
        if runner is None:
            return False
        await runner.restart(self.provider_factory)
        self.metrics.stalls.labels(mailbox_id).inc()
        return True  # the job's next run (within one interval) uses the new connection

    # ------------------------------------------------------------ hot reload

    async def apply_settings(self, new: ConnectorSettings) -> dict[str, list[str]]:
        """Adds, replaces and removes mailboxes to match `new`; the others are not touched.
        Returns what changed. Settings other than `mailboxes` need a restart (logged)."""
        async with self._reconfigure:
            old = {b.id: b for b in self.settings.mailboxes}
            want = {b.id: b for b in new.mailboxes}
            added = [i for i in want if i not in old]
            removed = [i for i in old if i not in want]
            changed = [i for i in want if i in old and want[i] != old[i]]
            outside = [
                name
                for name in type(new).model_fields
                if name not in ("mailboxes", "secrets") and getattr(new, name) != getattr(self.settings, name)
            ]
            if outside:
                log.warning("reload_needs_restart", settings=outside)
            if added or changed or removed:  # the same list otherwise: the status reporter derives
                # configuration views only for a new one (config_source iwd reloads every 30 s)
                self.settings = self.settings.model_copy(update={"mailboxes": list(new.mailboxes)})
            for mailbox_id in removed + changed:
                await self._remove(mailbox_id, forget=mailbox_id in removed)
            if self.leases is not None and removed:
                await self.leases.forget(removed)
            for mailbox_id in changed + added:
                await self._add(want[mailbox_id])
            result = {"added": added, "changed": changed, "removed": removed}
            if added or changed or removed:
                log.info("mailboxes_reloaded", **result)
            return result

    async def _add(self, box: MailboxSettings, fence: Fence | None = None) -> None:
        if self.leases is not None and fence is None:
            held = self.leases.runnable(box.id)
            if held is None:  # another replica's, nobody's yet, or being given up: the lease
                return  # manager decides
            fence = held
        runner = self._runner_or_status(box, fence)
        await self._seed(box.id)
        if runner is None:
            return
        self.runners[box.id] = runner
        if self.scheduler is not None:
            self._schedule(runner)
            runner.start_push()

    async def _remove(self, mailbox_id: str, *, forget: bool) -> None:
        runner = self.runners.pop(mailbox_id, None)
        if self.scheduler is not None:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(mailbox_id)
        if runner is not None:
            await runner.close()
        if forget:
            self.board.remove(mailbox_id)
            self.metrics.forget(mailbox_id)

    # ------------------------------------------------------------ leases (LeaseHost)

    def lease_candidates(self) -> list[str]:
        return [b.id for b in self.settings.mailboxes if b.inbound_enabled]

    async def take(self, mailbox_id: str, fence: Fence) -> None:
        """A lease won: a fresh runner for the mailbox, polling at once."""
        async with self._reconfigure:
            if self.stop_event.is_set():
                return
            try:
                box = self.settings.mailbox(mailbox_id)
            except KeyError:
                return
            await self._remove(mailbox_id, forget=False)  # a runner of an earlier epoch, if any
            await self._add(box, fence)
            self.board.touch(mailbox_id)  # the reporter skipped it while another replica held it

    async def drop(self, mailbox_id: str) -> None:
        """A lease lost or handed over: the runner finishes its current batch, then stops."""
        stop = self._mailbox_stops.get(mailbox_id)
        if stop is not None:
            stop.set()
        async with self._reconfigure:  # only the bookkeeping under the lock: many drops at once
            runner = self.runners.pop(mailbox_id, None)  # (a rebalance) close side by side
            if self.scheduler is not None:
                with contextlib.suppress(JobLookupError):
                    self.scheduler.remove_job(mailbox_id)
        if runner is not None:
            await runner.close()
        self.board.remove(mailbox_id)
        self.metrics.forget(mailbox_id)

    # ------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Current messages finish and commit; nothing new starts; then connections close."""
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:  # one service failing to stop must not keep the others running
                log.exception("service_stop_failed", service=service.name)
        for runner in self.runners.values():
            await runner.stop_push()  # a push-started cycle finishes its current message
        for runner in self.runners.values():
            try:
                await asyncio.wait_for(runner.lock.acquire(), STOP_GRACE_SECONDS)
            except TimeoutError:
                log.warning("stop_timeout", mailbox=runner.mailbox.id)
        await self._close_providers()
        if self.leases is not None:  # after the runners committed: others take over at once
            await self.leases.stop()
        log.info("daemon_stopped")

    async def _close_providers(self) -> None:
        for runner in self.runners.values():
            with contextlib.suppress(Exception):
                await runner.provider.close()
