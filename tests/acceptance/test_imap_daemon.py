"""A real `email-connector run` process against a real Dovecot (IDLE on) and the sandbox IWD."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.sandbox import SandboxIWD
from tests.acceptance.daemon_process import (
    OutputLines,
    child_env,
    start_connector,
    stop_gracefully,
    write_imap_config,
)
from tests.peers.dovecot import Dovecot, sample_message

# Well under the 60 s interval the mailboxes here use: an item arriving in time was not
# brought by the interval job. A correctness bound, not a performance figure (see bench/startup.py).
BEFORE_THE_INTERVAL_SECONDS = 20.0


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


def wait_for_items(sandbox: SandboxIWD, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while sandbox.control.store.count_items() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{sandbox.control.store.count_items()} of {count} items after {within:g} s")
        time.sleep(0.05)


def bad_lines(lines: list[str]) -> list[str]:
    """Output lines at error level or above, and any traceback."""
    found = []
    for line in lines:
        try:
            level = str(json.loads(line).get("level", ""))
        except (ValueError, AttributeError):
            level = ""
        if level in ("error", "critical", "exception") or "Traceback" in line:
            found.append(line)
    return found


def imap_env(password: str) -> dict[str, str]:
    return child_env(TEST_IMAP_PASSWORD=password)


def test_mail_waiting_at_start_up_is_delivered_before_the_first_interval(
    tmp_path: Path, dovecot: Dovecot, sandbox_iwd: SandboxIWD
) -> None:
    """With IDLE on and a 60 s interval, mail already in the INBOX when `run` starts becomes items
    at once: the first cycle runs before IDLE, not after IDLE's first timeout."""
    user, password = dovecot.add_user()
    dovecot.deliver(user, [sample_message(i) for i in range(20)])
    config = write_imap_config(tmp_path, sandbox_iwd.url, port=dovecot.plain_port, username=user)
    proc = start_connector(config, "run", env=imap_env(password))
    try:
        wait_for_items(sandbox_iwd, 20, BEFORE_THE_INTERVAL_SECONDS)
    finally:
        stop_gracefully(proc)
    assert proc.returncode == 0


def test_sigterm_is_clean_over_twenty_stop_start_rounds(
    tmp_path: Path, dovecot: Dovecot, sandbox_iwd: SandboxIWD
) -> None:
    """Twenty SIGTERMs, half right after start-up (a poll is due while IDLE starts), half once the
    round's mail is delivered: every run exits 0 with no error-level line and no traceback."""
    user, password = dovecot.add_user()
    config = write_imap_config(tmp_path, sandbox_iwd.url, port=dovecot.plain_port, username=user)
    for round_ in range(20):
        dovecot.deliver(user, [sample_message(round_)])
        proc = start_connector(config, "run", env=imap_env(password))
        assert proc.stdout is not None and proc.stderr is not None
        out, err = OutputLines(proc.stdout), OutputLines(proc.stderr)
        try:
            out.wait_for("daemon_started")
            if round_ % 2:
                wait_for_items(sandbox_iwd, round_ + 1, BEFORE_THE_INTERVAL_SECONDS)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        except (AssertionError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
            raise
        lines = out.finish() + err.finish()
        assert proc.returncode == 0, (round_, lines[-10:])
        assert bad_lines(lines) == [], round_
    assert sandbox_iwd.control.store.count_items() == 20
