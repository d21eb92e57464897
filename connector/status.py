"""Per-mailbox status, inbound and outbound apart. Exception classes become states here, and only here.

Readers (CLI, status reporter, admin page, metrics) read a `StatusBoard`; none does IO of its own.
Writers call the board's methods, which bump a version, wake `changed` (so the status reporter sends
a burst of changes as one PUT) and remember which mailbox changed: the reporter looks only at those
(`take_changed`), so its cost follows the changes, not the number of mailboxes. A writer that mutates
a `DirectionStatus` directly must call `touch(mailbox_id)`, or IWD hears of it only at the next
heartbeat (which sends every mailbox); `touch()` without an id marks every mailbox changed.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.activity import ActivityLog
from connector.errors import (
    AuthFailed,
    CertificateRejected,
    IWDUnavailable,
    ProviderUnavailable,
    StoreError,
    Throttled,
)


class MailboxState(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # a peer (IWD, mail server, store) is failing: delivery waits, retried
    THROTTLED = "throttled"
    AUTH_REQUIRED = "auth_required"
    ERROR = "error"
    STALLED = "stalled"  # a cycle that does not end (the watchdog restarts it)
    DISABLED = "disabled"  # turned off in the configuration, or paused by an administrator


class Peer(enum.StrEnum):
    """Whom a mailbox depends on; `lastError.peer` names the one that failed."""

    IWD = "iwd"
    MAIL_SERVER = "mail_server"
    STORE = "store"


def peer_of(exc: BaseException) -> Peer | None:
    """The peer whose outage `exc` reports; None when it needs a person or is a bug."""
    if isinstance(exc, IWDUnavailable):
        return Peer.IWD
    if isinstance(exc, StoreError):
        return Peer.STORE
    if isinstance(exc, ProviderUnavailable) and not isinstance(exc, CertificateRejected):
        return Peer.MAIL_SERVER
    return None


def state_for(exc: BaseException) -> MailboxState:
    if isinstance(exc, AuthFailed):
        return MailboxState.AUTH_REQUIRED
    if isinstance(exc, Throttled):
        return MailboxState.THROTTLED
    if peer_of(exc) is not None:
        return MailboxState.DEGRADED  # an outage: retried, and over by itself when the peer is back
    return MailboxState.ERROR  # other ProviderErrors, ConfigError, and bugs alike


def error_code(exc: BaseException) -> str:
    """The connector error code of an exception (`internal` for a bug), used in status and metrics."""
    code = getattr(exc, "code", None)
    return str(code) if isinstance(code, str) and code else "internal"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sanitize(text: str, limit: int = 500) -> str:
    """Error text safe for status and IWD: no control characters, bounded length."""
    cleaned = _CONTROL.sub(" ", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


# states a peer outage may replace with `degraded` (the others need a person and say more)
_OUTAGE_STATES = frozenset({MailboxState.OK, MailboxState.DEGRADED})


@dataclass
class LastError:
    """`since` is when this run of failures began (the first failed call), `at` the latest one."""

    code: str
    message: str
    at: datetime
    since: datetime | None = None
    peer: Peer | None = None
    context: dict[str, Any] = field(default_factory=dict)  # folder, uid, request id (console only)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "at": self.at.isoformat(),
            "since": _iso(self.since or self.at),
            "peer": self.peer.value if self.peer else None,
        }


@dataclass
class DirectionStatus:
    state: MailboxState = MailboxState.OK
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: LastError | None = None
    backlog: int = 0
    quarantined: int = 0
    delivered_total: int = 0
    lag_seconds: float | None = None
    failing_since: datetime | None = None  # the first failure since the last success
    peers_down: dict[Peer, datetime] = field(default_factory=dict)  # peer -> its first failed call

    def fail(self, exc: BaseException, at: datetime, *, paused: bool = False, settle: bool = True) -> bool:
        """Records a failure the moment it happens; True when the state changed.

        `settle` (a cycle ended with `exc`) sets the state `exc` stands for. Otherwise (one failed
        call inside a cycle, a lost IDLE connection) a peer outage turns only an `ok` direction
        `degraded`: a state that needs a person (auth_required, error, ...) says more and stays."""
        state = state_for(exc)
        peer = peer_of(exc)
        self.failing_since = self.failing_since or at
        since = self.failing_since
        if peer is not None:
            since = self.peers_down.setdefault(peer, at)
        self.last_error = LastError(
            code=error_code(exc),
            message=sanitize(str(exc)),
            at=at,
            since=since,
            peer=peer,
            context={k: str(v) for k, v in getattr(exc, "context", {}).items()},
        )
        if paused or (not settle and peer is not None and self.state not in _OUTAGE_STATES):
            return False
        changed = self.state is not state
        self.state = state
        return changed

    def peer_answered(self, peer: Peer, *, paused: bool = False) -> bool:
        """The first success after a peer's outage; True when that made the direction ok again."""
        if self.peers_down.pop(peer, None) is None:
            return False
        if paused or self.peers_down or self.state is not MailboxState.DEGRADED:
            return False
        self.state = MailboxState.OK
        self.failing_since = None
        return True

    def succeed(self, *, paused: bool = False) -> bool:
        """A whole cycle (or send) worked: every peer answered. True when the state changed."""
        changed = self.state is not MailboxState.OK
        if not paused:
            self.state = MailboxState.OK
        self.failing_since = None
        self.peers_down.clear()
        return changed and not paused

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "lastPollAt": _iso(self.last_poll_at),
            "lastSuccessAt": _iso(self.last_success_at),
            "lastError": self.last_error.to_json() if self.last_error else None,
            "backlog": self.backlog,
            "quarantined": self.quarantined,
            "deliveredTotal": self.delivered_total,
            "lagSeconds": None if self.lag_seconds is None else max(self.lag_seconds, 0.0),
        }


