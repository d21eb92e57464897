"""`ConnectionBudget`: how many IMAP sessions one daemon holds open, in total and per server host,
and how fast it logs in to each host (issue #9: 5 000 mailboxes on one daemon).

Each `ImapInboundProvider` holds a `SessionTicket`. A ticket that holds a slot is either *in use*
(a fetch, a post-action, an IDLE wait: never taken away) or *parked* (the session stays open for
the next cycle, but another mailbox may need the slot). Opening a session takes a slot: at once
when the bounds allow, else by evicting the least recently parked polled mailbox's session, else
by waiting in line until a slot is released or parked. IDLE mailboxes keep theirs (they park only
for the moment between an IDLE wait and its cycle) unless they hold every slot: then waiting for a
polled mailbox would be waiting forever, and a parked IDLE session goes. Then a login token from the host's
bucket, then the connect. An evicted provider finds its session gone and reconnects next time.

A ticket that already holds its slot never asks for another, so a provider cannot wait for
itself; the one that waits holds no slot, and every slot in use is released or parked when its
operation ends (IDLE waits end at their timeout or when a poll is due), so the line moves.

One budget per daemon (built beside the providers, no module state); asyncio only, one loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from connector.config import ImapConnectionSettings

# Detaches a parked session from its provider (synchronously) and returns what closes it.
Detach = Callable[[], Awaitable[None] | None]

UNBOUNDED = 1 << 30


class BudgetObserver(Protocol):
    """What the budget reports (connector.metrics.ConnectorMetrics implements it)."""

    def imap_sessions(self, host: str, count: int) -> None: ...

    def imap_evicted(self, host: str) -> None: ...

    def imap_login_delayed(self, host: str) -> None: ...


class _NoObserver:
    def imap_sessions(self, host: str, count: int) -> None:
        pass

    def imap_evicted(self, host: str) -> None:
        pass

    def imap_login_delayed(self, host: str) -> None:
        pass


@dataclass
class _Bucket:
    """Token bucket: `rate` logins per second, at most `burst` at once. Tokens may go negative:
    each caller reserves its token and sleeps until it is due, so concurrent callers queue."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Reserves one token; returns how long to wait for it (0: at once)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(eq=False)
class SessionTicket:
    """One mailbox's claim on the budget; `held` while it owns a slot."""

    budget: ConnectionBudget
    host: str
    idle: bool  # an IDLE mailbox: evicted only when no polled mailbox's session is parked
    detach: Detach
    held: bool = False
    busy: bool = False
    queued: bool = False  # waiting for a slot or a login turn (the watchdog's "not stalled")

    async def acquire(self) -> None:
        """Takes a slot unless this ticket holds one; waits in line when the budget is full."""
        if not self.held:
            self.queued = True
            try:
                await self.budget._acquire(self)
            finally:
                self.queued = False

    def release(self) -> None:
        """Gives the slot back (the session is closed or failed to open)."""
        self.budget._release(self)

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """While an operation runs on the session: it cannot be evicted. Afterwards a held slot is
        parked (least recently used last in line for eviction)."""
        self.busy = True
        self.budget._unpark(self)
        try:
            yield
        finally:
            self.busy = False
            if self.held:
                self.budget._park(self)

    async def pause_for_login(self) -> None:
        """Waits for a login token of this ticket's host."""
        self.queued = True
        try:
            await self.budget._pause_for_login(self.host)
        finally:
            self.queued = False


@dataclass(eq=False)
class _Waiter:
    ticket: SessionTicket
    granted: asyncio.Future[asyncio.Future[None] | None]


