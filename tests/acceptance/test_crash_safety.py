"""The daemon SIGKILLed at every pipeline step and restarted: zero lost, zero duplicate items."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from connector.faults import STEPS
from connector.sandbox import SandboxIWD
from providers.maildir import deliver_to_maildir
from tests.acceptance.daemon_process import child_env, run_connector, write_config
from tests.mailfactory import make_message
from tests.peers.sandbox import real_client

MESSAGES = 5


@pytest.mark.parametrize("step", STEPS)
async def test_sigkill_at_each_step_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, sandbox_iwd: SandboxIWD, step: str
) -> None:
    """Killed on the 3rd message at `step`, restarted: every message is one item and marked read."""
    mailbox = f"crash-{step}"
    for n in range(MESSAGES):
        deliver_to_maildir(tmp_path / "Maildir", make_message(n), f"m{n}")
    config = write_config(tmp_path, sandbox_iwd.url, mailbox=mailbox)

    crashed = run_connector(config, "run", "--once", env=child_env(EMAIL_CONNECTOR_CRASH_AT=f"{step}:3"))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    restarted = run_connector(config, "run", "--once", env=child_env())
    assert restarted.returncode == 0, restarted.stderr

    async with real_client(sandbox_iwd) as iwd:
        items = [i async for i in iwd.iter_emails(mailbox_id=mailbox)]
    assert Counter(i["messageId"] for i in items) == {f"<msg-{n}@example.net>": 1 for n in range(MESSAGES)}
    assert os.listdir(tmp_path / "Maildir" / "new") == []
    assert sorted(os.listdir(tmp_path / "Maildir" / "cur")) == [f"m{n}:2,S" for n in range(MESSAGES)]


async def test_sigkill_after_the_uploads_then_restart_stores_each_attachment_once(
    tmp_path: Path, sandbox_iwd: SandboxIWD
) -> None:
    """Killed once the attachments are in IWD, restarted: the same keys get the same attachments back."""
    mailbox = "crash-attachments"
    for n in range(MESSAGES):
        deliver_to_maildir(
            tmp_path / "Maildir", make_message(n, attachment=f"file {n} ".encode() * 50), f"m{n}"
        )
    config = write_config(tmp_path, sandbox_iwd.url, mailbox=mailbox)

    crashed = run_connector(config, "run", "--once", env=child_env(EMAIL_CONNECTOR_CRASH_AT="uploaded:3"))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    uploaded_before_restart = len(sandbox_iwd.control.store.list_attachments())
    restarted = run_connector(config, "run", "--once", env=child_env())
    assert restarted.returncode == 0, restarted.stderr

    async with real_client(sandbox_iwd) as iwd:
        items = [i async for i in iwd.iter_emails(mailbox_id=mailbox)]
    stored = sandbox_iwd.control.store.list_attachments()
    assert uploaded_before_restart >= 1
    assert len(items) == MESSAGES
    assert sorted(a.id for a in stored) == sorted(i["attachments"][0]["attachmentId"] for i in items)