@dataclass
class MailboxStatus:
    mailbox_id: str
    inbound: DirectionStatus = field(default_factory=DirectionStatus)
    outbound: DirectionStatus = field(default_factory=DirectionStatus)
    paused: bool = False
    state_before_pause: MailboxState = MailboxState.OK
    cycle_started_at: datetime | None = None  # set while a cycle runs (the watchdog reads it)
    last_cycle_end_at: datetime | None = None  # any end, success or a classified failure

    def to_json(self) -> dict[str, Any]:
        """The IWD profile's status body (PUT /emails/mailboxes/{id}/status)."""
        return {
            "inbound": self.inbound.to_json(),
            "outbound": self.outbound.to_json(),
            "updatedAt": datetime.now(UTC).isoformat(),
        }

    def to_admin_json(self) -> dict[str, Any]:
        """The admin page's and CLI's row: the IWD body plus local facts."""
        return {"mailboxId": self.mailbox_id, "paused": self.paused, **self.to_json()}


class StatusBoard:
    """In-memory status of every mailbox, updated by the cycles, read by everything else."""

    def __init__(self) -> None:
        self._boxes: dict[str, MailboxStatus] = {}
        self.version = 0
        self.changed = asyncio.Event()
        self.activity = ActivityLog()  # recent deliveries, errors, state changes (the console)
        # mailboxes changed since the status reporter last looked; None: any of them may have
        self._changed_ids: set[str] | None = set()

    def touch(self, mailbox_id: str | None = None) -> None:
        """Tells readers `mailbox_id` changed (None: any mailbox may have); writers outside this
        module call it after mutating a box directly, or the reporter does not see the change."""
        self._mark(mailbox_id)
        self.version += 1
        self.changed.set()

    def _mark(self, mailbox_id: str | None) -> None:
        """Remembers the change for `take_changed` without waking readers."""
        if mailbox_id is None:
            self._changed_ids = None
        elif self._changed_ids is not None:
            self._changed_ids.add(mailbox_id)

    def take_changed(self) -> set[str] | None:
        """The mailboxes changed since the last call (None: any may have), and forgets them.
        One consumer only (the status reporter): a second caller would take the first one's share."""
        taken, self._changed_ids = self._changed_ids, set()
        return taken

    def get(self, mailbox_id: str) -> MailboxStatus:
        box = self._boxes.get(mailbox_id)
        if box is None:
            box = self._boxes[mailbox_id] = MailboxStatus(mailbox_id)
            self.touch(mailbox_id)
        return box

    def find(self, mailbox_id: str) -> MailboxStatus | None:
        return self._boxes.get(mailbox_id)

    def all(self) -> list[MailboxStatus]:
        return [self._boxes[k] for k in sorted(self._boxes)]

    def remove(self, mailbox_id: str) -> None:
        if self._boxes.pop(mailbox_id, None) is not None:
            self.activity.forget(mailbox_id)
            self.touch(mailbox_id)

    # ------------------------------------------------------------ inbound

    def inbound_polled(self, mailbox_id: str, at: datetime) -> None:
        box = self.get(mailbox_id)
        box.inbound.last_poll_at = at
        box.cycle_started_at = at
        self._mark(mailbox_id)  # sent with the next flush, but a poll alone wakes no one

    def inbound_delivered(self, mailbox_id: str, lag_seconds: float | None) -> None:
        """One item is in IWD and in the ledger (counted as it happens, not at cycle end)."""
        box = self.get(mailbox_id).inbound
        box.delivered_total += 1
        if lag_seconds is not None:
            box.lag_seconds = max(lag_seconds, 0.0)
        self.touch(mailbox_id)

    def set_delivered_total(self, mailbox_id: str, total: int) -> None:
        """Seeds the counter from the ledger at start, so it survives restarts."""
        self.get(mailbox_id).inbound.delivered_total = total
        self.touch(mailbox_id)

    def inbound_succeeded(
        self, mailbox_id: str, at: datetime, quarantined: int, lag_seconds: float | None = None
    ) -> bool:
        """Returns True when the state changed (callers log once per change, not per poll)."""
        status = self.get(mailbox_id)
        box = status.inbound
        status.cycle_started_at = None
        status.last_cycle_end_at = at
        changed = box.succeed(paused=status.paused)
        box.last_success_at = at
        box.quarantined = quarantined
        box.backlog = 0
        if lag_seconds is not None:
            box.lag_seconds = max(lag_seconds, 0.0)
        self.touch(mailbox_id)
        return changed

    def inbound_failed(self, mailbox_id: str, at: datetime, exc: BaseException) -> bool:
        """A cycle ended with `exc`: the state it stands for. True when the state changed."""
        status = self.get(mailbox_id)
        status.cycle_started_at = None
        status.last_cycle_end_at = at
        changed = status.inbound.fail(exc, at, paused=status.paused)
        self.touch(mailbox_id)
        return changed

    def inbound_fault(self, mailbox_id: str, at: datetime, exc: BaseException) -> bool:
        """One failed call while no cycle ends (an IWD attempt that will be retried, a lost IDLE
        connection): shown at once, not when the retries give up. True when the state changed."""
        status = self.get(mailbox_id)
        changed = status.inbound.fail(exc, at, paused=status.paused, settle=False)
        self.touch(mailbox_id)
        return changed

    def inbound_peer_answered(self, mailbox_id: str, peer: Peer) -> bool:
        """A call to `peer` worked: True when that ended the mailbox's outage (back to ok)."""
        status = self.find(mailbox_id)
        if status is None or peer not in status.inbound.peers_down:
            return False
        changed = status.inbound.peer_answered(peer, paused=status.paused)
        self.touch(mailbox_id)
        return changed

    def set_inbound_backlog(self, mailbox_id: str, backlog: int) -> None:
        """Fetched and not yet delivered, kept current while a cycle runs (and retries)."""
        box = self.get(mailbox_id).inbound
        if box.backlog != backlog:
            box.backlog = backlog
            self.touch(mailbox_id)

    def inbound_stalled(self, mailbox_id: str, at: datetime, seconds: float) -> bool:
        """The watchdog's verdict: no cycle ended for `seconds`. True when newly stalled."""
        status = self.get(mailbox_id)
        box = status.inbound
        changed = box.state is not MailboxState.STALLED
        box.state = MailboxState.STALLED
        status.cycle_started_at = None
        box.failing_since = box.failing_since or at
        box.last_error = LastError(
            code="stalled",
            message=f"no cycle finished for {seconds:.0f} s; the job was restarted",
            at=at,
            since=box.failing_since,
        )
        self.touch(mailbox_id)
        return changed

    def set_inbound_state(self, mailbox_id: str, state: MailboxState) -> None:
        self.get(mailbox_id).inbound.state = state
        self.touch(mailbox_id)

    def set_quarantined(self, mailbox_id: str, count: int) -> None:
        self.get(mailbox_id).inbound.quarantined = count
        self.touch(mailbox_id)

    def set_paused(self, mailbox_id: str, paused: bool) -> None:
        status = self.get(mailbox_id)
        if paused and not status.paused:
            status.state_before_pause = status.inbound.state
            status.inbound.state = MailboxState.DISABLED
        elif not paused and status.paused:
            status.inbound.state = status.state_before_pause
        status.paused = paused
        self.touch(mailbox_id)

    # ------------------------------------------------------------ outbound (the outbox worker)

    def outbound_polled(self, mailbox_id: str, at: datetime, backlog: int | None = None) -> None:
        box = self.get(mailbox_id).outbound
        box.last_poll_at = at
        if backlog is not None:
            box.backlog = backlog
        self.touch(mailbox_id)

    def outbound_sent(self, mailbox_id: str, at: datetime, lag_seconds: float | None = None) -> bool:
        """One reply sent. True when the state changed (back to ok)."""
        box = self.get(mailbox_id).outbound
        changed = box.succeed()
        box.last_success_at = at
        box.delivered_total += 1
        if lag_seconds is not None:
            box.lag_seconds = max(lag_seconds, 0.0)
        self.touch(mailbox_id)
        return changed

    def outbound_failed(self, mailbox_id: str, at: datetime, exc: BaseException) -> bool:
        changed = self.get(mailbox_id).outbound.fail(exc, at)
        self.touch(mailbox_id)
        return changed

    def set_outbound_state(self, mailbox_id: str, state: MailboxState) -> None:
        self.get(mailbox_id).outbound.state = state
        self.touch(mailbox_id)
