"""What each mailbox did lately, for the admin console: deliveries, errors, state changes, charts.

Bounded ring buffers in memory, fed by the hooks the daemon already has (a delivered item, an
IWD call, the status board's states) and read by the console's routes. Nothing here does IO, and
nothing survives a restart: the store keeps what must survive; this keeps what a person on call
wants to see about the last hour (charts), the last 24 h (state timeline) and the last 50 items.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # status.py holds the one ActivityLog (StatusBoard.activity)
    from connector.status import LastError, StatusBoard

DELIVERIES_KEPT = 50
ERRORS_KEPT = 50
TIMELINE_SECONDS = 24 * 3600
TIMELINE_KEPT = 500
CHART_MINUTES = 60
TOTAL = "*"  # the chart series summed over every mailbox
_QUIET_STATES = frozenset({"ok", "disabled"})  # a change to these has no cause to show


@dataclass(frozen=True)
class Delivery:
    at: datetime
    folder: str
    subject: str
    external_id: str
    iwd_id: str | None
    lag_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "folder": self.folder,
            "subject": self.subject,
            "externalId": self.external_id,
            "iwdItemId": self.iwd_id,
            "lagSeconds": self.lag_seconds,
        }


@dataclass(frozen=True)
class Change:
    """One state change of one direction, with the error that caused it (None when it recovered)."""

    at: datetime
    direction: str
    state: str
    cause: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "direction": self.direction,
            "state": self.state,
            "cause": self.cause,
        }


@dataclass
class _Minute:
    minute: int  # minutes since the epoch
    items: int = 0
    lag_sum: float = 0.0
    lag_n: int = 0
    iwd_sum: float = 0.0
    iwd_n: int = 0


@dataclass
class _Seen:
    """What the last look saw, per direction: the state and the LastError object (by identity)."""

    states: dict[str, str] = field(default_factory=dict)
    errors: dict[str, LastError | None] = field(default_factory=dict)


@dataclass
class MailboxActivity:
    deliveries: deque[Delivery] = field(default_factory=lambda: deque(maxlen=DELIVERIES_KEPT))
    errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))
    timeline: deque[Change] = field(default_factory=lambda: deque(maxlen=TIMELINE_KEPT))
    seen: _Seen = field(default_factory=_Seen)


def _cause(error: LastError | None) -> str | None:
    return f"{error.code}: {error.message}" if error is not None else None


class ActivityLog:
    """Per-mailbox recent history. `observe(board)` turns the board's states into a timeline; the
    daemon's activity service calls it twice a second and every console read calls it first."""

    def __init__(self) -> None:
        self.boxes: dict[str, MailboxActivity] = {}
        self.minutes: dict[str, deque[_Minute]] = {}

    def box(self, mailbox_id: str) -> MailboxActivity:
        found = self.boxes.get(mailbox_id)
        if found is None:
            found = self.boxes[mailbox_id] = MailboxActivity()
        return found

    def _bucket(self, key: str, now: float) -> _Minute:
        minute = int(now // 60)
        series = self.minutes.get(key)
        if series is None:
            series = self.minutes[key] = deque(maxlen=CHART_MINUTES)
        if not series or series[-1].minute != minute:
            series.append(_Minute(minute))
        return series[-1]

    # ------------------------------------------------------------ hooks

    def delivered(self, mailbox_id: str, delivery: Delivery) -> None:
        self.box(mailbox_id).deliveries.append(delivery)
        now = time.time()
        for key in (mailbox_id, TOTAL):
            bucket = self._bucket(key, now)
            bucket.items += 1
            if delivery.lag_seconds is not None:
                bucket.lag_sum += max(delivery.lag_seconds, 0.0)
                bucket.lag_n += 1

    def iwd_call(self, mailbox_id: str | None, seconds: float) -> None:
        """One IWD request's duration; `mailbox_id` is the cycle that made it (None: outbox, status)."""
        now = time.time()
        for key in (mailbox_id, TOTAL) if mailbox_id else (TOTAL,):
            bucket = self._bucket(key, now)
            bucket.iwd_sum += seconds
            bucket.iwd_n += 1

    def observe(self, board: StatusBoard, now: datetime | None = None) -> None:
        """Records every state change and new error since the last look (cheap: compares identities)."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(seconds=TIMELINE_SECONDS)
        for status in board.all():
            activity = self.box(status.mailbox_id)
            seen = activity.seen
            for direction, current in (("inbound", status.inbound), ("outbound", status.outbound)):
                error, state = current.last_error, current.state.value
                if error is not None and error is not seen.errors.get(direction):
                    activity.errors.append(
                        {"direction": direction, **error.to_json(), "context": dict(error.context)}
                    )
                seen.errors[direction] = error
                before = seen.states.get(direction)
                if state != before:
                    if before is not None:  # the first look only learns the state
                        cause = None if state in _QUIET_STATES else _cause(error)
                        activity.timeline.append(Change(now, direction, state, cause))
                    seen.states[direction] = state
            while activity.timeline and activity.timeline[0].at < cutoff:
                activity.timeline.popleft()

    def forget(self, mailbox_id: str) -> None:
        self.boxes.pop(mailbox_id, None)
        self.minutes.pop(mailbox_id, None)

    # ------------------------------------------------------------ reads

    def mailbox_json(self, mailbox_id: str) -> dict[str, Any]:
        activity = self.box(mailbox_id)
        return {
            "deliveries": [d.to_json() for d in reversed(activity.deliveries)],
            "errors": list(reversed(activity.errors)),
            "timeline": [c.to_json() for c in activity.timeline],
        }

    def charts_json(self, keys: list[str], now: float | None = None) -> dict[str, Any]:
        """Per minute over the last hour: items, mean detection lag, mean IWD latency (ms)."""
        last = int((now or time.time()) // 60)
        first = last - CHART_MINUTES + 1
        series: dict[str, Any] = {}
        for key in keys:
            by_minute = {b.minute: b for b in self.minutes.get(key, ())}
            items, lag, iwd = [], [], []
            for minute in range(first, last + 1):
                b = by_minute.get(minute)
                items.append(b.items if b else 0)
                lag.append(round(b.lag_sum / b.lag_n, 2) if b and b.lag_n else None)
                iwd.append(round(1000 * b.iwd_sum / b.iwd_n, 1) if b and b.iwd_n else None)
            series[key] = {"itemsPerMinute": items, "lagSeconds": lag, "iwdLatencyMs": iwd}
        return {"firstMinute": datetime.fromtimestamp(first * 60, UTC).isoformat(), "series": series}
