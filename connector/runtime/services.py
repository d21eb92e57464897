"""Long-running parts that live beside the mailbox jobs (HTTP API, outbox worker, status reporter...).

The daemon starts them after the scheduler and stops them in reverse order before closing
connections, so a service may rely on the store and the IWD client for its whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Protocol, runtime_checkable


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Finishes or abandons in-flight work safely (everything durable is already committed)."""
        ...


@runtime_checkable
class OneShot(Protocol):
    """A service whose work can also be done as one round, for `run --once` (the outbox sends
    the replies that are due). Optional: a service without it only runs in the daemon."""

    name: str

    async def run_once(self) -> bool:
        """One round, then close what it opened; False when part of it failed (logged)."""
        ...


class BackgroundLoop:
    """The one task a service runs, with the stop event its loop watches.

    `stop()` sets the event, cancels the task and waits for it, so a service's own stop is a
    single call and its loop sleeps with `pause()` instead of a bare sleep that ignores stopping.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, body: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(body, name=self.name)

    async def pause(self, seconds: float) -> None:
        """Sleeps up to `seconds`; returns at once when the service is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(seconds, 0.0))

    async def stop(self) -> None:
        self.stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
