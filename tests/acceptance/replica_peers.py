"""What the peers of a replica test saw, read from outside the daemons: a PostgreSQL database
made for the test, the sandbox IWD as its own process (its items straight from its SQLite file),
and Dovecot's own log of IMAP sessions and its flags (doveadm: no session of our own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from tests.peers.dovecot import Dovecot, free_port
from tests.peers.postgres import PG_HOST, PG_PORT

PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
READY_SECONDS = 30.0
POLL_SECONDS = 0.1

T = TypeVar("T")


# ---------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], T], within: float, what: str, every: float = POLL_SECONDS) -> T:
    """Polls until `predicate()` is truthy and returns it; fails naming what it waited for."""
    deadline = time.monotonic() + within
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within} s: {what}")
        time.sleep(every)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
    env.update(extra)
    return env


# ---------------------------------------------------------------- PostgreSQL


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _fetch(dsn: str, query: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


@dataclass
class Database:
    """A PostgreSQL database made for one test (dropped afterwards)."""

    name: str

    @property
    def url(self) -> str:
        """The connector's `store.url`."""
        return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{self.name}"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{self.name}"

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return list(_run(_fetch(self.dsn, sql, *args)))

    def outbox_states(self) -> dict[str, str]:
        """reply id -> state."""
        return {r["id"]: r["state"] for r in self.query("SELECT id, state FROM outbox")}

    def in_data_window(self) -> list[str]:
        """Replies whose attempt is between the DATA command and recording its outcome."""
        rows = self.query("SELECT id FROM outbox WHERE state = 'sending' AND phase = 'data'")
        return [r["id"] for r in rows]


@contextlib.contextmanager
def fresh_database(prefix: str = "replicas") -> Iterator[Database]:
    db = Database(f"{prefix}_{uuid.uuid4().hex[:12]}")
    _run(_execute(PG_ADMIN_DSN, f'CREATE DATABASE "{db.name}"'))
    try:
        yield db
    finally:
        _run(_execute(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))


# ---------------------------------------------------------------- the sandbox IWD, its own process


class SandboxProcess:
    """`email-connector sandbox-iwd --port P --db FILE` as a child process."""

    def __init__(self, workdir: Path) -> None:
        self.db_path = workdir / "sandbox-iwd.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/iwd/v3"
        self._log = open(workdir / "sandbox-iwd.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "sandbox-iwd",
                "--port",
                str(self.port),
                "--db",
                str(self.db_path),
            ],
            stdout=self._log,
            stderr=self._log,
            env=child_env(),
        )
        wait_until(self._healthy, READY_SECONDS, f"sandbox IWD on {self.base}")

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, "the sandbox IWD exited at start"
        try:
            return httpx.get(self.base + "/sandbox/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def reset(self) -> None:
        httpx.post(self.base + "/sandbox/reset", timeout=10).raise_for_status()

    def set_faults(self, **faults: Any) -> None:
        """E.g. latencySeconds=2 (every profile request waits that long before it is handled)."""
        httpx.post(self.base + "/sandbox/faults", json=faults, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(self.base + "/sandbox/faults", timeout=10).raise_for_status()

    def requests(self, key: str) -> int:
        """How many requests "METHOD /path" the sandbox has received."""
        return int(httpx.get(self.base + "/sandbox/requests", timeout=10).json().get(key, 0))

    def inbound_message_ids(self) -> list[str]:
        """The Message-ID of every inbound item, one entry per item (duplicates kept)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)) as db:
            rows = db.execute(
                "SELECT json_extract(body, '$.messageId') FROM items WHERE direction = 'inbound'"
            ).fetchall()
        return [str(r[0]) for r in rows]


# ---------------------------------------------------------------- what Dovecot saw

_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)"
_LOGIN = re.compile(_STAMP + r" imap-login: Info: Login: user=<([^>]*)>.*session=<([^>]+)>")
_END = re.compile(
    _STAMP + r" imap\(([^)]*)\)<\d+><([^>]+)>: Info: (?:Disconnected|Logged out|Connection closed)"
)


@dataclass(frozen=True)
class Session:
    user: str
    session: str
    start: datetime
    end: datetime | None  # None: still open when the log was read


def imap_sessions(dovecot: Dovecot) -> list[Session]:
    """Every IMAP session in Dovecot's log: user, login time, logout time."""
    starts: dict[str, tuple[str, datetime]] = {}
    ends: dict[str, datetime] = {}
    for line in dovecot.log_file.read_text(errors="replace").splitlines():
        if m := _LOGIN.match(line):
            starts[m.group(3)] = (m.group(2), datetime.fromisoformat(m.group(1)))
        elif m := _END.match(line):
            ends[m.group(3)] = datetime.fromisoformat(m.group(1))
    return [Session(user, sid, at, ends.get(sid)) for sid, (user, at) in starts.items()]


def concurrent_sessions(sessions: list[Session]) -> list[tuple[Session, Session]]:
    """Pairs of sessions on one mailbox that were open at the same time (the server's view)."""
    by_user: dict[str, list[Session]] = {}
    for s in sessions:
        by_user.setdefault(s.user, []).append(s)
    clashes = []
    for user_sessions in by_user.values():
        user_sessions.sort(key=lambda s: s.start)
        longest: Session | None = None  # of the sessions seen so far, the one that ended last
        for s in user_sessions:
            if longest is not None and (longest.end is None or longest.end > s.start):
                clashes.append((longest, s))
            if longest is None or (longest.end is not None and (s.end is None or s.end > longest.end)):
                longest = s
    return clashes


def all_sessions_closed(dovecot: Dovecot) -> bool:
    return all(s.end is not None for s in imap_sessions(dovecot))


def seen_count(dovecot: Dovecot, user: str) -> int:
    """Messages flagged \\Seen in the user's INBOX (doveadm: no IMAP session of our own)."""
    out = dovecot.doveadm("search", "-u", user, "mailbox", "INBOX", "SEEN").stdout
    return len(out.splitlines())  # one "<mailbox guid> <uid>" line per message


def clear_seen(dovecot: Dovecot, user: str) -> None:
    """Takes \\Seen off every message in the user's INBOX."""
    dovecot.doveadm("flags", "remove", "-u", user, "\\Seen", "mailbox", "INBOX", "ALL")
