"""Prometheus metrics for one daemon: a private CollectorRegistry, never the global one.

Counters and histograms are fed as things happen (a delivery, a cycle, an IWD request). Gauges
(state, quarantine, backlog, lag, outbox) are read from the StatusBoard at scrape time by a custom
collector, so a scrape does no IO and can never disagree with the admin page.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.status import MailboxState, Peer, StatusBoard

PREFIX = "iwd_email_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
IWD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_KNOWN_SEGMENTS = frozenset(
    {"emails", "attachments", "mailboxes", "outbound", "status", "batch", "iwd", "v3"}
)
_TEMPLATES = {"emails": "{id}", "attachments": "{attachmentId}", "mailboxes": "{mailboxId}"}

OutboxCounts = Callable[[], Mapping[str, int]]


def route_of(path: str) -> str:
    """`/emails/ab12/…` → `/emails/{id}/…`: a bounded label set, whatever ids the calls carry."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    out: list[str] = []
    for i, part in enumerate(parts):
        if part in _KNOWN_SEGMENTS:
            out.append(part)
        else:
            prev = parts[i - 1] if i else ""
            out.append(_TEMPLATES.get(prev, "{id}"))
    return "/" + "/".join(out)


class _BoardCollector(Collector):
    def __init__(self, board: StatusBoard, outbox: Callable[[], OutboxCounts | None]) -> None:
        self.board = board
        self.outbox = outbox

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            PREFIX + "mailbox_state",
            "1 for the mailbox direction's current state, 0 for the others",
            labels=["mailbox", "direction", "state"],
        )
        quarantine = GaugeMetricFamily(
            PREFIX + "quarantine_size", "Messages held in quarantine for a person", labels=["mailbox"]
        )
        backlog = GaugeMetricFamily(
            PREFIX + "backlog", "Messages or replies waiting", labels=["mailbox", "direction"]
        )
        lag = GaugeMetricFamily(
            PREFIX + "lag_seconds", "Last delivery lag (arrival to item)", labels=["mailbox", "direction"]
        )
        success = GaugeMetricFamily(
            PREFIX + "last_success_timestamp_seconds",
            "Unix time of the last completed cycle",
            labels=["mailbox", "direction"],
        )
        paused = GaugeMetricFamily(PREFIX + "mailbox_paused", "1 when paused by an admin", labels=["mailbox"])
        peer_down = GaugeMetricFamily(
            PREFIX + "mailbox_peer_down",
            "1 while calls from the mailbox to this peer (iwd, mail_server, store) fail, 0 otherwise",
            labels=["mailbox", "direction", "peer"],
        )
        failing_since = GaugeMetricFamily(
            PREFIX + "mailbox_failing_since_timestamp_seconds",
            "Unix time of the first failed call of the current outage (absent while ok)",
            labels=["mailbox", "direction"],
        )
        for box in self.board.all():
            for direction, status in (("inbound", box.inbound), ("outbound", box.outbound)):
                for candidate in MailboxState:
                    state.add_metric(
                        [box.mailbox_id, direction, candidate.value],
                        1.0 if status.state is candidate else 0.0,
                    )
                backlog.add_metric([box.mailbox_id, direction], float(status.backlog))
                if status.lag_seconds is not None:
                    lag.add_metric([box.mailbox_id, direction], status.lag_seconds)
                if status.last_success_at is not None:
                    success.add_metric([box.mailbox_id, direction], status.last_success_at.timestamp())
                for peer in Peer:
                    down = 1.0 if peer in status.peers_down else 0.0
                    peer_down.add_metric([box.mailbox_id, direction, peer.value], down)
                if status.failing_since is not None:
                    failing_since.add_metric([box.mailbox_id, direction], status.failing_since.timestamp())
            quarantine.add_metric([box.mailbox_id], float(box.inbound.quarantined))
            paused.add_metric([box.mailbox_id], 1.0 if box.paused else 0.0)
        yield from (state, quarantine, backlog, lag, success, paused, peer_down, failing_since)
        counts = self.outbox()
        outbox = GaugeMetricFamily(
            PREFIX + "outbox_items", "Replies in the outbox by state", labels=["state"]
        )
        if counts is not None:
            for name, value in sorted(counts().items()):
                outbox.add_metric([name], float(value))
        yield outbox


