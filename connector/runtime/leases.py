"""The lease manager: this replica's heartbeat, its mailbox leases, and fair shares among replicas.

Each round (every `renew_seconds`) costs a few statements whatever the number of mailboxes: one
heartbeat, one renewal of every lease held, one read of the live replicas, and, only when this
replica holds less or more than its share, one acquisition or one release. Leases that did not
come back from the renewal were lost (this replica was paused or cut off past the TTL): their
runners stop at once. A lease won is a fresh start of that mailbox's runner under a new epoch; a
lease handed over to a newcomer is released only after its runner finished its current batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from connector.config import ReplicaSettings
from connector.errors import ConnectorError, LeaseLost
from connector.runtime.balance import fair_share, to_release
from connector.runtime.identity import ReplicaIdentity
from connector.runtime.lease_metrics import LeaseMetrics
from connector.runtime.services import BackgroundLoop
from connector.store.fence import Fence
from connector.store.leases import Acquired, SqlLeases

log = structlog.get_logger("connector.leases")

FORGET_DEAD_AFTER_SECONDS = 3600.0


class LeaseHost(Protocol):
    """What the lease manager runs mailboxes with (the Daemon)."""

    def lease_candidates(self) -> Sequence[str]:
        """The mailboxes this replica may run (configured, inbound enabled)."""
        ...

    async def take(self, mailbox_id: str, fence: Fence) -> None:
        """Starts a fresh runner whose writes carry `fence`."""
        ...

    async def drop(self, mailbox_id: str) -> None:
        """Stops the mailbox's runner after its current batch (its connection closes)."""
        ...


