"""Secrets given by ${ENV} never appear in logs, errors or IWD payloads."""

from __future__ import annotations

import json
from pathlib import Path

from connector.sandbox import DEFAULT_API_KEY, SandboxIWD
from providers.maildir import deliver_to_maildir
from tests.acceptance.daemon_process import SMTP_SECRET, child_env, run_connector, write_config
from tests.mailfactory import make_message
from tests.peers.sandbox import real_client


async def test_secrets_stay_out_of_logs_errors_and_iwd_payloads(
    tmp_path: Path, sandbox_iwd: SandboxIWD
) -> None:
    """A good run, a failing run (wrong key) and `check`: no output or stored item holds a secret."""
    deliver_to_maildir(tmp_path / "Maildir", make_message(1), "m1")
    config = write_config(tmp_path, sandbox_iwd.url, mailbox="secrets", retry=0.5)

    good = run_connector(config, "run", "--once", "--log-level", "debug", env=child_env())
    wrong_key = "Wrong-Api-Key-5519"
    deliver_to_maildir(tmp_path / "Maildir", make_message(2), "m2")
    bad = run_connector(config, "run", "--once", env=child_env(api_key=wrong_key))
    check = run_connector(config, "check", env=child_env(api_key=wrong_key))

    assert good.returncode == 0 and bad.returncode == 1 and check.returncode == 1
    assert '"event": "item_delivered"' in good.stdout
    outputs = "".join(p.stdout + p.stderr for p in (good, bad, check))
    for secret in (SMTP_SECRET, DEFAULT_API_KEY, wrong_key):
        assert secret not in outputs
    async with real_client(sandbox_iwd) as iwd:
        items = [i async for i in iwd.iter_emails(mailbox_id="secrets")]
    stored = json.dumps(items)
    assert len(items) == 1  # the second waits for a working key
    assert SMTP_SECRET not in stored and DEFAULT_API_KEY not in stored
