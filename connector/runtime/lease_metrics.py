"""The replica metrics, on the daemon's own registry beside connector/metrics.py's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from connector.metrics import PREFIX


class LeaseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.held = Gauge(PREFIX + "leases_held", "Mailbox leases this replica holds", registry=registry)
        self.candidates = Gauge(
            PREFIX + "lease_candidates",
            "Mailboxes the replicas share (configured, inbound enabled): sum(leases_held) should equal it",
            registry=registry,
        )
        self.takeovers = Counter(
            PREFIX + "lease_takeovers",
            "Mailboxes taken over from another replica (released or lapsed)",
            ["mailbox"],
            registry=registry,
        )
        self.lost = Counter(
            PREFIX + "leases_lost",
            "Leases this replica found gone at renewal (it was paused or cut off past the TTL)",
            ["mailbox"],
            registry=registry,
        )
        self.fenced = Counter(
            PREFIX + "fenced_writes_refused",
            "Writes the database refused because the lease (or reply claim) had moved on",
            ["mailbox"],
            registry=registry,
        )
