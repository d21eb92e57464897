"""Runs the local HTTP app inside the daemon's event loop (uvicorn), as a daemon service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import structlog
import uvicorn
from starlette.applications import Starlette

log = structlog.get_logger("connector.api")


class _QuietServer(uvicorn.Server):
    """Leaves SIGTERM/SIGINT to the daemon, which stops the server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    name = "http"

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            log_config=None,  # uvicorn's records go to the root handler: JSON, redacted (connector.logs)
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(), name="http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error, e.g. port in use
                return
            await asyncio.sleep(0.01)
        if self.port == 0 and self._server.servers:
            self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        log.info("http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
