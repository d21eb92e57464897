"""Read-only commands need only what they read and create nothing; redaction keeps words readable."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from connector.cli import app
from connector.logs import REDACTED, SecretRedactor
from tests.peers.dovecot import free_port


def config_with_unset_secrets(tmp_path: Path) -> Path:
    """An IMAP mailbox whose password and the IWD key are references to variables nobody set."""
    path = tmp_path / "connector.yaml"
    imap = {"host": "imap.example.test", "username": "u", "password": "${CLI_TEST_UNSET_PASSWORD}"}
    path.write_text(
        yaml.safe_dump(
            {
                "iwd": {"url": "http://127.0.0.1:9/iwd/v3", "api_key": "${CLI_TEST_UNSET_KEY}", "ccid": "c"},
                "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"},
                "http": {"host": "127.0.0.1", "port": free_port()},
                "mailboxes": [{"id": "box", "address": "b@example.test", "provider": "imap", "imap": imap}],
            }
        )
    )
    return path


def test_status_and_quarantine_list_need_no_secret_and_create_no_store(tmp_path: Path) -> None:
    """With every secret unresolvable and no store yet, both commands answer and leave no file behind."""
    config = config_with_unset_secrets(tmp_path)
    status = CliRunner().invoke(app, ["status", "-c", str(config)])
    listing = CliRunner().invoke(app, ["quarantine", "list", "-c", str(config)])
    assert status.exit_code == 0, status.output
    assert "box" in status.output and "the daemon is not running" in status.output
    assert listing.exit_code == 0, listing.output
    assert "quarantine (0)" in listing.output
    assert not (tmp_path / "store.db").exists()


def test_commands_that_act_still_demand_their_secrets(tmp_path: Path) -> None:
    """`check` connects, so an unresolvable password is still the configuration error it was."""
    result = CliRunner().invoke(app, ["check", "-c", str(config_with_unset_secrets(tmp_path))])
    assert result.exit_code == 2
    assert "CLI_TEST_UNSET" in result.output


def test_a_short_secret_is_redacted_where_it_stands_alone_and_words_containing_it_stay_whole() -> None:
    """A 4-letter password inside 'compassion' is left alone; the password itself is hidden."""
    redactor = SecretRedactor(["pass", "a-long-Secret-Value-99"])
    text = "login failed for pass in compassion mode, key a-long-Secret-Value-99x"
    assert redactor.scrub(text) == f"login failed for {REDACTED} in compassion mode, key {REDACTED}x"
