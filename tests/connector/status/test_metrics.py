"""Metrics: a private registry per daemon, bounded labels, gauges read from the board at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from connector.errors import AuthFailed
from connector.metrics import ConnectorMetrics, route_of
from connector.runtime.lease_metrics import LeaseMetrics
from connector.status import StatusBoard


def test_routes_replace_ids_so_labels_stay_bounded() -> None:
    """Item, attachment and mailbox ids become templates in the route label."""
    assert route_of("/emails") == "/emails"
    assert route_of("/emails/em_123") == "/emails/{id}"
    assert route_of("/emails/batch") == "/emails/batch"
    assert route_of("/emails/attachments/at_9") == "/emails/attachments/{attachmentId}"
    assert route_of("/emails/mailboxes/support/status") == "/emails/mailboxes/{mailboxId}/status"
    assert route_of("/emails/outbound?status=queued") == "/emails/outbound"


def test_two_daemons_have_separate_registries_and_none_uses_the_global_one() -> None:
    """Counters of one ConnectorMetrics do not show in another or in prometheus_client's REGISTRY."""
    one, two = ConnectorMetrics(StatusBoard()), ConnectorMetrics(StatusBoard())
    one.item_delivered("a", 2.0)
    assert b'iwd_email_items_delivered_total{mailbox="a"} 1.0' in one.render()
    assert b'mailbox="a"' not in two.render().split(b"iwd_email_mailbox_state")[0]
    assert not any(m.name.startswith("iwd_email_") for m in REGISTRY.collect())


def test_gauges_follow_the_board_and_failures_count_by_reason() -> None:
    """State, quarantine and IWD errors appear as they are, and the text parses."""
    board = StatusBoard()
    metrics = ConnectorMetrics(board)
    board.inbound_failed("a", datetime.now(UTC), AuthFailed("no"))
    board.set_quarantined("a", 4)
    metrics.cycle_finished("a", 0.2, "auth_required")
    metrics.cycle_finished("a", 0.1, "throttled")
    metrics.observe_iwd("PUT", "/emails/mailboxes/a/status", 503, 0.01, None)
    metrics.observe_iwd("POST", "/emails", None, 5.0, "timeout")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    state = {
        s.labels["state"]
        for s in families["iwd_email_mailbox_state"].samples
        if s.value == 1 and s.labels["direction"] == "inbound"
    }
    assert state == {"auth_required"}
    assert families["iwd_email_quarantine_size"].samples[0].value == 4
    reasons = {
        s.labels["reason"] for s in families["iwd_email_failures"].samples if s.name.endswith("_total")
    }
    assert reasons == {"auth_required", "throttled"}
    kinds = {
        s.labels["kind"]
        for s in families["iwd_email_iwd_request_errors"].samples
        if s.name.endswith("_total")
    }
    assert kinds == {"http_503", "timeout"}
    assert families["iwd_email_throttle_events"].samples[0].value == 1


def test_outbox_counts_come_from_the_registered_callable() -> None:
    """The outbox worker registers a counts callable; the gauge shows it per state."""
    metrics = ConnectorMetrics(StatusBoard())
    metrics.outbox_counts = lambda: {"queued": 2, "sent": 5}
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert {s.labels["state"]: s.value for s in families["iwd_email_outbox_items"].samples} == {
        "queued": 2,
        "sent": 5,
    }


def test_example_alert_rules_only_use_metrics_that_exist() -> None:
    """Every iwd_email_* name in deploy/prometheus-alerts.yaml is exported (a typo would never fire)."""
    import re
    from pathlib import Path

    import yaml

    rules = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "deploy" / "prometheus-alerts.yaml").read_text()
    )
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    board = StatusBoard()
    board.inbound_succeeded("a", datetime.now(UTC), quarantined=0, lag_seconds=1.0)
    metrics = ConnectorMetrics(board)
    metrics.item_delivered("a", 1.0)
    metrics.quarantined.labels("a").inc()
    metrics.observe_iwd("GET", "/emails", 500, 0.1, None)
    leases = LeaseMetrics(metrics.registry)  # several replicas (connector/runtime/leases.py)
    for counter in (leases.takeovers, leases.lost, leases.fenced):
        counter.labels("a").inc()
    exported = {s.name for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}
    for name in set(re.findall(r"iwd_email_\w+", exprs)):
        assert name in exported, name
