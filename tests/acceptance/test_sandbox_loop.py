"""The demo's whole loop in a real headless Chromium: customer mail → item → agent reply → SMTP sink.

`email-connector demo` runs as a user starts it (a child process with its sandbox IWD, its SMTP sink
and the daemon); the test opens the sandbox page, opens an item, replies, and sees the reply at the
sink, threaded to the customer's message. Screenshots go to tests/output/sandbox-*.png.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.browser import CHROMIUM, Browser
from tests.peers.dovecot import free_port

OUTPUT = Path(__file__).resolve().parents[1] / "output"
DEADLINE_SECONDS = 60.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/test installs the Debian package)"
)


@contextlib.contextmanager
def demo(directory: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_CONNECTOR_", "DEMO_"))}
    command = [sys.executable, "-m", "connector", "demo", "--dir", str(directory), "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def until(check: object, what: str, proc: subprocess.Popen[str]) -> object:
    """Polls `check()` until it is truthy; a page between two loads counts as not yet."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        with contextlib.suppress(RuntimeError, httpx.HTTPError):
            value = check()  # type: ignore[operator]
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"not reached within {DEADLINE_SECONDS} s: {what}")


def test_a_reply_typed_on_the_sandbox_page_reaches_the_demos_smtp_sink(tmp_path: Path) -> None:
    """The demo delivers the samples; on the sandbox page an agent opens one, replies, and the page
    lists the reply as received by the demo's SMTP sink, In-Reply-To the customer's Message-ID."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with demo(tmp_path, port) as proc:
        until(lambda: "demo-support" in httpx.get(base + "/", timeout=2).text, "the demo delivered", proc)
        until(lambda: httpx.get(base + "/", timeout=2).text.count('href="/items/') >= 5, "5 items", proc)
        OUTPUT.mkdir(exist_ok=True)
        with Browser() as browser:
            browser.navigate(base + "/")
            links = "document.querySelectorAll('a[href^=\"/items/\"]').length"
            until(lambda: browser.evaluate(links), "the item links", proc)
            assert "v1.2" in browser.evaluate("document.querySelector('h1').innerText")
            browser.screenshots("sandbox-items", str(OUTPUT), ready="!!document.querySelector('h1')")
            link = browser.evaluate(
                "[...document.querySelectorAll('tr')].find(r => r.innerText.includes('inbound'))"
                ".querySelector('a[href^=\"/items/\"]').getAttribute('href')"
            )
            browser.navigate(base + link)
            until(lambda: browser.evaluate("!!document.querySelector('#reply-text')"), "item page", proc)
            message_id = browser.evaluate(
                "[...document.querySelectorAll('tr')].find(r => r.innerText.startsWith('Message-ID'))"
                ".querySelector('td').innerText"
            )
            browser.click("#reply-text")
            browser.call("Input.insertText", text="Thanks, your parcel is on its way.")
            browser.click("form button[type=submit]")
            sink_row = "document.querySelector('[data-sink-message]')"
            until(lambda: browser.evaluate(f"!!{sink_row}"), "the reply at the SMTP sink", proc)
            row = browser.evaluate(f"{sink_row}.innerText")
            assert message_id and message_id in row  # threaded: In-Reply-To the customer's message
            thread = browser.evaluate("document.body.innerText")
            assert "sent" in thread
            browser.screenshots("sandbox-item", str(OUTPUT), ready=f"!!{sink_row}")
