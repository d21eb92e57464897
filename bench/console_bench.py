"""Admin console with 500 mailboxes: how long the overview takes to load, what each refresh costs.

Not part of the test suite. Issue #11's targets: the overview loads in under 300 ms and each of its
one-second refreshes costs the daemon under 5 ms of CPU. The daemon runs as its own process
(`email-connector run`) with 500 Maildir mailboxes polled every 60 s (so about 8 status rows change
every second, as in production), two messages each delivered to the sandbox IWD first, so the
status rows, the activity buffers and the charts hold real data.

- load: GET /admin, then the two reads its script makes (/api/v1/status, /api/v1/charts), timed by
  the client; and, when Chromium is installed, navigation start to the first rendered table
  (`window.firstRenderMs`, set by the page).
- refresh CPU: the daemon process's user+system time (/proc/<pid>/stat) over 300 refreshes, minus
  what it spends idle over the same wall time, divided by 300.

    .venv/bin/python bench/console_bench.py [--mailboxes 500] [--interval 60] [--no-append]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.imap_bench import append_section  # noqa: E402
from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID, SandboxIWD  # noqa: E402
from providers.maildir import deliver_to_maildir  # noqa: E402
from tests.mailfactory import make_message  # noqa: E402
from tests.peers.dovecot import free_port  # noqa: E402

REFRESHES = 300
LOADS = 20
IDLE_SECONDS = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def write_config(base: Path, iwd_url: str, port: int, count: int, interval: float) -> Path:
    lines = [
        "iwd:",
        f"  url: {iwd_url}",
        f"  api_key: {DEFAULT_API_KEY}",
        f"  ccid: {DEFAULT_CCID}",
        "store:",
        f"  url: sqlite+aiosqlite:///{base / 'store.db'}",
        "http:",
        f"  port: {port}",
        "mailboxes:",
    ]
    for n in range(count):
        maildir = base / "mail" / f"box{n:03d}"
        for i in range(2):
            deliver_to_maildir(maildir, make_message(n * 10 + i), f"m{n}-{i}")
        lines += [
            f"  - id: box{n:03d}",
            f"    address: box{n:03d}@example.com",
            "    provider: maildir",
            "    maildir:",
            f"      path: {maildir}",
            f"    poll_interval_seconds: {interval}",
        ]
    path = base / "connector.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_all_delivered(http: httpx.Client, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the daemon exited"
        try:
            doc = http.get("/api/v1/status").json()
            done = [m for m in doc["mailboxes"] if m["inbound"]["deliveredTotal"] >= 2]
            if len(done) == count:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the mailboxes were not all delivered within 600 s")


def load_once(http: httpx.Client) -> float:
    started = time.perf_counter()
    assert http.get("/admin").status_code == 200
    assert http.get("/api/v1/status").status_code == 200
    assert http.get("/api/v1/charts").status_code == 200
    return time.perf_counter() - started


def browser_loads(url: str, runs: int) -> list[float]:
    from tests.acceptance.browser import CHROMIUM, Browser

    if CHROMIUM is None:
        return []
    found = []
    with Browser() as browser:
        for _ in range(runs):
            browser.navigate("about:blank")
            browser.navigate(url)
            browser.wait_for("window.firstRenderMs !== undefined", 30)
            found.append(float(browser.evaluate("window.firstRenderMs")) / 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=500)
    parser.add_argument(
        "--interval", type=float, default=60, help="poll interval: 500 boxes at 60 s change ~8 rows a second"
    )
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp, SandboxIWD() as sandbox:
        base = Path(tmp)
        port = free_port()
        config = write_config(base, sandbox.url, port, args.mailboxes, args.interval)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as http:
                wait_all_delivered(http, args.mailboxes, proc)
                status_bytes = len(http.get("/api/v1/status").content)
                loads = [load_once(http) for _ in range(LOADS)]
                chromium = browser_loads(f"http://127.0.0.1:{port}/admin", 5)
                idle_from, idle_at = cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(IDLE_SECONDS)
                idle_rate = (cpu_seconds(proc.pid) - idle_from) / (time.perf_counter() - idle_at)
                cpu_from, started = cpu_seconds(proc.pid), time.perf_counter()
                for _ in range(REFRESHES):
                    http.get("/api/v1/status")
                    http.get("/api/v1/charts")
                wall = time.perf_counter() - started
                per_refresh = (cpu_seconds(proc.pid) - cpu_from - idle_rate * wall) / REFRESHES
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    ms = [x * 1000 for x in loads]
    lines = [
        f"- mailboxes: {args.mailboxes} (Maildir, polled every {args.interval:g} s, 2 items each in the "
        "sandbox IWD); "
        f"/api/v1/status is {status_bytes / 1024:.0f} KiB",
        f"- overview load over HTTP (GET /admin + status + charts, {LOADS} runs): median "
        f"{statistics.median(ms):.1f} ms, max {max(ms):.1f} ms (target < 300 ms)",
    ]
    if chromium:
        c = [x * 1000 for x in chromium]
        lines.append(
            f"- overview in headless Chromium, navigation start to the first rendered table "
            f"({len(c)} runs): median {statistics.median(c):.0f} ms, max {max(c):.0f} ms"
        )
    lines.append(
        f"- daemon CPU per refresh (status + charts, {REFRESHES} refreshes, idle "
        f"{idle_rate * 1000:.1f} ms/s subtracted): {per_refresh * 1000:.2f} ms (target < 5 ms)"
    )
    heading = (
        f"### {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} — {args.mailboxes} mailboxes, "
        f"CPython {platform.python_version()}, {os.cpu_count()} cores"
    )
    block = heading + "\n\n" + "\n".join(lines) + "\n"
    print(block)
    if not args.no_append:
        append_section(ROOT / "docs" / "benchmarks.md", "## Admin console", block)


if __name__ == "__main__":
    main()
