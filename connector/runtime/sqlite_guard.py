"""SQLite serves one daemon only: a second `run` on the same file refuses to start.

The guard is an OS lock (fcntl, exclusive, non-blocking) on `<database>.lock` beside the file,
held for the daemon's whole life. The kernel drops it when the process dies however it dies, so a
stale lock file never blocks a restart. The file holds the holder's pid and host, to name it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from connector.errors import ConnectorError
from connector.store.engine import parse_url


class StoreInUse(ConnectorError):
    """Another daemon holds the SQLite file (exit code 2: a configuration problem, not a crash)."""

    code = "store_in_use"


class SqliteGuard:
    """Holds the lock on one SQLite database file until `release()`."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Takes the lock or raises StoreInUse naming the file and the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise StoreInUse(
                f"the SQLite store {self.database} is in use by another daemon ({holder}); SQLite "
                "serves one process only: stop it, or use PostgreSQL to run several replicas",
                path=str(self.database),
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def sqlite_guard(store_url: str) -> SqliteGuard | None:
    """The guard for a SQLite file store; None for PostgreSQL and in-memory databases."""
    url = parse_url(store_url)
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return SqliteGuard(Path(database).expanduser().resolve())