class ConnectorMetrics:
    """Everything `/metrics` shows; one instance per daemon."""

    def __init__(self, board: StatusBoard) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.outbox_counts: OutboxCounts | None = None  # set by the outbox worker, if there is one
        r = self.registry
        self.delivered = Counter(
            PREFIX + "items_delivered", "Email work items created in IWD", ["mailbox"], registry=r
        )
        self.failures = Counter(
            PREFIX + "failures",
            "Failed cycles and messages by reason (error code)",
            ["mailbox", "reason"],
            registry=r,
        )
        self.quarantined = Counter(
            PREFIX + "messages_quarantined", "Messages put into quarantine", ["mailbox"], registry=r
        )
        self.throttles = Counter(
            PREFIX + "throttle_events", "Times a provider asked us to slow down", ["mailbox"], registry=r
        )
        self.stalls = Counter(
            PREFIX + "watchdog_restarts", "Jobs restarted by the watchdog", ["mailbox"], registry=r
        )
        self.poll_duration = Histogram(
            PREFIX + "poll_duration_seconds",
            "Duration of one mailbox cycle",
            ["mailbox"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.arrival_latency = Histogram(
            PREFIX + "arrival_to_item_seconds",
            "From the mail server's internal date to the IWD item",
            ["mailbox"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.iwd_duration = Histogram(
            PREFIX + "iwd_request_duration_seconds",
            "IWD HTTP request duration (one attempt)",
            ["method", "route", "status"],
            buckets=IWD_BUCKETS,
            registry=r,
        )
        self.iwd_errors = Counter(
            PREFIX + "iwd_request_errors",
            "IWD requests that failed (an HTTP error or no answer)",
            ["method", "route", "kind"],
            registry=r,
        )
        self.status_reports = Counter(
            PREFIX + "status_reports",
            "Status and configuration PUTs to IWD by outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.imap_sessions_open = Gauge(
            PREFIX + "imap_sessions_open",
            "IMAP sessions held open (or opening) per server host, within the connection budget",
            ["host"],
            registry=r,
        )
        self.imap_evictions = Counter(
            PREFIX + "imap_session_evictions",
            "Parked IMAP sessions closed to make room for another mailbox (connection budget)",
            ["host"],
            registry=r,
        )
        self.imap_logins_delayed = Counter(
            PREFIX + "imap_logins_delayed",
            "IMAP logins that waited for the per-host login rate",
            ["host"],
            registry=r,
        )
        r.register(_BoardCollector(board, lambda: self.outbox_counts))

    # ------------------------------------------------------------ hooks

    def item_delivered(self, mailbox_id: str, lag_seconds: float | None) -> None:
        self.delivered.labels(mailbox_id).inc()
        if lag_seconds is not None:
            self.arrival_latency.labels(mailbox_id).observe(max(lag_seconds, 0.0))

    def cycle_finished(self, mailbox_id: str, seconds: float, error_code: str | None) -> None:
        self.poll_duration.labels(mailbox_id).observe(seconds)
        if error_code is not None:
            self.failures.labels(mailbox_id, error_code).inc()
            if error_code == "throttled":
                self.throttles.labels(mailbox_id).inc()

    # the IMAP connection budget's observer (providers/imap/budget.py, BudgetObserver)

    def imap_sessions(self, host: str, count: int) -> None:
        self.imap_sessions_open.labels(host).set(count)

    def imap_evicted(self, host: str) -> None:
        self.imap_evictions.labels(host).inc()

    def imap_login_delayed(self, host: str) -> None:
        self.imap_logins_delayed.labels(host).inc()

    def observe_iwd(
        self, method: str, path: str, status: int | None, seconds: float, error: str | None
    ) -> None:
        """The IWD client's observer: one call per HTTP attempt."""
        route = route_of(path)
        self.iwd_duration.labels(method, route, str(status) if status is not None else "none").observe(
            seconds
        )
        if error is not None or (status is not None and status >= 400):
            self.iwd_errors.labels(method, route, error or f"http_{status}").inc()

    def forget(self, mailbox_id: str) -> None:
        """Drops a removed mailbox's labelled series (hot reload)."""
        for metric in (self.delivered, self.quarantined, self.throttles, self.stalls):
            _drop(metric, (mailbox_id,))
        _drop(self.poll_duration, (mailbox_id,))
        _drop(self.arrival_latency, (mailbox_id,))
        for labels in list(self.failures._metrics):  # prometheus_client has no public lister
            if labels[0] == mailbox_id:
                _drop(self.failures, labels)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _drop(metric: Any, labels: Sequence[str]) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
