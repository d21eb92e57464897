"""The image as an operator runs it: built from this checkout, started with podman, stopped.

Marked `image` (minutes, root, podman): the fast suite skips it; `.ci/run` runs it with
`pytest -m image`. The build itself is `scripts/image`, the same command a person runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from connector.iwd import IWDClient
from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID
from providers.maildir import deliver_to_maildir
from tests.mailfactory import make_message
from tests.peers.sandbox import FAST_RETRY, iwd_settings

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "container" / "containers.conf"
UID = 10001
HTTP_TOKEN = "planted-http-token-7f3a"  # a test secret: must never show in the logs
STOP_BOUND_SECONDS = 5.0
SLOW_IWD_SECONDS = 1.0


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=timeout, env=env
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], bool], deadline_seconds: float) -> float:
    """Polls `probe()` until it is truthy; returns the seconds it took or fails naming `what`."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_seconds:
        try:
            if probe():
                return time.monotonic() - start
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {deadline_seconds} s")


def sandbox_items(url: str) -> list[dict[str, object]]:
    async def fetch() -> list[dict[str, object]]:
        items: list[dict[str, object]] = []
        async with IWDClient(iwd_settings(url), retry_policy=FAST_RETRY) as iwd:
            cursor = None
            while True:
                page, cursor = await iwd.list_emails(mailbox_id="support", limit=100, cursor=cursor)
                items.extend(page)
                if cursor is None:
                    return items

    return asyncio.run(fetch())


@pytest.fixture(scope="module")
def image() -> str:
    """scripts/image from this checkout: installs podman/buildah/runc/debootstrap when missing."""
    if os.geteuid() != 0 and not shutil.which("podman"):
        pytest.skip("the image test needs root (apt, rootful podman) or podman installed")
    result = subprocess.run(
        ["bash", "scripts/image"], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip())
    return result.stdout.strip().splitlines()[-1].split()[0]  # the tag line comes last


@dataclass(frozen=True)
class Pod:
    name: str
    maildir: Path
    api: str  # the connector's HTTP port, published on 127.0.0.1
    iwd: str  # the sandbox IWD's API, published on 127.0.0.1
    run: list[str]  # `podman run` arguments that start the connector

    @property
    def connector(self) -> str:
        return f"{self.name}-connector"


def connector_config() -> str:
    return yaml.safe_dump(
        {
            "iwd": {"url": "http://127.0.0.1:4024/iwd/v3", "api_key": "${IWD_API_KEY}", "ccid": DEFAULT_CCID},
            "store": {"url": "sqlite+aiosqlite:////var/lib/email-connector/connector.db"},
            "http": {"host": "0.0.0.0", "port": 8025, "token": "${HTTP_TOKEN}"},
            "mailboxes": [
                {
                    "id": "support",
                    "address": "support@example.com",
                    "provider": "maildir",
                    "maildir": {"path": "/mail"},
                    "poll_interval_seconds": 1,
                    "post_action": "mark_read",
                }
            ],
        }
    )


@pytest.fixture
def pod(image: str, tmp_path: Path) -> Iterator[Pod]:
    """A pod publishing on 127.0.0.1: the sandbox IWD and the connector (a Maildir and its state
    mounted as volumes, read-only root filesystem), the way the chart runs them."""
    name = f"connector-test-{uuid.uuid4().hex[:8]}"
    maildir, state, config = tmp_path / "Maildir", tmp_path / "state", tmp_path / "connector.yaml"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    state.mkdir()
    config.write_text(connector_config(), encoding="utf-8")
    for path in (maildir, state, *maildir.iterdir()):
        os.chown(path, UID, UID)
    api_port, iwd_port = free_port(), free_port()
    publish = ["-p", f"127.0.0.1:{api_port}:8025", "-p", f"127.0.0.1:{iwd_port}:4024"]
    podman("pod", "create", "--name", name, *publish)
    try:
        sandbox_db = "/var/lib/email-connector/iwd.db"
        podman(
            *("run", "-d", "--pod", name, "--name", f"{name}-iwd", "--read-only", image),
            *("sandbox-iwd", "--host", "0.0.0.0", "--port", "4024", "--db", sandbox_db),
        )
        page = f"http://127.0.0.1:{iwd_port}/"
        wait_for("the sandbox IWD answers", lambda: httpx.get(page).is_success, 30)
        run = [
            *("run", "-d", "--pod", name, "--name", f"{name}-connector", "--read-only"),
            *("-v", f"{maildir}:/mail", "-v", f"{state}:/var/lib/email-connector"),
            *("-v", f"{config}:/etc/email-connector/connector.yaml:ro"),
            *("-e", f"IWD_API_KEY={DEFAULT_API_KEY}", "-e", f"HTTP_TOKEN={HTTP_TOKEN}"),
            image,
        ]
        yield Pod(name, maildir, f"http://127.0.0.1:{api_port}", f"{page}iwd/v3", run)
    finally:
        podman("pod", "rm", "--force", "--time", "0", name, check=False)


