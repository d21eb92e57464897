"""Misbehaviour on demand, and a request tally, so tests can prove retries and non-events.

Faults apply only to the profile routes (/iwd/v3/...), never to the admin endpoints or the page.
Deterministic knobs ("fail the next N requests", "slow the next N") make retry tests exact; the
probabilistic rate uses a seeded RNG so a failing run can be replayed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FaultDecision:
    delay_seconds: float = 0.0
    fail_status: int | None = None
    retry_after: str | None = None
    reason: str = ""


@dataclass(slots=True)
class FaultPlan:
    latency_seconds: float = 0.0
    latency_next: int | None = None  # None: every request is slowed; N: only the next N
    fail_next: int = 0
    fail_status: int = 503
    fail_rate: float = 0.0
    retry_after: str | None = None  # Retry-After value sent with injected failures
    down_until: float = 0.0  # time.monotonic() until which every request answers 503
    batch_disabled: bool = False  # POST /emails/batch answers 404, as on an IWD without v1.1


_SETTABLE = {
    "latencySeconds": "latency_seconds",
    "latencyNext": "latency_next",
    "failNext": "fail_next",
    "failStatus": "fail_status",
    "failRate": "fail_rate",
    "retryAfter": "retry_after",
    "batchDisabled": "batch_disabled",
}

_INT = ("a whole number", (int,))
_NUMBER = ("a number", (int, float))
# JSON field -> (what it must be, accepted Python types); bool is refused where a number is meant.
_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "latencySeconds": _NUMBER,
    "latencyNext": _INT,
    "failNext": _INT,
    "failStatus": _INT,
    "failRate": _NUMBER,
    "retryAfter": ("a number or an HTTP date", (int, float, str)),
    "downSeconds": _NUMBER,
    "seed": _INT,
    "batchDisabled": ("true or false", (bool,)),
}


def _check_type(name: str, value: Any) -> None:
    what, types = _TYPES[name]
    if value is None:
        return
    if isinstance(value, bool) != (types == (bool,)) or not isinstance(value, types):
        raise ValueError(f"{name}: must be {what}")


class Faults:
    """Thread-safe fault plan; `decide()` is consulted once per profile request."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._plan = FaultPlan()
        self._rng = random.Random(seed)

    def set(
        self,
        *,
        latency_seconds: float | None = None,
        latency_next: int | None = None,
        fail_next: int | None = None,
        fail_status: int | None = None,
        fail_rate: float | None = None,
        retry_after: str | float | None = None,
        down_seconds: float | None = None,
        seed: int | None = None,
        batch_disabled: bool | None = None,
    ) -> None:
        """Changes only the knobs given; `reset()` returns to good behaviour."""
        if fail_rate is not None and not 0.0 <= fail_rate <= 1.0:
            raise ValueError("failRate: must be 0..1")
        if fail_status is not None and not 400 <= fail_status <= 599:
            raise ValueError("failStatus: must be an HTTP error status 400..599")
        for name, value in (("latencySeconds", latency_seconds), ("downSeconds", down_seconds)):
            if value is not None and value < 0:
                raise ValueError(f"{name}: must be >= 0")
        with self._lock:
            plan = self._plan
            if latency_seconds is not None:
                plan.latency_seconds = latency_seconds
                plan.latency_next = latency_next
            elif latency_next is not None:
                plan.latency_next = latency_next
            if fail_next is not None:
                plan.fail_next = fail_next
            if fail_status is not None:
                plan.fail_status = fail_status
            if fail_rate is not None:
                plan.fail_rate = fail_rate
            if retry_after is not None:
                plan.retry_after = _retry_after_text(retry_after)
            if down_seconds is not None:
                plan.down_until = time.monotonic() + down_seconds
            if seed is not None:
                self._rng.seed(seed)
            if batch_disabled is not None:
                plan.batch_disabled = batch_disabled

    def set_from_json(self, body: dict[str, Any]) -> None:
        """The admin endpoint's camelCase body: failNext, failStatus, failRate, retryAfter,
        latencySeconds, latencyNext, downSeconds, seed, batchDisabled."""
        known = {*_SETTABLE, "downSeconds", "seed"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a fault setting (known: {', '.join(sorted(known))})")
        for name, value in body.items():
            _check_type(name, value)
        kwargs: dict[str, Any] = {_SETTABLE[k]: v for k, v in body.items() if k in _SETTABLE}
        self.set(**kwargs, down_seconds=body.get("downSeconds"), seed=body.get("seed"))

    def reset(self) -> None:
        with self._lock:
            self._plan = FaultPlan()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = asdict(self._plan)
        data["down_for_seconds"] = max(0.0, data.pop("down_until") - time.monotonic())
        return data

    @property
    def batch_disabled(self) -> bool:
        with self._lock:
            return self._plan.batch_disabled

    def decide(self) -> FaultDecision:
        with self._lock:
            plan = self._plan
            if time.monotonic() < plan.down_until:
                return FaultDecision(fail_status=503, reason="sandbox is down")
            delay = 0.0
            if plan.latency_seconds > 0 and (plan.latency_next is None or plan.latency_next > 0):
                delay = plan.latency_seconds
                if plan.latency_next is not None:
                    plan.latency_next -= 1
            if plan.fail_next > 0:
                plan.fail_next -= 1
                return FaultDecision(delay, plan.fail_status, plan.retry_after, "injected failure")
            if plan.fail_rate > 0 and self._rng.random() < plan.fail_rate:
                return FaultDecision(delay, plan.fail_status, plan.retry_after, "injected random failure")
            return FaultDecision(delay)


def _retry_after_text(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class RequestLog:
    """Counts requests by "METHOD /path" (full path, query excluded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._in_flight = 0

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[f"{method} {path}"] += 1
            self._in_flight += 1

    def finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered (a client may have given up on them)."""
        with self._lock:
            return self._in_flight

    def count(self, method: str | None = None, path: str | None = None, *, prefix: str | None = None) -> int:
        """Requests matching method (any if None), an exact path, and/or a path prefix."""
        total = 0
        with self._lock:
            for key, n in self._counts.items():
                m, _, pth = key.partition(" ")
                if method is not None and m != method.upper():
                    continue
                if path is not None and pth != path:
                    continue
                if prefix is not None and not pth.startswith(prefix):
                    continue
                total += n
        return total

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
