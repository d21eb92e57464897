"""Long-running parts that live beside the mailbox jobs (HTTP API, outbox worker, status reporter...).

The daemon starts them after the scheduler and stops them in reverse order before closing
connections, so a service may rely on the store and the IWD client for its whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Protocol


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Finishes or abandons in-flight work safely (everything durable is already committed)."""
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
