"""Calls to peers seen one by one, so a mailbox's state follows its first failed call, not its last.

An IWD call retries for up to its budget (60 s by default) before the cycle gives up; the status
must not wait that long. The transport tells its observer about every attempt, and the observer
here passes the verdict to the mailbox whose cycle made the call: the first failed attempt makes it
`degraded` (peer `iwd`), the first answer makes it `ok` again (issue #12).

The IWD client is one per process, shared by every mailbox, so the mailbox a call belongs to comes
from a context variable that the runner sets around each cycle; asyncio copies it into the tasks a
cycle starts. Calls outside a cycle (the status reporter, readiness) belong to no mailbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

from connector.activity import ActivityLog
from connector.errors import ConnectorError, IWDUnavailable
from connector.iwd.retry import is_transient_status
from connector.iwd.transport import RequestObserver
from connector.status import Peer

PUSH_PROBE_SECONDS = 1.0  # how often a push loop whose connection was lost looks again
CONFLICT = 409


class PeerWatcher(Protocol):
    """What a mailbox is told about its calls (the runner's cycle events implement it)."""

    def peer_failed(self, mailbox_id: str, error: ConnectorError) -> None: ...

    def peer_answered(self, mailbox_id: str, peer: Peer) -> None: ...


_current: ContextVar[tuple[str, PeerWatcher] | None] = ContextVar("peer_watcher", default=None)


@contextlib.contextmanager
def watched(mailbox_id: str, watcher: PeerWatcher) -> Iterator[None]:
    """Calls made inside this block (and in tasks started from it) are told to `watcher`."""
    token = _current.set((mailbox_id, watcher))
    try:
        yield
    finally:
        _current.reset(token)


def observe_iwd(method: str, path: str, status: int | None, seconds: float, error: str | None) -> None:
    """A transport RequestObserver: one IWD attempt's outcome, told to the cycle that made it."""
    current = _current.get()
    if current is None:
        return
    mailbox_id, watcher = current
    if error is None and status == CONFLICT:
        return  # a concurrent request holds the key: IWD is up, the retry will tell
    if error is None and status is not None and not is_transient_status(status):
        watcher.peer_answered(mailbox_id, Peer.IWD)  # IWD answered (a 4xx is about the request)
        return
    what = f"no answer ({error}) after {seconds:.1f} s" if error else f"HTTP {status}"
    watcher.peer_failed(
        mailbox_id, IWDUnavailable(f"IWD {method} {path} failed: {what}; retrying", status=status)
    )


def observe_all(*observers: RequestObserver) -> RequestObserver:
    """One observer that calls each of `observers` in turn (metrics, then status)."""

    def observe(method: str, path: str, status: int | None, seconds: float, error: str | None) -> None:
        for observer in observers:
            observer(method, path, status, seconds, error)

    return observe


def observe_activity(activity: ActivityLog) -> RequestObserver:
    """Feeds the console's IWD latency chart: each answered attempt, under the mailbox that made it."""

    def observe(method: str, path: str, status: int | None, seconds: float, error: str | None) -> None:
        if error is None:
            current = _current.get()
            activity.iwd_call(current[0] if current else None, seconds)

    return observe
