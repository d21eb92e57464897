"""What one sync cycle reports, and the hooks it calls; shared by the pipeline and its batch step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from connector.activity import Delivery
from connector.models import EmailItem


def utcnow() -> datetime:
    return datetime.now(UTC)


class SyncEvents(Protocol):
    """Status and metrics hooks, called as each message is done (not at cycle end, which a
    failing cycle never reaches)."""

    def fetched(self, mailbox_id: str, count: int) -> None: ...

    def settled(self, mailbox_id: str, count: int) -> None:
        """`count` fetched messages are handled (delivered, known, quarantined): out of the backlog."""

    def delivered(self, mailbox_id: str, lag_seconds: float | None, detail: Delivery | None = None) -> None:
        """One item is in IWD and committed; `detail` (subject, ids) is for the console's list."""

    def quarantined(self, mailbox_id: str) -> None: ...


# Told about every item IWD holds (mailbox id, item, raw bytes); the outbox's auto-acknowledgement
# uses it. Its failures are logged and never affect inbound delivery.
OnDelivered = Callable[[str, EmailItem, bytes], Awaitable[None]]


@dataclass
class CycleReport:
    mailbox_id: str
    fetched: int = 0
    delivered: int = 0
    already_delivered: int = 0
    quarantined: int = 0
    acted: int = 0
    post_action_failures: int = 0
    max_lag_seconds: float | None = None
    resynced_folders: list[str] = field(default_factory=list)


def cycle_summary(report: CycleReport) -> dict[str, Any]:
    return {
        "fetched": report.fetched,
        "delivered": report.delivered,
        "already_delivered": report.already_delivered,
        "quarantined": report.quarantined,
        "acted": report.acted,
        "post_action_failures": report.post_action_failures,
        "resynced_folders": report.resynced_folders,
    }