def batch_requests(page: str) -> int:
    """How many item-creating requests the sandbox IWD has received (counted on arrival)."""
    seen = httpx.get(f"{page}/sandbox/requests").json()
    return sum(n for key, n in seen.items() if key in ("POST /iwd/v3/emails/batch", "POST /iwd/v3/emails"))


def drop(maildir: Path, first: int, count: int) -> None:
    for n in range(first, first + count):
        path = deliver_to_maildir(maildir, make_message(n), f"image-test-{n}")
        os.chown(path, UID, UID)


def test_container_delivers_and_stops_cleanly_on_sigterm(pod: Pod) -> None:
    """Started with podman, the image delivers Maildir mail to IWD as uid 10001 and answers /healthz;
    `podman stop` during a delivery exits 0 within 5 s after `daemon_stopped`; no item lost or doubled."""
    maildir, api, iwd_url, connector = pod.maildir, pod.api, pod.iwd, pod.connector
    drop(maildir, 0, 3)

    podman(*pod.run)
    ready = wait_for("/readyz answers 200", lambda: httpx.get(f"{api}/readyz").status_code == 200, 60)
    print(f"start to first /readyz 200: {ready:.1f} s")
    wait_for("the 3 messages are items in the sandbox IWD", lambda: len(sandbox_items(iwd_url)) == 3, 60)
    assert httpx.get(f"{api}/healthz").status_code == 200

    status = podman("exec", connector, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(UID)] * 4  # PID 1 is the daemon itself, with every uid non-root
    cmdline = podman("exec", connector, "cat", "/proc/1/cmdline").stdout
    assert "email-connector" in cmdline

    # IWD answers slowly, so SIGTERM arrives while the batch's create request is in flight
    page = iwd_url.rsplit("/iwd/", 1)[0]
    httpx.post(f"{page}/sandbox/faults", json={"latencySeconds": SLOW_IWD_SECONDS}).raise_for_status()
    batches_before = batch_requests(page)
    drop(maildir, 100, 40)
    wait_for("a create request for the new mail", lambda: batch_requests(page) > batches_before, 60)
    started = time.monotonic()
    stop = podman("stop", "--time", "10", connector)
    stop_seconds = time.monotonic() - started
    print(f"podman stop: {stop_seconds:.1f} s")
    assert stop.returncode == 0
    assert stop_seconds < STOP_BOUND_SECONDS, f"podman stop took {stop_seconds:.1f} s"
    state = json.loads(podman("inspect", connector).stdout)[0]["State"]
    assert state["ExitCode"] == 0
    logs = podman("logs", connector)
    events = [json.loads(line).get("event") for line in logs.stdout.splitlines() if line.startswith("{")]
    assert "daemon_stopped" in events
    assert HTTP_TOKEN not in logs.stdout + logs.stderr

    httpx.delete(f"{page}/sandbox/faults").raise_for_status()
    podman("start", connector)
    wait_for("all 43 messages are items", lambda: len(sandbox_items(iwd_url)) >= 43, 120)
    items = sandbox_items(iwd_url)
    assert len(items) == 43
    assert len({item["externalId"] for item in items}) == 43
    wait_for("every message is marked read", lambda: not any((maildir / "new").iterdir()), 30)


def test_demo_runs_with_one_command(image: str) -> None:
    """`podman run IMAGE demo --once` delivers the five sample messages on the embedded default."""
    result = podman("run", "--rm", "--read-only", "--network", "host", image, "demo", "--once", timeout=180)
    assert "5 items in the sandbox IWD" in result.stdout
