"""One mailbox in the running daemon: its lock, its cycles, its push loop, its restart.

Everything that touches the mailbox's connection goes through the runner's lock, so a poll, an
IDLE wait, a quarantine retry and a watchdog restart never overlap. An IDLE wait is the only
holder that may last a whole interval, so whoever asks for the lock (`exclusive`) wakes it and it
gives the lock up at once: a due poll goes before IDLE, never behind it. Cycles run in the
runner's own tasks: the interval job only starts one (`poll_due`), so the scheduler never waits
behind a cycle, never skips a tick for one still running, and has none to cancel at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from connector.activity import Delivery
from connector.config import MailboxSettings
from connector.errors import ConnectorError, LeaseLost
from connector.metrics import ConnectorMetrics
from connector.runtime.peer_calls import PUSH_PROBE_SECONDS, watched
from connector.status import MailboxState, Peer, StatusBoard, error_code, peer_of
from connector.sync.pipeline import CycleReport, MailboxSync, cycle_summary
from providers.base import InboundProvider, PushCapable

log = structlog.get_logger("connector.runtime.daemon")

PUSH_RETRY_SECONDS = 5.0
MAX_IDLE_SECONDS = 540.0  # re-issue IDLE well before servers' 10-30 minute limits
STOP_GRACE_SECONDS = 30.0
RESTART_GRACE_SECONDS = 5.0

ProviderFactory = Callable[[MailboxSettings], InboundProvider]


@dataclass
class _CycleEvents:
    """Feeds status and metrics as things happen (pipeline.SyncEvents, peer_calls.PeerWatcher):
    per message, per batch for the backlog, and per failed or answered call to a peer."""

    board: StatusBoard
    metrics: ConnectorMetrics
    seen: int = 0
    done: int = 0
    last_progress: float = field(default_factory=time.monotonic)  # the watchdog reads it

    def fetched(self, mailbox_id: str, count: int) -> None:
        self.seen += count
        if count:
            self.last_progress = time.monotonic()
            self.board.set_inbound_backlog(mailbox_id, self.backlog)

    def settled(self, mailbox_id: str, count: int) -> None:
        self.done += count
        self.board.set_inbound_backlog(mailbox_id, self.backlog)

    def delivered(self, mailbox_id: str, lag_seconds: float | None, detail: Delivery | None = None) -> None:
        self.last_progress = time.monotonic()
        self.board.inbound_delivered(mailbox_id, lag_seconds)
        if detail is not None:
            self.board.activity.delivered(mailbox_id, detail)
        self.metrics.item_delivered(mailbox_id, lag_seconds)

    def quarantined(self, mailbox_id: str) -> None:
        self.last_progress = time.monotonic()
        self.metrics.quarantined.labels(mailbox_id).inc()

    def peer_failed(self, mailbox_id: str, error: ConnectorError) -> None:
        """A failed call: the state changes now (logged once), not when the cycle gives up."""
        if self.board.inbound_fault(mailbox_id, datetime.now(UTC), error):
            last = self.board.get(mailbox_id).inbound.last_error
            log.warning(
                "mailbox_state",
                mailbox=mailbox_id,
                state=self.board.get(mailbox_id).inbound.state.value,
                peer=last.peer.value if last and last.peer else None,
                error=str(error),
                code=error.code,
            )

    def peer_answered(self, mailbox_id: str, peer: Peer) -> None:
        if self.board.inbound_peer_answered(mailbox_id, peer):
            log.info("mailbox_state", mailbox=mailbox_id, state=MailboxState.OK.value, peer=peer.value)

    @property
    def backlog(self) -> int:
        return max(self.seen - self.done, 0)


@dataclass
class _Flags:
    paused: bool = False
    closing: bool = False  # being removed or replaced: no new cycles
    restarting: bool = False  # the watchdog is cancelling a stuck cycle
    push_polling: bool = False
    cycle_task: asyncio.Task[object] | None = None
    push_task: asyncio.Task[None] | None = None
    poll_task: asyncio.Task[CycleReport | None] | None = None  # started by the interval job
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set while someone waits for the lock
    asking: int = 0  # how many wait for the lock
    polls_asking: int = 0  # how many of them are polls


class MailboxRunner:
    """Serializes everything that touches one mailbox's connection."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        provider: InboundProvider,
        sync: MailboxSync,
        board: StatusBoard,
        slots: asyncio.Semaphore,
        metrics: ConnectorMetrics | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.provider = provider
        self.sync = sync
        self.board = board
        self.slots = slots
        self.metrics = metrics or ConnectorMetrics(board)
        self.events = _CycleEvents(board, self.metrics)
        sync.events = self.events
        self.lock = asyncio.Lock()
        self.log = log.bind(mailbox=mailbox.id)
        self.last_report: CycleReport | None = None
        self.flags = _Flags()
        # several replicas: told when the database refused a write under this runner's lease
        self.on_lease_lost: Callable[[str, LeaseLost], None] | None = None

    @contextlib.asynccontextmanager
    async def exclusive(self, *, polling: bool = False) -> AsyncIterator[None]:
        """The mailbox lock; an IDLE wait holding it is woken and ends within a round trip."""
        flags = self.flags
        flags.asking += 1
        flags.polls_asking += int(polling)
        flags.wake.set()
        try:
            await self.lock.acquire()
        finally:
            flags.asking -= 1
            flags.polls_asking -= int(polling)
            if not flags.asking:
                flags.wake.clear()
        try:
            yield
        finally:
            self.lock.release()

    async def poll_due(self) -> None:
        """The interval job: starts a cycle in the runner's own task and returns at once.

        A cycle already running or waiting covers this tick. Nothing here blocks, so APScheduler
        never finds the previous run still going, and a stop has no scheduler job to cancel.
        """
        flags = self.flags
        if flags.closing or flags.paused or self.sync.stop.is_set():
            return
        running = flags.poll_task is not None and not flags.poll_task.done()
        if running or flags.cycle_task is not None or flags.polls_asking:
            return
        flags.poll_task = asyncio.create_task(self.poll(), name=f"poll:{self.mailbox.id}")

    async def poll(self) -> CycleReport | None:
        """One cycle; every failure becomes status, never an exception to the caller.

        None when nothing ran: paused, stopping, or a poll already waiting for the lock, whose
        cycle starts after this call and so covers it.
        """
        if self.flags.closing or self.flags.paused or self.sync.stop.is_set() or self.flags.polls_asking:
            return None
        async with self.exclusive(polling=True), self.slots:
            if self.sync.stop.is_set() or self.flags.closing or self.flags.paused:
                return None
            self.flags.cycle_task = asyncio.current_task()
            try:
                return await self._cycle()
            except asyncio.CancelledError:
                if not self.flags.restarting:
                    raise
                self.log.warning("cycle_cancelled", reason="watchdog restart")
                return None
            finally:
                self.flags.cycle_task = None

    async def _cycle(self) -> CycleReport | None:
        started = datetime.now(UTC)
        clock = time.monotonic()
        self.events.seen = self.events.done = 0
        self.board.inbound_polled(self.mailbox.id, started)
        try:
            with watched(self.mailbox.id, self.events):  # its IWD calls turn the state at once
                report = await self.sync.run_cycle()
        except LeaseLost as exc:  # another replica has the mailbox now: stop, write nothing more
            self.flags.closing = True
            if self.on_lease_lost is not None:
                self.on_lease_lost(self.mailbox.id, exc)
            return None
        except Exception as exc:  # a bug in one mailbox must not stop the others
            self.metrics.cycle_finished(self.mailbox.id, time.monotonic() - clock, error_code(exc))
            changed = self.board.inbound_failed(self.mailbox.id, datetime.now(UTC), exc)
            if not isinstance(exc, ConnectorError):
                self.log.exception("cycle_crashed")
            elif changed:
                last = self.board.get(self.mailbox.id).inbound.last_error
                self.log.warning(
                    "mailbox_state",
                    state=self.board.get(self.mailbox.id).inbound.state.value,
                    peer=last.peer.value if last and last.peer else None,
                    error=str(exc),
                    code=exc.code,
                )
            return None
        self.metrics.cycle_finished(self.mailbox.id, time.monotonic() - clock, None)
        try:
            quarantined = await self.sync.store.quarantine_count(self.mailbox.id)
        except ConnectorError:
            quarantined = self.board.get(self.mailbox.id).inbound.quarantined
        if self.board.inbound_succeeded(self.mailbox.id, datetime.now(UTC), quarantined):
            self.log.info("mailbox_state", state=MailboxState.OK.value)
        if report.fetched or report.quarantined:
            self.log.info("cycle_done", **cycle_summary(report))
        self.last_report = report
        return report

    async def push_loop(self) -> None:
        """Catches up with one cycle, then waits for the server to announce mail and polls at once;
        the interval job is the safety net.

        The cycle comes first (after start-up and after a watchdog restart, which starts a new
        loop): IDLE only reports mail that arrives while it runs, so mail already waiting would
        otherwise wait for the next interval. After a lost connection the provider reports a
        change on its new one, so the same holds after a reconnect.
        """
        provider = self.provider
        if not isinstance(provider, PushCapable):
            return
        timeout = min(self.mailbox.poll_interval_seconds, MAX_IDLE_SECONDS)
        folder = self.mailbox.folders[0]
        await self._push_poll()
        while not self.sync.stop.is_set() and not self.flags.closing:
            if self.flags.paused:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.sync.stop.wait(), PUSH_RETRY_SECONDS)
                continue
            try:
                async with self.lock:
                    changed = await provider.wait_for_change(folder, timeout, wake=self.flags.wake)
            except ConnectorError as exc:
                # a lost IDLE connection is an outage like a failed poll: shown now, logged once
                self.events.peer_failed(self.mailbox.id, exc)
                if peer_of(exc) is Peer.MAIL_SERVER:
                    await self._probe_until_answered(folder)  # ok again as soon as the server is
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.sync.stop.wait(), PUSH_RETRY_SECONDS)
                continue
            if changed:
                await self._push_poll()

    async def _push_poll(self) -> None:
        self.flags.push_polling = True
        try:
            await self.poll()
        finally:
            self.flags.push_polling = False

    async def _probe_until_answered(self, folder: str) -> None:
        """A short look at the folder (no IDLE) every PUSH_PROBE_SECONDS while the mail server is
        down; the first that works makes the mailbox ok again, and the cycle that follows picks up
        what came meanwhile. Connects are paced by the provider's own reconnect backoff."""
        provider = self.provider
        assert isinstance(provider, PushCapable)
        while not (self.sync.stop.is_set() or self.flags.closing or self.flags.paused):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sync.stop.wait(), PUSH_PROBE_SECONDS)
            try:
                async with self.lock:
                    changed = await provider.wait_for_change(folder, 0.0)
            except ConnectorError as exc:
                if peer_of(exc) is Peer.MAIL_SERVER:
                    continue
                self.events.peer_failed(self.mailbox.id, exc)  # e.g. refused credentials
                return
            self.events.peer_answered(self.mailbox.id, Peer.MAIL_SERVER)
            if changed:  # a new connection: catch up with what came during the outage
                await self._push_poll()
            return

    def start_push(self) -> None:
        if isinstance(self.provider, PushCapable) and not (
            self.mailbox.provider == "imap" and self.mailbox.imap and not self.mailbox.imap.idle
        ):
            self.flags.push_task = asyncio.create_task(self.push_loop(), name=f"push:{self.mailbox.id}")

    async def stop_push(self, *, force: bool = False) -> None:
        """Ends the push loop; one that is running a cycle is let finish it unless `force`."""
        task = self.flags.push_task
        self.flags.push_task = None
        if task is None:
            return
        if force or not self.flags.push_polling:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, STOP_GRACE_SECONDS)  # cancels it if the cycle hangs

    async def restart(self, factory: ProviderFactory) -> None:
        """The watchdog's cure for a cycle that never ends: cancel it, rebuild the connection."""
        self.flags.restarting = True
        try:
            task = self.flags.cycle_task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), RESTART_GRACE_SECONDS)
            await self.stop_push(force=True)
            old = self.provider
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), RESTART_GRACE_SECONDS)
            self.provider = factory(self.mailbox)
            self.sync.provider = self.provider
        finally:
            self.flags.restarting = False
        self.start_push()

    async def close(self) -> None:
        """Waits for the in-flight cycle (it commits what it delivered), then closes the connection."""
        self.flags.closing = True
        await self.stop_push()
        try:
            await asyncio.wait_for(self.lock.acquire(), STOP_GRACE_SECONDS)
        except TimeoutError:
            self.log.warning("close_timeout", waited_seconds=STOP_GRACE_SECONDS)
        else:
            self.lock.release()
        with contextlib.suppress(Exception):
            await self.provider.close()
