"""Replicas benchmark (issue #13): several `email-connector run` processes on one PostgreSQL.

Not part of the test suite; prints figures, asserts nothing about time. Three parts:

1. ingest: items/s with 1, 2 and 3 replicas on 600 IMAP mailboxes (a private Dovecot, the
   sandbox IWD as its own process). Timed from the first delivered message to the last item,
   after the replicas have shared out the leases.
2. failover: 10 × `kill -9` of one of 3 replicas; the time until the survivors hold all of the
   victim's mailboxes (GET /api/v1/replicas), min / median / max.
3. upkeep: database statements per second per replica for lease upkeep, with 600 and 5 000
   idle Maildir mailboxes (poll interval 1 h, so mailbox cycles do not count). Counted with
   pg_stat_statements on a private PostgreSQL cluster started for the run (initdb as the
   `postgres` user, `shared_preload_libraries = pg_stat_statements`); where that cannot start,
   on the shared server at 127.0.0.1:5432 from pg_stat_database (`xact_commit` deltas: one per
   transaction, a lower bound of statements) — the output says which.

    .venv/bin/python bench/replicas.py [--mailboxes 600] [--per-box 10] [--kills 10]
        [--leases 600,5000] [--parts ingest,failover,upkeep] [--ttl 3 --renew 1] [--ingest-ttl 30]

Every wait has a deadline; a part that cannot run (the feature missing: no /api/v1/replicas)
says so and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.config import ConnectorSettings  # noqa: E402
from tests.acceptance.replica_peers import SandboxProcess, wait_until  # noqa: E402
from tests.acceptance.replica_rig import Cluster, Replica, fair, imap_box, maildir_box  # noqa: E402
from tests.peers.dovecot import Dovecot, free_port  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SHARED_PG = "postgresql://postgres@127.0.0.1:5432"
INGEST_DEADLINE_SECONDS = 600.0
READY_SECONDS = 600.0
FAILOVER_DEADLINE_SECONDS = 60.0  # a failover that takes longer is recorded at this value
LEASE_TABLES = ("mailbox_leases", "replicas")  # statements that are lease upkeep by what they touch
IDLE_POLL_SECONDS = 3600  # upkeep part: mailboxes that never cycle during the window


def message(tag: str, n: int) -> bytes:
    return (
        f"From: Customer {n} <c{n}@example.net>\r\nTo: support@example.test\r\n"
        f"Subject: {tag} {n}\r\nMessage-ID: <{tag}-{n}@example.net>\r\n"
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello {n}.\r\n"
    ).encode()


# ---------------------------------------------------------------- PostgreSQL


class Postgres:
    """A server to make databases on: `dsn(name)` for asyncpg, `url(name)` for the connector."""

    def __init__(self, host: str, port: int, counter: str) -> None:
        self.host, self.port, self.counter = host, port, counter

    def dsn(self, name: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{name}"

    def url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/{name}"

    def execute(self, sql: str, name: str = "postgres") -> None:
        asyncio.run(_execute(self.dsn(name), sql))

    def fetch(self, sql: str, name: str = "postgres") -> list[dict[str, Any]]:
        return list(asyncio.run(_fetch(self.dsn(name), sql)))

    @contextlib.contextmanager
    def database(self, prefix: str) -> Iterator[str]:
        name = f"{prefix}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        self.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@contextlib.contextmanager
def private_postgres() -> Iterator[Postgres | None]:
    """A throwaway cluster with pg_stat_statements loaded, or None when one cannot start."""
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/dev/shm"))
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    started = False
    try:
        subprocess.run(
            [
                *as_postgres,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
            "-c fsync=off -c max_connections=300"
        )
        subprocess.run(
            [
                *as_postgres,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(base / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        started = True
        server = Postgres("127.0.0.1", port, "pg_stat_statements (private cluster)")
        server.execute("CREATE EXTENSION pg_stat_statements")
        yield server
    except subprocess.CalledProcessError as exc:
        print(f"private PostgreSQL did not start ({exc.stderr.decode(errors='replace')[-300:]})")
        yield None
    finally:
        if started:
            subprocess.run(
                [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                capture_output=True,
            )
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- helpers


def start_all(cluster: Cluster, *names: str) -> list[Replica]:
    """Starts the members together; with hundreds of mailboxes start-up takes a while."""
    members = cluster.start(*names, ready=False)
    for member in members:
        member.wait_ready(READY_SECONDS)
    return members


def has_replicas_view(cluster: Cluster) -> bool:
    member = cluster.live()[0]
    try:
        return member.get("/api/v1/replicas").status_code == 200
    except httpx.HTTPError:
        return False


def wait_fair(cluster: Cluster, total: int, within: float) -> str | None:
    """Waits until the live members hold fair shares; None when they do, else why not (no replicas
    view: the feature is missing; or not within the deadline: the figures then say so)."""
    if not has_replicas_view(cluster):
        return "no /api/v1/replicas: every replica serves every mailbox"
    started = time.monotonic()
    try:
        wait_until(
            lambda: fair(cluster.holdings(), total) and len(cluster.holdings()) == len(cluster.live()),
            within,
            "fair shares",
            every=0.2,
        )
    except AssertionError:
        return f"no fair share within {within:g} s: holdings {cluster.holdings()}"
    print(f"    fair shares after {time.monotonic() - started:.1f} s", flush=True)
    return None


def inbound_items(iwd: SandboxProcess) -> int:
    return len(iwd.inbound_message_ids())


# ---------------------------------------------------------------- parts


def bench_ingest(args: argparse.Namespace, pg: Postgres, work: Path) -> list[str]:
    work.mkdir(parents=True)
    lines = []
    counts = [int(x) for x in args.replicas.split(",")]
    total = args.mailboxes * args.per_box
    with Dovecot(root=work / "dovecot", spare_users=args.mailboxes * len(counts)) as dovecot:
        iwd = SandboxProcess(work)
        try:
            for run, replicas in enumerate(counts):
                iwd.reset()
                users = [dovecot.add_user() for _ in range(args.mailboxes)]
                boxes = [imap_box(dovecot, u, f"b{i:04d}") for i, u in enumerate(users)]
                with pg.database("bench_ingest") as name:
                    cluster = Cluster(
                        work / f"ingest{run}",
                        pg.url(name),
                        iwd.url,
                        boxes,
                        replicas=leases(args, args.ingest_ttl),
                    )
                    cluster.workdir.mkdir(exist_ok=True)
                    try:
                        start_all(cluster, *[f"r{i + 1}" for i in range(replicas)])
                        shared = wait_fair(cluster, args.mailboxes, 300)
                        started = time.monotonic()
                        for b, user in enumerate(users):
                            first = b * args.per_box
                            dovecot.deliver(
                                user[0], [message(f"i{run}", n) for n in range(first, first + args.per_box)]
                            )
                        wait_until(
                            lambda: inbound_items(iwd) >= total,
                            INGEST_DEADLINE_SECONDS,
                            f"{total} items",
                            0.5,
                        )
                        elapsed = time.monotonic() - started
                    finally:
                        cluster.stop_all()
                note = f" ({shared})" if shared else ""
                line = (
                    f"ingest: {replicas} replica(s), {args.mailboxes} mailboxes, {total} messages: "
                    f"{elapsed:.1f} s, {total / elapsed:,.0f} items/s{note}"
                )
                print(line, flush=True)
                lines.append(line)
        finally:
            iwd.stop()
    return lines


def bench_failover(args: argparse.Namespace, pg: Postgres, work: Path) -> list[str]:
    work.mkdir(parents=True)
    boxes_n = 60
    iwd = SandboxProcess(work)
    times: list[float] = []
    try:
        boxes = [maildir_box(work / "md", f"f{i:03d}") for i in range(boxes_n)]
        with pg.database("bench_failover") as name:
            cluster = Cluster(work / "failover", pg.url(name), iwd.url, boxes, replicas=leases(args))
            cluster.workdir.mkdir(exist_ok=True)
            try:
                members = start_all(cluster, "r1", "r2", "r3")
                if (why := wait_fair(cluster, boxes_n, 60)) is not None:
                    return [f"failover: skipped ({why})"]
                for k in range(args.kills):
                    victim = members[k % 3]
                    orphans = {b for b, owner in cluster.owners().items() if owner == victim.name}
                    victim.kill()
                    killed = time.monotonic()
                    try:
                        wait_until(
                            lambda v=victim.name, o=orphans: all(
                                cluster.owners().get(b) not in (None, v) for b in o
                            ),
                            FAILOVER_DEADLINE_SECONDS,
                            "survivors hold the victim's mailboxes",
                            0.05,
                        )
                    except AssertionError:
                        print(f"failover {k + 1}: not within {FAILOVER_DEADLINE_SECONDS:g} s", flush=True)
                    times.append(time.monotonic() - killed)
                    print(f"failover {k + 1}: {times[-1]:.2f} s ({len(orphans)} mailboxes)", flush=True)
                    victim.start().wait_ready(READY_SECONDS)
                    wait_fair(cluster, boxes_n, 60)
            finally:
                cluster.stop_all()
    finally:
        iwd.stop()
    line = (
        f"failover over {len(times)} kills (TTL {args.ttl:g} s, renew {args.renew:g} s, "
        f"{boxes_n} mailboxes): "
        f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s"
    )
    print(line)
    return [line]


def bench_upkeep(args: argparse.Namespace, pg: Postgres, work: Path) -> list[str]:
    work.mkdir(parents=True)
    lines = []
    iwd = SandboxProcess(work)
    try:
        for count in (int(x) for x in args.leases.split(",")):
            boxes = [
                maildir_box(work / f"up{count}", f"u{i:05d}", poll_interval_seconds=IDLE_POLL_SECONDS)
                for i in range(count)
            ]
            with pg.database("bench_upkeep") as name:
                cluster = Cluster(
                    work / f"upkeep{count}",
                    pg.url(name),
                    iwd.url,
                    boxes,
                    replicas=leases(args, args.upkeep_ttl),
                    outbox={"poll_interval_seconds": IDLE_POLL_SECONDS},
                )
                cluster.workdir.mkdir(exist_ok=True)
                try:
                    start_all(cluster, "r1", "r2")
                    if (why := wait_fair(cluster, count, 300)) is not None:
                        lines.append(f"upkeep {count}: skipped ({why})")
                        continue
                    before = counter(pg, name)
                    started = time.monotonic()
                    time.sleep(args.window)  # a measurement window, not a wait for an outcome
                    after = counter(pg, name)
                    elapsed = time.monotonic() - started
                finally:
                    cluster.stop_all()
            per_second = (after["total"] - before["total"]) / elapsed / 2
            on_leases = ""
            if after["leases"] is not None:
                lease_rate = (after["leases"] - before["leases"]) / elapsed / 2
                on_leases = f" ({lease_rate:.2f}/s name the lease or replica tables)"
            line = (
                f"upkeep: {count} leases over 2 replicas (TTL {args.upkeep_ttl:g} s, renew TTL/3), "
                f"{elapsed:.0f} s window: {per_second:.2f} statements/s per replica{on_leases} [{pg.counter}]"
            )
            print(line, flush=True)
            top = sorted(
                ((after["by_query"].get(q, 0) - before["by_query"].get(q, 0), q) for q in after["by_query"]),
                reverse=True,
            )[:5]
            for calls, query in top:
                if calls:
                    print(f"    {calls:6d}  {' '.join(query.split())[:120]}")
            lines.append(line)
    finally:
        iwd.stop()
    return lines


def counter(pg: Postgres, name: str) -> dict[str, Any]:
    """Statements so far on database `name` (pg_stat_statements), else its committed transactions."""
    if pg.counter.startswith("pg_stat_statements"):
        rows = pg.fetch(
            "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            f"WHERE d.datname = '{name}'"
        )
        by_query = {str(r["query"]): int(r["calls"]) for r in rows}
        leases = sum(n for q, n in by_query.items() if any(t in q for t in LEASE_TABLES))
        return {"total": sum(by_query.values()), "leases": leases, "by_query": by_query}
    rows = pg.fetch(f"SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = '{name}'")
    return {"total": int(rows[0]["n"]), "leases": None, "by_query": {}}


FEATURE = "replicas" in ConnectorSettings.model_fields  # before issue #13 the key is refused


def leases(args: argparse.Namespace, ttl: float | None = None) -> dict[str, float] | None:
    """The `replicas:` block (None where this code base has no such key)."""
    if not FEATURE:
        return None
    if ttl is not None:
        return {"lease_ttl_seconds": ttl}
    return {"lease_ttl_seconds": args.ttl, "renew_seconds": args.renew}


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=600)
    parser.add_argument("--per-box", type=int, default=10, help="messages per mailbox in the ingest part")
    parser.add_argument("--replicas", default="1,2,3", help="replica counts for the ingest part")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--leases", default="600,5000", help="mailbox counts for the upkeep part")
    parser.add_argument(
        "--ingest-ttl", type=float, default=30.0, help="lease TTL for the ingest part (default)"
    )
    parser.add_argument("--ttl", type=float, default=3.0, help="lease TTL for the failover part")
    parser.add_argument("--renew", type=float, default=1.0)
    parser.add_argument(
        "--upkeep-ttl", type=float, default=30.0, help="lease TTL for the upkeep part (default)"
    )
    parser.add_argument("--window", type=float, default=30.0, help="upkeep measurement window, seconds")
    parser.add_argument("--parts", default="ingest,failover,upkeep")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-", dir="/dev/shm"))
    os.chmod(work, 0o755)
    results: list[str] = []
    try:
        with private_postgres() as private:
            pg = private or Postgres("127.0.0.1", 5432, "pg_stat_database xact_commit (shared server)")
            print(f"PostgreSQL: {pg.host}:{pg.port}, statements counted by {pg.counter}", flush=True)
            if "ingest" in parts:
                results += bench_ingest(args, pg, work / "ingest")
            if "failover" in parts:
                results += bench_failover(args, pg, work / "failover")
            if "upkeep" in parts:
                results += bench_upkeep(args, pg, work / "upkeep")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(results))


if __name__ == "__main__":
    main()
