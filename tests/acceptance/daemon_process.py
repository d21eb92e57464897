"""Runs `email-connector` as a real child process against a Maildir (or IMAP) and a sandbox IWD."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID

CONFIG = """\
iwd:
  url: {url}
  api_key: ${{TEST_IWD_KEY}}
  ccid: {ccid}
  timeout_seconds: 5
  max_retry_seconds: {retry}
store:
  url: sqlite+aiosqlite:///{store}
mailboxes:
  - id: {mailbox}
    address: support@example.com
    provider: maildir
    maildir:
      path: {maildir}
    smtp:
      host: smtp.example.com
      username: support
      password: ${{TEST_SMTP_PASSWORD}}
    poll_interval_seconds: {interval}
    post_action: {action}
"""

IMAP_CONFIG = """\
iwd:
  url: {url}
  api_key: ${{TEST_IWD_KEY}}
  ccid: {ccid}
  timeout_seconds: 5
  max_retry_seconds: 5
store:
  url: sqlite+aiosqlite:///{store}
mailboxes:
  - id: {mailbox}
    address: support@example.test
    provider: imap
    imap:
      host: 127.0.0.1
      port: {port}
      security: plain
      username: {username}
      password: ${{TEST_IMAP_PASSWORD}}
      idle: {idle}
    poll_interval_seconds: {interval}
    post_action: mark_read
"""

SMTP_SECRET = "smtp-Secret-Value-7731"


def write_config(
    directory: Path,
    url: str,
    *,
    mailbox: str = "crash",
    action: str = "mark_read",
    interval: float = 1,
    retry: float = 5,
) -> Path:
    path = directory / "connector.yaml"
    path.write_text(
        CONFIG.format(
            url=url,
            ccid=DEFAULT_CCID,
            store=directory / "store.db",
            mailbox=mailbox,
            maildir=directory / "Maildir",
            action=action,
            interval=interval,
            retry=retry,
        )
    )
    return path


def write_imap_config(
    directory: Path,
    url: str,
    *,
    port: int,
    username: str,
    mailbox: str = "imap",
    idle: bool = True,
    interval: float = 60,
) -> Path:
    """A config for one IMAP mailbox over loopback plaintext; the password comes from TEST_IMAP_PASSWORD."""
    path = directory / "connector.yaml"
    path.write_text(
        IMAP_CONFIG.format(
            url=url,
            ccid=DEFAULT_CCID,
            store=directory / "store.db",
            mailbox=mailbox,
            port=port,
            username=username,
            idle="true" if idle else "false",
            interval=interval,
        )
    )
    return path


class OutputLines:
    """Collects a child's output lines in a thread, so a test can wait for one while it runs."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"no output line with {text!r} within {timeout} s: {self.lines[-5:]}")
            time.sleep(0.01)

    def finish(self, timeout: float = 5) -> list[str]:
        """All lines, once the stream has ended (the process exited)."""
        self._thread.join(timeout)
        return list(self.lines)


def child_env(api_key: str = DEFAULT_API_KEY, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
    env.update({"TEST_IWD_KEY": api_key, "TEST_SMTP_PASSWORD": SMTP_SECRET, **extra})
    return env


def run_connector(
    config: Path, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def start_connector(config: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", *args, "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop_gracefully(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[str, str]:
    """SIGTERM, then the output; SIGKILL only if it does not stop in time (the test then fails on rc)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
