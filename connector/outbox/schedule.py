"""When to try a reply again after a temporary failure (4xx, connection trouble).

RFC 5321 MTAs retry for 4-5 days at >= 30 minutes; a submitting client may start tighter. The
default 1 min, 5 min, 15 min, 30 min, then hourly for 2 days outlasts greylisting and most
outages (Zammad's 4 x 25 s does not) without FreeScout's week of silence before an agent learns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from connector.config import OutboxSettings


def next_attempt_at(
    attempts: int,
    first_attempt_at: datetime | None,
    now: datetime,
    settings: OutboxSettings,
    rand: Callable[[], float],
) -> datetime | None:
    """The next try after `attempts` failed ones, or None once the retry horizon has passed."""
    start = first_attempt_at or now
    if (now - start).total_seconds() >= settings.retry_horizon_seconds:
        return None
    schedule = settings.retry_schedule_seconds
    wait = schedule[min(max(attempts, 1), len(schedule)) - 1]
    wait *= 1.0 + settings.retry_jitter * rand()
    return now + timedelta(seconds=wait)
