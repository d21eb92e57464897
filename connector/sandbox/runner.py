"""Running the sandbox as a real HTTP server: `SandboxIWD` for tests, `serve()` for the CLI.

uvicorn runs in a background thread with its own event loop, so the same object works from
plain code and from inside a running event loop (pytest-asyncio). `start()` returns only once
the server really answers HTTP, the way aiosmtpd's Controller waits for itself.
`down_for()` closes the listening socket for a while: connections are refused, which is what a
crashed or restarting IWD looks like, unlike the in-app 503 "down" fault.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import uvicorn

from connector.iwd.profile import BASE_PATH
from connector.sandbox.app import DEFAULT_API_KEY, DEFAULT_CCID, create_app
from connector.sandbox.control import SandboxControl, control_of

READY_TIMEOUT_SECONDS = 10.0
HOST = "127.0.0.1"


def _bind(port: int) -> socket.socket:
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets that say so,
    # and without it Nagle + delayed ACK add ~40 ms to every request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class SandboxIWD:
    """A sandbox IWD on 127.0.0.1 (a free port unless `port` is given); a context manager."""

    def __init__(
        self,
        db_path: str | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        ccid: str = DEFAULT_CCID,
        port: int = 0,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_ca_file: str | None = None,
        batch: bool = True,
    ) -> None:
        """`ssl_certfile`/`ssl_keyfile` serve https (e.g. a trustme cert for 127.0.0.1);
        `ssl_ca_file` is what the readiness probe trusts then; `batch=False` serves profile v1
        only (no POST /emails/batch)."""
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if db_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="sandbox-iwd-")
            db_path = str(Path(self._tmpdir.name) / "iwd.db")
        self.db_path = db_path
        self.api_key = api_key
        self.ccid = ccid
        self.app = create_app(db_path, api_key=api_key, ccid=ccid, batch=batch)
        self.port = port
        self.ready_timeout = ready_timeout
        self._ssl = (ssl_certfile, ssl_keyfile)
        self._ssl_ca_file = ssl_ca_file
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._restart: threading.Timer | None = None

    @property
    def control(self) -> SandboxControl:
        """Store, faults and request tally of the running app."""
        return control_of(self.app)

    @property
    def base(self) -> str:
        scheme = "https" if self._ssl[0] else "http"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """What IWDSettings.url should be: http://127.0.0.1:PORT/iwd/v3."""
        return self.base + BASE_PATH

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        with self._lock:
            self._start_server()
        self._wait_ready()
        return self

    async def astart(self) -> Self:
        """start() without blocking a running event loop."""
        return await asyncio.to_thread(self.start)

    def stop(self) -> None:
        with self._lock:
            if self._restart is not None:
                self._restart.cancel()
                self._restart = None
            self._stop_server()
        self.control.store.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def down_for(self, seconds: float) -> None:
        """Stop listening now (connections refused) and come back on the same port after `seconds`."""
        with self._lock:
            self._stop_server()
            self._restart = threading.Timer(seconds, self._come_back)
            self._restart.daemon = True
            self._restart.start()

    def _come_back(self) -> None:
        with self._lock:
            if self._restart is None:  # stopped meanwhile
                return
            self._restart = None
            self._start_server()

    def _start_server(self) -> None:
        sock = _bind(self.port)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=1,
            access_log=False,
            ssl_certfile=self._ssl[0],
            ssl_keyfile=self._ssl[1],
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-iwd-{self.port}", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread

    def _stop_server(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                verify: ssl.SSLContext | bool = True
                if self._ssl_ca_file:
                    verify = ssl.create_default_context(cafile=self._ssl_ca_file)
                elif self._ssl[0]:
                    verify = False  # probing our own server; clients under test still verify
                if httpx.get(self.base + "/sandbox/health", timeout=1, verify=verify).status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"sandbox IWD on {self.base} did not answer within {self.ready_timeout} s ({last}); "
            "try increasing the `ready_timeout` parameter"
        )


def serve(
    port: int, db: str, api_key: str = DEFAULT_API_KEY, ccid: str = DEFAULT_CCID, *, host: str = HOST
) -> None:
    """Blocking: serve the sandbox IWD until Ctrl-C (for `email-connector sandbox-iwd`)."""
    app = create_app(db, api_key=api_key, ccid=ccid)
    print(f"sandbox IWD: http://{host}:{port}{BASE_PATH} (page: http://{host}:{port}/), db {db}")
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off", ws="none", access_log=False)
