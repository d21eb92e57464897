"""IMAP ingest benchmark: our provider vs fetchmail vs getmail6 on the same 10,000 small messages.

Not part of the test suite. Run as root (tmpfs mount for stable numbers, chown to nobody):

    .venv/bin/python bench/imap_bench.py [--messages 10000] [--no-append]

Each client gets its own Dovecot user holding identical mail, so every run starts from unread
mail. Ours: fetch (limit 200, batches of 50) + `mark_read` post-action per message (what the
pipeline does after each commit); also the full pipeline into an in-process sandbox IWD when
`connector.sync.pipeline` imports. fetchmail: `bsmtp /dev/null` (marks \\Seen). getmail6: `MDA_smtp`
into an aiosmtpd sink that discards. Results are appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.config import MailboxSettings  # noqa: E402
from connector.models import PostAction  # noqa: E402
from providers.imap import ImapInboundProvider  # noqa: E402
from tests.peers.dovecot import Dovecot, sample_message  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, str]]:
    """A tmpfs mount when we can (root), else a plain dir under /tmp."""
    base = Path(tempfile.mkdtemp(prefix="imapbench-", dir="/tmp"))
    os.chmod(base, 0o755)
    mounted = False
    if os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=2g,mode=755", "tmpfs", str(base)], capture_output=True
            ).returncode
            == 0
        )
    try:
        yield base, "tmpfs" if mounted else "disk (/tmp)"
    finally:
        if mounted and subprocess.run(["umount", str(base)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(base)], check=False)  # lazy: a handle still open
        shutil.rmtree(base, ignore_errors=True)


def settings(server: Dovecot, user: tuple[str, str], security: str) -> MailboxSettings:
    port = server.tls_port if security == "tls" else server.plain_port
    return MailboxSettings.model_validate(
        {
            "id": "bench",
            "address": "support@example.test",
            "provider": "imap",
            "post_action": "mark_read",
            "imap": {
                "host": "127.0.0.1",
                "port": port,
                "security": security,
                "username": user[0],
                "password": user[1],
                "ca_file": server.ca_file,
                "timeout_seconds": 60,
                "fetch_batch": 50,
            },
        }
    )


async def run_ours(
    server: Dovecot, user: tuple[str, str], security: str, expect: int, mark: bool = True
) -> float:
    provider = ImapInboundProvider(settings(server, user, security))
    action = PostAction.parse("mark_read")
    started = time.perf_counter()
    cursor: str | None = None
    count = 0
    try:
        while True:
            result = await provider.fetch("INBOX", cursor, 200)
            if mark and result.messages:  # as the pipeline does: one UID STORE per fetched batch
                await provider.apply_post_actions(result.messages, action)
            count += len(result.messages)
            cursor = result.cursor
            if not result.more:
                break
    finally:
        await provider.close()
    elapsed = time.perf_counter() - started
    assert count == expect, (count, expect)
    return elapsed


@contextlib.contextmanager
def sandbox_process(workdir: Path) -> Iterator[int]:
    """The sandbox IWD as its own process on a free port, as a real IWD would be."""
    from tests.peers.dovecot import free_port

    port = free_port()
    command = [str(VENV_BIN / "email-connector"), "sandbox-iwd", "--port", str(port)]
    sandbox = subprocess.Popen(
        [*command, "--db", str(workdir / "iwd.db")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield port
    finally:
        sandbox.terminate()
        sandbox.wait(10)


async def run_pipeline(
    server: Dovecot, user: tuple[str, str], workdir: Path, port: int, expect: int, *, batch: bool = True
) -> float:
    """The whole pipeline (fetch, convert, create item, ledger, \\Seen) into the sandbox IWD."""
    from connector.iwd import IWDClient
    from connector.store import open_store
    from connector.sync.pipeline import MailboxSync
    from tests.peers.sandbox import iwd_settings

    box = settings(server, user, "plain")
    store = await open_store(f"sqlite+aiosqlite:///{workdir}/state-{user[0]}.db")  # one ledger per run
    provider = ImapInboundProvider(box)
    try:
        async with IWDClient(iwd_settings(f"http://127.0.0.1:{port}/iwd/v3")) as iwd:
            deadline = time.monotonic() + 20
            while True:  # wait until the sandbox really answers
                try:
                    await iwd.ping()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            async with httpx.AsyncClient() as admin:  # an IWD without batch create, if asked
                faults = await admin.post(
                    f"http://127.0.0.1:{port}/sandbox/faults", json={"batchDisabled": not batch}
                )
                faults.raise_for_status()
            started = time.perf_counter()
            report = await MailboxSync(box, provider, store, iwd).run_cycle()
            elapsed = time.perf_counter() - started
            assert report.delivered == expect, (report.delivered, expect)
            assert report.acted == expect, (report.acted, expect)
    finally:
        await provider.close()
        await store.close()
    return elapsed


def run_fetchmail(server: Dovecot, user: tuple[str, str], workdir: Path) -> float:
    rc = workdir / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 service {server.plain_port} protocol IMAP timeout 60\n"
        f'  user "{user[0]}" password "{user[1]}" is root here\n'
        "  keep fetchall no rewrite\n  sslproto ''\n  bsmtp /dev/null\n"
    )
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(workdir), "FETCHMAILHOME": str(workdir)}
    started = time.perf_counter()
    proc = subprocess.run(
        ["fetchmail", "-f", str(rc), "-N", "--nosyslog", "-s"], capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"fetchmail failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed


def run_getmail(server: Dovecot, user: tuple[str, str], workdir: Path, expect: int) -> float:
    from aiosmtpd.controller import Controller

    class Sink:
        count = 0

        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            Sink.count += 1
            return "250 OK"

    from tests.peers.dovecot import free_port

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        gmdir = workdir / "getmail"
        gmdir.mkdir(exist_ok=True)
        (gmdir / "getmailrc").write_text(
            "[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\n"
            f"port = {server.plain_port}\nusername = {user[0]}\npassword = {user[1]}\n"
            'mailboxes = ("INBOX",)\n\n'
            f"[destination]\ntype = MDA_smtp\nhost = 127.0.0.1\nport = {controller.port}\n\n"
            "[options]\nverbose = 0\nread_all = true\ndelete = false\n"
        )
        started = time.perf_counter()
        proc = subprocess.run(
            [str(VENV_BIN / "getmail"), "--getmaildir", str(gmdir), "--rcfile", "getmailrc"],
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"getmail failed ({proc.returncode}): {proc.stderr[-500:]}")
        assert Sink.count == expect, (Sink.count, expect)
    finally:
        controller.stop()
    return elapsed


def append_section(doc: Path, heading: str, block: str) -> None:
    """Adds `block` at the end of the `heading` section (other sections stay untouched)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + ("\n\n" if text else "") + heading + "\n\n" + block
    else:
        nxt = text.find("\n## ", start + len(heading))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:end].rstrip("\n") + "\n\n" + block + text[end:]
    doc.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    n = args.messages
    # the daemon's logging (one JSON line per item), to /dev/null so the terminal is not the bottleneck
    from connector.logs import configure

    configure(stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    mail = [sample_message(i) for i in range(n)]
    with workspace() as (base, medium), Dovecot(base / "dovecot") as server:
        users = {
            name: server.add_user()
            for name in (
                "ours_fetch",
                "ours_plain",
                "ours_tls",
                "pipeline",
                "pipeline_single",
                "fetchmail",
                "getmail",
            )
        }
        for user in users.values():
            server.deliver(user[0], mail)
        print(f"{n} messages of ~{sum(map(len, mail)) // n} B per user, mail store on {medium}")
        results: dict[str, float | None] = {}
        results["ours (plain, fetch only, no post-action)"] = asyncio.run(
            run_ours(server, users["ours_fetch"], "plain", n, mark=False)
        )
        results["ours (plain, fetch + mark_read)"] = asyncio.run(
            run_ours(server, users["ours_plain"], "plain", n)
        )
        results["ours (TLS, fetch + mark_read)"] = asyncio.run(run_ours(server, users["ours_tls"], "tls", n))
        with sandbox_process(base) as port:
            results["ours, full pipeline → sandbox IWD (plain)"] = asyncio.run(
                run_pipeline(server, users["pipeline"], base, port, n)
            )
        with sandbox_process(base) as port:
            results["ours, full pipeline, IWD without batch create (plain)"] = asyncio.run(
                run_pipeline(server, users["pipeline_single"], base, port, n, batch=False)
            )
        results["fetchmail 6.4 → bsmtp /dev/null (plain)"] = run_fetchmail(server, users["fetchmail"], base)
        results["getmail6 → MDA_smtp aiosmtpd sink (plain)"] = (
            run_getmail(server, users["getmail"], base, n) if (VENV_BIN / "getmail").exists() else None
        )
    peer = results["fetchmail 6.4 → bsmtp /dev/null (plain)"] or 1.0  # the yardstick
    lines = []
    for name, seconds in results.items():
        if seconds is None:
            lines.append(f"| {name} | skipped | |")
            continue
        rate = f"{n / seconds:,.0f} msg/s"
        lines.append(f"| {name} | {seconds:.2f} s | {rate} | {seconds / peer:.2f}× fetchmail |")
    print("\n".join(lines))
    pipeline = results["ours, full pipeline → sandbox IWD (plain)"] or 0.0
    print(f"full pipeline / fetchmail bare download = {pipeline / peer:.2f} (target <= 1.00)")
    if not args.no_append:
        doc = ROOT / "docs" / "benchmarks.md"
        stamp = time.strftime("%Y-%m-%d %H:%M")
        block = (
            f"### {stamp} — {n} small messages, local Dovecot 2.3 on {medium}, "
            f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores\n\n"
            "| client | time | rate | ratio |\n|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
        )
        append_section(doc, "## IMAP ingest", block)
        print(f"appended to {doc}")


if __name__ == "__main__":
    main()
