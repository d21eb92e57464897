"""The Grafana dashboard shipped with the chart queries only metrics the daemon exports."""

from __future__ import annotations

import json
import re

from prometheus_client import CollectorRegistry

from connector.metrics import ConnectorMetrics
from connector.runtime.lease_metrics import LeaseMetrics
from connector.status import StatusBoard
from tests.deploy.conftest import CHART

DASHBOARD = CHART / "dashboards" / "iwd-email-connector.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def exported_names() -> set[str]:
    """Every series name the daemon's registries can expose (its metrics and the lease metrics)."""
    registry: CollectorRegistry = ConnectorMetrics(StatusBoard()).registry
    LeaseMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type not in SUFFIXES:  # a counter or histogram has only its suffixed series
            names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return found


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    """Each metric a panel or variable queries is one ConnectorMetrics (and the lease metrics) export."""
    allowed = exported_names()
    used = {name for expr in queries() for name in re.findall(r"\biwd_email_[a-z_]+\b", expr)}
    assert used, "no query names a metric"
    assert used - allowed == set()
    assert all(re.search(r"\biwd_email_[a-z_]+\b", expr) for expr in queries())


def test_dashboard_shows_what_operators_watch() -> None:
    """Mailbox state, items/min, lag, IWD latency, errors, outbox, quarantine, leases: each is shown."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    text = json.dumps(dashboard["panels"])
    for metric in (
        "iwd_email_mailbox_state",
        "iwd_email_items_delivered_total",
        "iwd_email_arrival_to_item_seconds_bucket",
        "iwd_email_iwd_request_duration_seconds_bucket",
        "iwd_email_iwd_request_errors_total",
        "iwd_email_outbox_items",
        "iwd_email_quarantine_size",
        "iwd_email_leases_held",
    ):
        assert metric in text, metric