class ConnectionBudget:
    """Bounds on the IMAP sessions of one daemon; see the module docstring."""

    def __init__(
        self,
        *,
        max_total: int = UNBOUNDED,
        max_per_host: int | None = None,
        logins_per_second_per_host: float | None = None,
        observer: BudgetObserver | None = None,
    ) -> None:
        if max_total < 1 or (max_per_host is not None and max_per_host < 1):
            raise ValueError("the budget needs at least one session")
        self.max_total = max_total
        self.max_per_host = max_per_host if max_per_host is not None else max_total
        self.logins_per_second = logins_per_second_per_host
        self.observer: BudgetObserver = observer or _NoObserver()
        self.total = 0
        self._per_host: collections.Counter[str] = collections.Counter()
        self._polled: collections.Counter[str | None] = collections.Counter()  # by host, None: all
        self._parked: dict[SessionTicket, None] = {}  # insertion order: least recently used first
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._buckets: dict[str, _Bucket] = {}

    @classmethod
    def from_settings(
        cls, settings: ImapConnectionSettings, observer: BudgetObserver | None = None
    ) -> ConnectionBudget:
        return cls(
            max_total=settings.max_total,
            max_per_host=settings.max_per_host,
            logins_per_second_per_host=settings.logins_per_second_per_host,
            observer=observer,
        )

    def ticket(self, host: str, *, idle: bool, detach: Detach) -> SessionTicket:
        return SessionTicket(self, host.lower(), idle, detach)

    def held(self, host: str) -> int:
        return self._per_host[host.lower()]

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.granted.done())

    # ------------------------------------------------------------------ slots

    async def _acquire(self, ticket: SessionTicket) -> None:
        waiter = _Waiter(ticket, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._grant()
        try:
            closing = await waiter.granted
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._release(ticket)  # granted as we were cancelled: give it back
            raise
        if closing is not None:  # the evicted session logs out before ours logs in
            try:
                await asyncio.shield(closing)
            except asyncio.CancelledError:
                self._release(ticket)
                raise
            except Exception:  # the victim's close failing still dropped its socket
                pass

    def _release(self, ticket: SessionTicket) -> None:
        self._parked.pop(ticket, None)
        if ticket.held:
            self._count(ticket, -1)
            self._grant()

    def _count(self, ticket: SessionTicket, change: int) -> None:
        ticket.held = change > 0
        self.total += change
        self._per_host[ticket.host] += change
        if not ticket.idle:
            self._polled[ticket.host] += change
            self._polled[None] += change
        self.observer.imap_sessions(ticket.host, self._per_host[ticket.host])

    def _park(self, ticket: SessionTicket) -> None:
        self._parked.pop(ticket, None)
        self._parked[ticket] = None
        self._grant()

    def _unpark(self, ticket: SessionTicket) -> None:
        self._parked.pop(ticket, None)

    def _grant(self) -> None:
        """Hands slots to waiters in order; one that cannot be served lets the next one try."""
        for waiter in list(self._waiters):
            if waiter.granted.done():
                self._waiters.remove(waiter)
                continue
            host = waiter.ticket.host
            host_full = self._per_host[host] >= self.max_per_host
            closing: asyncio.Future[None] | None = None
            if host_full or self.total >= self.max_total:
                victim = self._victim(host if host_full else None)
                if victim is None:
                    continue
                closing = self._evict(victim)
            self._waiters.remove(waiter)
            self._count(waiter.ticket, +1)
            waiter.granted.set_result(closing)

    def _victim(self, host: str | None) -> SessionTicket | None:
        """The least recently parked polled mailbox's session (of `host`, if given). An IDLE
        mailbox's only while no polled mailbox holds a slot there: then none would ever free one."""
        candidates = [t for t in self._parked if host is None or t.host == host]
        for ticket in candidates:
            if not ticket.idle:
                return ticket
        if candidates and self._polled[host] == 0:
            return candidates[0]
        return None

    def _evict(self, victim: SessionTicket) -> asyncio.Future[None]:
        del self._parked[victim]
        self._count(victim, -1)
        self.observer.imap_evicted(victim.host)
        closer = victim.detach()
        if closer is None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        task = asyncio.ensure_future(closer)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if unawaited
        return task

    # ------------------------------------------------------------------ logins

    async def _pause_for_login(self, host: str) -> None:
        rate = self.logins_per_second
        if rate is None:
            return
        loop = asyncio.get_running_loop()
        bucket = self._buckets.get(host)
        if bucket is None:
            burst = max(1.0, rate)
            bucket = self._buckets[host] = _Bucket(rate, burst, burst, loop.time())
        wait = bucket.take(loop.time())
        if wait <= 0:
            return
        self.observer.imap_login_delayed(host)
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            bucket.tokens += 1.0  # the login did not happen: its token goes back
            raise
