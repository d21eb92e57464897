"""The console's activity log: state changes with their cause, errors with their context, charts."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from connector.activity import TOTAL, ActivityLog, Delivery
from connector.errors import IWDUnavailable, SendRejected
from connector.status import StatusBoard


def test_a_timeline_holds_each_change_with_the_cause_of_its_own_direction() -> None:
    """ok → degraded (IWD, with the request id) → ok inbound, and an outbound failure with the
    outbound error as its cause, each recorded once however often the board is looked at."""
    board, log = StatusBoard(), ActivityLog()
    now = datetime.now(UTC)
    board.inbound_succeeded("a", now, 0)
    log.observe(board)
    board.inbound_fault("a", now, IWDUnavailable("IWD POST /emails failed: HTTP 503", request_id="req_1"))
    log.observe(board)
    log.observe(board)
    board.inbound_succeeded("a", now, 0)
    board.outbound_failed("a", now, SendRejected("550 no such user"))
    log.observe(board)
    doc = log.mailbox_json("a")
    changes = [(c["direction"], c["state"], c["cause"]) for c in doc["timeline"]]
    assert changes == [
        ("inbound", "degraded", "iwd_unavailable: IWD POST /emails failed: HTTP 503 (request_id=req_1)"),
        ("inbound", "ok", None),
        ("outbound", "error", "smtp_rejected: 550 no such user"),
    ]
    (iwd_error,) = [e for e in doc["errors"] if e["direction"] == "inbound"]
    assert iwd_error["context"] == {"request_id": "req_1"}
    assert [e["direction"] for e in doc["errors"]] == ["outbound", "inbound"]  # newest first


def test_charts_count_items_per_minute_with_lag_and_iwd_latency_per_mailbox_and_in_total() -> None:
    """Two deliveries and one IWD call this minute show in the mailbox's series and in the total."""
    log = ActivityLog()
    at = datetime.now(UTC)
    for lag in (2.0, 4.0):
        log.delivered("a", Delivery(at, "INBOX", "Hi", "a.1", "em_1", lag))
    log.iwd_call("a", 0.010)
    charts = log.charts_json(["a", TOTAL], now=time.time())
    for key in ("a", TOTAL):
        series = charts["series"][key]
        assert series["itemsPerMinute"][-1] == 2
        assert series["lagSeconds"][-1] == 3.0
        assert series["iwdLatencyMs"][-1] == 10.0
        assert len(series["itemsPerMinute"]) == 60
