"""Which IWD failures are retried, and how long to wait: one policy for every call.

Retrying is safe because creation is idempotent (Idempotency-Key = externalId) and so are
attachment uploads (profile v1.2: a key per attachment of an email). A call gives up
once its budget (IWDSettings.max_retry_seconds) would be exceeded by the next wait, so a call
takes at most budget + one request timeout.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tenacity import RetryCallState

TRANSIENT_STATUSES = frozenset({408, 409, 429})


def is_transient_status(status: int) -> bool:
    """408, 409 (a concurrent request holds the key), 429 and 5xx are worth another try."""
    return status in TRANSIENT_STATUSES or status >= 500


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))  # delta-seconds (decimals tolerated)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


class TransientFailure(Exception):
    """One failed attempt that may succeed later; carries what the final error will report."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        iwd_code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.iwd_code = iwd_code
        self.request_id = request_id
        self.retry_after = retry_after
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: initial * 2**n plus up to `jitter` seconds, capped per wait."""

    initial_seconds: float = 0.5
    max_wait_seconds: float = 10.0
    jitter_seconds: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int) -> float:
        base = self.initial_seconds * (2 ** max(0, attempt - 1))
        return float(min(self.max_wait_seconds, base + self.rng.uniform(0, self.jitter_seconds)))


class RetryClock:
    """tenacity `wait` and `stop` for one call: honours Retry-After and the total budget."""

    def __init__(self, policy: RetryPolicy, budget_seconds: float) -> None:
        self.policy = policy
        self.budget_seconds = budget_seconds
        self.started = time.monotonic()

    def remaining(self) -> float:
        return self.budget_seconds - (time.monotonic() - self.started)

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = self.policy.backoff(state.attempt_number)
        if isinstance(exc, TransientFailure) and exc.retry_after is not None:
            delay = exc.retry_after  # the server said when; waiting less only earns another 429
        return delay

    def stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, TransientFailure) and not exc.retryable:
            return True
        return state.upcoming_sleep >= self.remaining()
