"""Several `email-connector run` replicas on one PostgreSQL, as real processes (issue #13).

The rig starts what a Kubernetes Deployment would run: N daemons with one configuration each
(same mailboxes, same database, own `replica_id` and HTTP port), and asks them over HTTP what
they hold. What the peers saw (items, IMAP sessions, flags) is read by replica_peers.py. Daemon
output goes to files: a pipe that nobody reads would stop a busy daemon once it fills.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID
from tests.acceptance.replica_peers import READY_SECONDS, child_env, wait_until
from tests.peers.dovecot import Dovecot, free_port

TOKEN = "replicas-token-5d1e"
STOP_SECONDS = 30.0


# ---------------------------------------------------------------- one replica


@dataclass
class Replica:
    """One `email-connector run` process with its own configuration file and HTTP port."""

    name: str
    config: Path
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    paused: bool = False  # SIGSTOPped: alive, but its HTTP server answers nobody

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
        self.paused = False
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
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

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
        """Members running and not paused."""
        return [r for r in self.members.values() if r.alive() and not r.paused]

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
        running = [m for m in self.members.values() if m.alive()]  # paused ones too
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