class LeaseManager:
    name = "leases"

    def __init__(
        self,
        leases: SqlLeases,
        identity: ReplicaIdentity,
        settings: ReplicaSettings,
        host: LeaseHost,
        metrics: LeaseMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.identity = identity
        self.settings = settings
        self.host = host
        self.metrics = metrics
        self.clock = clock
        self.held: dict[str, Fence] = {}
        self._valid_until = 0.0  # local clock: held leases are surely ours before this
        self._handovers: dict[str, asyncio.Task[None]] = {}
        self._drops: dict[str, asyncio.Task[None]] = {}  # runners of lost leases, stopping
        self._starts: set[asyncio.Task[None]] = set()  # runners of leases won, starting
        self._ensured: frozenset[str] = frozenset()
        self._lock = asyncio.Lock()  # one round at a time (the loop, a reload)
        self._loop = BackgroundLoop(self.name)

    @property
    def me(self) -> str:
        return self.identity.replica_id

    @property
    def ttl(self) -> float:
        return self.settings.lease_ttl_seconds

    def runnable(self, mailbox_id: str) -> Fence | None:
        """The lease to start a runner under: held and not being given up (a reload in the middle
        of a handover or a loss must not start a runner the release then leaves without a lease)."""
        if mailbox_id in self._handovers or mailbox_id in self._drops:
            return None
        return self.held.get(mailbox_id)

    def holds(self, mailbox_id: str) -> bool:
        """True while this replica surely holds the mailbox: the lease is ours and its TTL, counted
        on the local clock from before the last renewal was sent, has not run out (a paused
        replica wakes up past it and so does nothing before it renewed again)."""
        return mailbox_id in self.held and self.clock() < self._valid_until

    # ------------------------------------------------------------------ the round

    async def start(self) -> None:
        """The first round wins this replica's share; its runners start beside the renewal loop."""
        with contextlib.suppress(ConnectorError):  # housekeeping only
            await self.leases.forget_expired(FORGET_DEAD_AFTER_SECONDS)
        await self.round()
        self._loop.start(self._run())

    async def _run(self) -> None:
        while not self._loop.stopping.is_set():
            await self._loop.pause(self.settings.renew_every_seconds)
            if self._loop.stopping.is_set():
                return
            await self.upkeep()

    async def upkeep(self) -> None:
        """One round that never raises: cut off from the database past the TTL (on the local
        clock), this replica stops every mailbox, since it can no longer know it holds them."""
        try:  # a database that stops answering (a partition) must not hold the round forever; a
            # slow round (a busy machine) is let finish: its renewal tells whether the leases held
            await asyncio.wait_for(self.round(), self.ttl)
        except (ConnectorError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, ConnectorError) else "timeout"
            log.warning("lease_round_failed", replica=self.me, error=str(exc) or code, code=code)
            if self.held and self.clock() >= self._valid_until:
                self._lose(list(self.held), "renewal failed past the TTL")
        except Exception:  # the loop must outlive a bug in one round
            log.exception("lease_round_crashed", replica=self.me)

    async def round(self) -> None:
        """One upkeep round: heartbeat, renew, lose what lapsed, then move towards the fair share."""
        async with self._lock:
            started = self.clock()
            candidates = list(self.host.lease_candidates())
            self.metrics.candidates.set(len(candidates))
            if frozenset(candidates) != self._ensured:
                await self.leases.ensure(candidates)
                self._ensured = frozenset(candidates)
            await self.leases.heartbeat(self.me, self.identity.host, self.identity.pid, self.ttl)
            renewed = await self.leases.renew(self.me, self.ttl)
            self._valid_until = started + self.ttl
            gone = [m for m, f in self.held.items() if renewed.get(m) != f.epoch]
            for mailbox_id in gone:  # the renewal is a fenced write too, and it was refused
                self.metrics.fenced.labels(mailbox_id).inc()
            if gone:
                self._lose(gone, "not renewed: the lease lapsed or was taken over")
            unknown = [m for m in renewed if m not in self.held]  # e.g. a restart with a fixed id
            if unknown:
                await self.leases.release(self.me, unknown)
            live = [r.replica_id for r in await self.leases.live_replicas()]
            share = fair_share(live, self.me, len(candidates))
            settled = [m for m in self.held if m not in self._handovers]
            if len(settled) > share:
                for mailbox_id in to_release(settled, share):
                    self._hand_over(mailbox_id)
            elif len(settled) < share and not self._handovers:
                free = [c for c in candidates if c not in self.held and c not in self._drops]
                await self._acquire(free, share - len(settled))
            self.metrics.held.set(len(self.held))

    async def _acquire(self, candidates: list[str], wanted: int) -> None:
        for got in await self.leases.acquire(self.me, candidates, wanted, self.ttl):
            self._start(got.mailbox_id, self._won(got))

    def _won(self, got: Acquired) -> Fence:
        fence = Fence(got.mailbox_id, self.me, got.epoch, self.ttl)
        self.held[got.mailbox_id] = fence
        if got.previous_owner is not None:
            self.metrics.takeovers.labels(got.mailbox_id).inc()
        log.info(
            "lease_acquired",
            mailbox=got.mailbox_id,
            replica=self.me,
            epoch=got.epoch,
            previous_owner=got.previous_owner,
        )
        return fence

    # ------------------------------------------------------------------ one shot (`run --once`)

    async def take_free(self) -> dict[str, Fence]:
        """`run --once` beside running replicas: every mailbox nobody holds, none that a live
        replica serves. No heartbeat (running replicas must not count a one-shot in their fair
        share) and no rebalancing; the leases are only renewed until `stop()` gives them back."""
        candidates = list(self.host.lease_candidates())
        await self.leases.ensure(candidates)
        started = self.clock()
        for got in await self.leases.acquire(self.me, candidates, len(candidates), self.ttl):
            self._won(got)
        self._valid_until = started + self.ttl
        self._loop.start(self._renew_only())
        return dict(self.held)

    async def _renew_only(self) -> None:
        while not self._loop.stopping.is_set():
            await self._loop.pause(self.settings.renew_every_seconds)
            if self._loop.stopping.is_set():
                return
            started = self.clock()
            try:
                renewed = await asyncio.wait_for(self.leases.renew(self.me, self.ttl), self.ttl)
            except (ConnectorError, TimeoutError) as exc:  # the fenced writes refuse what lapsed
                log.warning("lease_round_failed", replica=self.me, error=str(exc) or "timeout")
                continue
            self._valid_until = started + self.ttl
            gone = [m for m, f in self.held.items() if renewed.get(m) != f.epoch]
            if gone:  # as in a full round: the runner finishes its batch (refused if too late), stops
                self._lose(gone, "not renewed: the lease lapsed or was taken over")

    def _start(self, mailbox_id: str, fence: Fence) -> None:
        """Starts the runner beside the round, never inside it: building runners (and waiting
        for the daemon's lock behind stopping ones) must not delay the next renewal, nor be cut
        off half-way when a round gives up."""

        async def start() -> None:
            try:
                await self.host.take(mailbox_id, fence)
            except Exception:  # one mailbox failing to start must not stop the others
                log.exception("lease_take_failed", mailbox=mailbox_id)

        task = asyncio.create_task(start(), name=f"take:{mailbox_id}")
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    # ------------------------------------------------------------------ giving up

    def _hand_over(self, mailbox_id: str) -> None:
        """Rebalancing: the runner finishes its batch, then the lease is released for another."""

        async def hand_over() -> None:
            try:
                await self.host.drop(mailbox_id)
                if self.held.get(mailbox_id) is not None:
                    await self.leases.release(self.me, [mailbox_id])
                    self.held.pop(mailbox_id, None)
                    log.info("lease_released", mailbox=mailbox_id, replica=self.me, reason="rebalance")
            except ConnectorError as exc:  # the lease lapses by itself; others take it then
                log.warning("lease_release_failed", mailbox=mailbox_id, error=str(exc))
                self.held.pop(mailbox_id, None)
            finally:
                self._handovers.pop(mailbox_id, None)
                self.metrics.held.set(len(self.held))

        self._handovers[mailbox_id] = asyncio.create_task(hand_over(), name=f"handover:{mailbox_id}")

    def _lose(self, mailbox_ids: list[str], reason: str) -> None:
        """Forgets leases that are no longer ours and stops their runners (no release: not ours)."""
        for mailbox_id in mailbox_ids:
            if self.held.pop(mailbox_id, None) is None:
                continue
            self.metrics.lost.labels(mailbox_id).inc()
            log.warning("lease_lost", mailbox=mailbox_id, replica=self.me, reason=reason)
            if mailbox_id in self._handovers:
                continue  # its runner is stopping already
            if mailbox_id not in self._drops:
                task = asyncio.create_task(self.host.drop(mailbox_id), name=f"lost:{mailbox_id}")
                self._drops[mailbox_id] = task
                task.add_done_callback(functools.partial(self._dropped, mailbox_id))
        self.metrics.held.set(len(self.held))

    def _dropped(self, mailbox_id: str, _: asyncio.Task[None]) -> None:
        self._drops.pop(mailbox_id, None)

    def refused(self, mailbox_id: str, exc: LeaseLost) -> None:
        """A fenced write was refused (the runner reports it): count it, stop the mailbox once."""
        self.metrics.fenced.labels(mailbox_id).inc()
        if mailbox_id in self.held:
            self._lose([mailbox_id], f"a fenced write was refused: {exc}")

    def count_refused(self, mailbox_id: str) -> None:
        """A write refused outside a runner (a status push, a reply's claim)."""
        self.metrics.fenced.labels(mailbox_id).inc()

    async def forget(self, mailbox_ids: Sequence[str]) -> None:
        """Mailboxes removed from the configuration: their leases go back at once."""
        mine = [m for m in mailbox_ids if self.held.pop(m, None) is not None]
        if mine:
            await self.leases.release(self.me, mine)
        self.metrics.held.set(len(self.held))

    async def settle(self) -> None:
        """Waits for runners starting and stopping (tests, a clean stop)."""
        for task in [*self._starts, *self._handovers.values(), *self._drops.values()]:
            with contextlib.suppress(Exception):
                await task

    async def stop(self) -> None:
        """A clean stop (after the runners finished): every lease goes back at once."""
        await self._loop.stop()
        await self.settle()
        try:
            released = await self.leases.leave(self.me)
        except ConnectorError as exc:  # they lapse after the TTL instead
            log.warning("lease_leave_failed", replica=self.me, error=str(exc))
            return
        finally:
            await self.leases.close()
        self.held.clear()
        self.metrics.held.set(0)
        log.info("replica_left", replica=self.me, released=released)
