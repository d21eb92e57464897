"""The lifecycle every in-process HTTP peer shares: serve in a thread, wait until it listens, stop.

A peer builds its server (bound to 127.0.0.1 port 0) and hands it to `ThreadedPeer.__init__`;
`close()` stops the thread and the socket and then runs `_cleanup()` for whatever else the peer
owns (temp dirs).
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Self

START_TIMEOUT_SECONDS = 5.0


class ThreadedPeer:
    peer_name = "peer"

    def __init__(self, server: ThreadingHTTPServer) -> None:
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Serves in a daemon thread and returns once a TCP connect to the port succeeds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.peer_name} did not listen on {self.port}") from None
                time.sleep(0.01)

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(START_TIMEOUT_SECONDS)
            self._thread = None
        self._server.server_close()
        self._cleanup()

    def _cleanup(self) -> None:
        """What the peer owns besides its socket; nothing by default."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
