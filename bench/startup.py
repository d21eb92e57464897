"""Start-up benchmark: how soon mail already waiting becomes items after `email-connector run`.

Not part of the test suite. Issue #12's target: a backlog of 200 messages on an IMAP mailbox with
IDLE on and a 60 s interval is delivered within 5 s of `run`. Each run gets a fresh Dovecot user
holding the backlog, a fresh store and an empty sandbox IWD, then starts the daemon as its own
process and watches the sandbox's item count; the clock starts right before the process does, so
the figures include Python's start-up and imports.

    .venv/bin/python bench/startup.py [--messages 200] [--runs 3] [--code DIR] [--no-append]

`--code DIR` runs the connector from another checkout (e.g. /work/main, for a before/after pair).
Results are appended to docs/benchmarks.md unless --no-append.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.imap_bench import append_section, workspace  # noqa: E402
from connector.sandbox import DEFAULT_API_KEY, SandboxIWD  # noqa: E402
from tests.acceptance.daemon_process import write_imap_config  # noqa: E402
from tests.peers.dovecot import Dovecot, sample_message  # noqa: E402

INTERVAL_SECONDS = 60
GIVE_UP_SECONDS = 150.0  # past two intervals something is wrong; the run reports what it saw
POLL_SECONDS = 0.01


def one_run(
    server: Dovecot, sandbox: SandboxIWD, n: int, idle: bool, code: Path | None
) -> tuple[float, float]:
    """(seconds to the first item, seconds to the last) for one fresh start-up."""
    user, password = server.add_user()
    server.deliver(user, [sample_message(i) for i in range(n)])
    sandbox.control.reset()
    workdir = Path(tempfile.mkdtemp(prefix="startup-", dir="/tmp"))
    config = write_imap_config(
        workdir, sandbox.url, port=server.plain_port, username=user, idle=idle, interval=INTERVAL_SECONDS
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
    env.update(TEST_IWD_KEY=DEFAULT_API_KEY, TEST_IMAP_PASSWORD=password)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    count = sandbox.control.store.count_items
    first = last = float("nan")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=str(code or ROOT),
    )
    try:
        while (elapsed := time.perf_counter() - started) < GIVE_UP_SECONDS:
            have = count()
            if have and first != first:  # NaN: not seen yet
                first = elapsed
            if have >= n:
                last = elapsed
                break
            time.sleep(POLL_SECONDS)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return first, last


def summary(values: list[float]) -> str:
    shown = ", ".join(f"{v:.2f}" for v in values)
    return f"{statistics.median(values):.2f} s ({shown})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", type=Path, help="run the connector from this checkout instead")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    n = args.messages
    rows: list[str] = []
    with workspace() as (base, medium), Dovecot(base / "dovecot") as server, SandboxIWD() as sandbox:
        print(f"{n} messages waiting, poll_interval_seconds {INTERVAL_SECONDS}, mail store on {medium}")
        for idle in (True, False):
            firsts, lasts = [], []
            for _ in range(args.runs):
                first, last = one_run(server, sandbox, n, idle, args.code)
                firsts.append(first)
                lasts.append(last)
                print(f"  IDLE {'on ' if idle else 'off'}: first item {first:.2f} s, last {last:.2f} s")
            rows.append(f"| IDLE {'on' if idle else 'off'} | {summary(firsts)} | {summary(lasts)} |")
    table = "| mailbox | to the first item | to the last item |\n|---|---|---|\n" + "\n".join(rows)
    print(table)
    if not args.no_append:
        code = f", code from {args.code}" if args.code else ""
        stamp = time.strftime("%Y-%m-%d %H:%M")
        block = (
            f"### {stamp} — {n} messages waiting, IMAP (Dovecot 2.3 on {medium}), 60 s interval{code}, "
            f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores\n\n"
            f"Median of {args.runs} runs (each run in brackets), from the `run` process's start.\n\n"
            f"{table}\n\n"
        )
        doc = ROOT / "docs" / "benchmarks.md"
        append_section(doc, "## Start-up backlog", block)
        print(f"appended to {doc}")


if __name__ == "__main__":
    main()
