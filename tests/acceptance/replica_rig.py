"""Several `email-connector run` replicas on one PostgreSQL, as real processes (issue #13).

The rig starts what a Kubernetes Deployment would run: N daemons with one configuration each
(same mailboxes, same database, own `replica_id` and HTTP port), the sandbox IWD as its own
process, and reads what the peers saw: items in the sandbox's SQLite file, IMAP sessions in
Dovecot's log, messages at the SMTP sink. Daemon output goes to files (a pipe that nobody
reads would stop a busy daemon once it fills).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import yaml

from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID
from tests.connector.outbox.smtp_peer import SmtpPeer
from tests.peers.dovecot import Dovecot, free_port

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
TOKEN = "replicas-token-5d1e"
READY_SECONDS = 30.0
STOP_SECONDS = 30.0
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


# ---------------------------------------------------------------- PostgreSQL


def postgres_listening() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


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


# ---------------------------------------------------------------- one replica


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
    env.update(extra)
    return env


@dataclass
class Replica:
    """One `email-connector run` process with its own configuration file and HTTP port."""

    name: str
    config: Path
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def out_path(self) -> Path:
        return self.workdir / f"{self.name}.out"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, **env: str) -> Replica:
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "connector", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(**env),
            )
        self.started_at = time.monotonic()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, within: float = READY_SECONDS) -> Replica:
        """Until its HTTP server answers, which it does once every service has started."""

        def ready() -> bool:
            assert self.alive(), f"{self.name} exited at start:\n{self.tail()}"
            try:
                return httpx.get(self.base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, within, f"{self.name} answers /healthz")
        return self

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, its sockets closed by the kernel."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def terminate(self, within: float = STOP_SECONDS) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.signal_stop()
        return self.wait_stopped(within)

    def signal_stop(self) -> None:
        """SIGTERM once (a second one during shutdown is not what an orchestrator sends)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, within: float = STOP_SECONDS) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within {within} s:\n{self.tail()}") from None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.out_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)

    def replicas_view(self) -> list[dict[str, Any]]:
        """GET /api/v1/replicas: the live replicas and the mailboxes each holds."""
        resp = self.get("/api/v1/replicas")
        resp.raise_for_status()
        return list(resp.json()["replicas"])

    def status_rows(self) -> list[dict[str, Any]]:
        resp = self.get("/api/v1/status")
        resp.raise_for_status()
        return list(resp.json()["mailboxes"])

    def metric(self, name: str) -> float:
        """The sum of every sample of `name` at /metrics (all label sets)."""
        resp = self.get("/metrics")
        resp.raise_for_status()
        return metric_sum(resp.text, name)

    def post_reply(self, reply_id: str, body: dict[str, Any]) -> int:
        resp = httpx.post(
            self.base + "/api/v1/replies",
            json={"id": reply_id, **body},
            headers={"authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        return resp.status_code


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- configuration


def imap_box(dovecot: Dovecot, user: tuple[str, str], mailbox_id: str, **extra: Any) -> dict[str, Any]:
    """An IMAP mailbox on the rig's Dovecot (plain on loopback: the cheapest session)."""
    return {
        "id": mailbox_id,
        "address": user[0],
        "provider": "imap",
        "imap": {
            "host": "127.0.0.1",
            "port": dovecot.plain_port,
            "security": "plain",
            "username": user[0],
            "password": user[1],
            "timeout_seconds": 10,
        },
        "poll_interval_seconds": 1,
        "post_action": "mark_read",
        **extra,
    }


def maildir_box(root: Path, mailbox_id: str, **extra: Any) -> dict[str, Any]:
    path = root / mailbox_id
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return {
        "id": mailbox_id,
        "address": f"{mailbox_id}@example.com",
        "provider": "maildir",
        "maildir": {"path": str(path)},
        "poll_interval_seconds": 1,
        **extra,
    }


@dataclass
class Cluster:
    """The replicas of one test: one shared configuration, one file per replica."""

    workdir: Path
    store_url: str
    iwd_url: str
    mailboxes: list[dict[str, Any]]
    replicas: dict[str, Any] | None = None  # the `replicas:` block; None leaves it out
    outbox: dict[str, Any] = field(default_factory=lambda: {"poll_interval_seconds": 0.2})
    members: dict[str, Replica] = field(default_factory=dict)

    def write_config(self, name: str, port: int) -> Path:
        data: dict[str, Any] = {
            "iwd": {
                "url": self.iwd_url,
                "api_key": DEFAULT_API_KEY,
                "ccid": DEFAULT_CCID,
                "timeout_seconds": 5,
                "max_retry_seconds": 5,
            },
            "store": {"url": self.store_url},
            "http": {"host": "127.0.0.1", "port": port, "token": TOKEN},
            "outbox": {"iwd_queue_enabled": False, **self.outbox},
            "reload": {"watch_file": False},
            "max_concurrent_mailboxes": 64,
            "mailboxes": self.mailboxes,
        }
        if self.replicas is not None:
            data["replicas"] = {"replica_id": name, **self.replicas}
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def replica(self, name: str) -> Replica:
        """The member called `name` (configured on first use; keeps its port across restarts)."""
        if name not in self.members:
            port = free_port()
            self.members[name] = Replica(name, self.write_config(name, port), port, self.workdir)
        return self.members[name]

    def start(self, *names: str, ready: bool = True, **env: str) -> list[Replica]:
        started = [self.replica(n).start(**env) for n in names]
        if ready:
            for r in started:
                r.wait_ready()
        return started

    def live(self) -> list[Replica]:
        return [r for r in self.members.values() if r.alive()]

    def owners(self) -> dict[str, str]:
        """mailbox id -> replica id, as the live replicas report it (the first that answers)."""
        for member in self.live():
            try:
                view = member.replicas_view()
            except (httpx.HTTPError, KeyError, ValueError):
                continue
            return {box: r["replicaId"] for r in view for box in r["mailboxes"]}
        return {}

    def holdings(self) -> dict[str, int]:
        """replica id -> how many mailboxes it holds (live replicas only)."""
        counts = {r.name: 0 for r in self.live()}
        for owner in self.owners().values():
            counts[owner] = counts.get(owner, 0) + 1
        return counts

    def stop_all(self) -> None:
        """SIGTERM to every running member at once (a paused one is resumed first), then waits."""
        running = [m for m in self.members.values() if m.alive()]
        for member in running:
            member.resume()
            member.signal_stop()
        for member in running:
            with contextlib.suppress(AssertionError):
                member.wait_stopped()

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {r.name}\n{r.tail(chars)}" for r in self.members.values())


def fair(counts: dict[str, int], total: int) -> bool:
    """Each replica holds its fair share ±1, and together they hold all `total` mailboxes."""
    if not counts or sum(counts.values()) != total:
        return False
    share = total / len(counts)
    return all(abs(n - share) <= 1 for n in counts.values())


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


def received_ids(smtp: SmtpPeer) -> dict[str, int]:
    """Message-ID -> how many times the sink received it."""
    return smtp.by_message_id()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:3000]
