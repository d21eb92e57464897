"""Configuration: validation errors name file, field and line; secrets resolve by reference only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import ConnectorSettings, MailboxSettings, load_config, parse_config, public_view
from connector.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = """\
iwd:
  url: http://127.0.0.1:4024/iwd/v3
  api_key: ${TEST_IWD_KEY}
  ccid: tenant-1
mailboxes:
  - id: box-1
    address: one@example.com
    provider: maildir
    maildir: {path: /tmp/box-1}
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_IWD_KEY", "k-123456789")


def test_example_config_is_valid_with_its_env_references(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The shipped example loads once its ${...} references and file: secret exist."""
    for name in (
        "IWD_API_KEY",
        "IWD_CCID",
        "SUPPORT_IMAP_PASSWORD",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
    ):
        monkeypatch.setenv(name, f"value-of-{name}")
    text = (REPO / "config/connector.example.yaml").read_text()
    secret_file = tmp_path / "smtp-pass"
    secret_file.write_text("s3cret-from-file\n")
    text = text.replace("file:/run/secrets/support-smtp-password", f"file:{secret_file}")
    settings = parse_config(text)
    smtp = settings.mailbox("support").smtp
    assert smtp is not None and smtp.password is not None
    assert smtp.password.get_secret_value() == "s3cret-from-file"
    assert settings.iwd.api_key.get_secret_value() == "value-of-IWD_API_KEY"


def test_bad_port_names_the_field_path_and_line() -> None:
    """`mailboxes[1].imap.port: must be 1..65535` with the YAML line, not a traceback."""
    text = (
        BASE
        + """\
  - id: box-2
    address: two@example.com
    provider: imap
    imap:
      host: imap.example.com
      port: 99999
      username: two
      password: x
"""
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "conf.yaml")
    assert "conf.yaml: mailboxes[1].imap.port: must be 1..65535 (line 15)" in str(info.value)


def test_missing_environment_variable_is_named_without_a_value() -> None:
    """A missing secret reference names the variable and the field."""
    text = BASE.replace("${TEST_IWD_KEY}", "${NOT_SET_ANYWHERE}")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "iwd.api_key: environment variable NOT_SET_ANYWHERE is not set" in str(info.value)


def test_misspelled_key_and_bad_post_action_are_reported_together() -> None:
    """Every problem is listed at once so an administrator fixes the file in one pass."""
    text = BASE.replace(
        "provider: maildir", "provider: maildir\n    pol_interval: 5\n    post_action: archive"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    problems = info.value.problems
    assert any(p.startswith("mailboxes[0].pol_interval: is not a known setting") for p in problems)
    assert any(
        p.startswith("mailboxes[0].post_action: must be none, mark_read, move:<folder> or delete")
        for p in problems
    )


def test_provider_without_its_settings_block_is_rejected() -> None:
    text = BASE.replace("provider: maildir", "provider: imap")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "provider is imap but there is no 'imap:' block" in str(info.value)


def test_secrets_never_print_and_public_view_drops_them() -> None:
    """repr/str of the settings and the configuration sent to IWD hold no secret value."""
    text = (
        BASE
        + """\
  - id: box-2
    address: two@example.com
    provider: imap
    imap: {host: h.example, username: u, password: "${TEST_IWD_KEY}"}
"""
    )
    settings = parse_config(text)
    assert "k-123456789" not in repr(settings) and "k-123456789" not in str(settings)
    assert "k-123456789" not in json.dumps(public_view(settings.mailbox("box-2")))
    assert "password" not in public_view(settings.mailbox("box-2"))["imap"]


def test_cli_exits_2_with_a_named_field_and_no_traceback(tmp_path: Path) -> None:
    """`email-connector check` on a bad file: exit code 2, message names file and field."""
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("ccid: tenant-1", "ccid: tenant-1\n  timeout_seconds: -1"))
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        env={"TEST_IWD_KEY": "k-123456789", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{path}: iwd.timeout_seconds:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_committed_json_schema_matches_the_models() -> None:
    """config/schema.json is regenerated whenever the settings change (`email-connector schema`)."""
    committed = json.loads((REPO / "config/schema.json").read_text())
    assert committed == json.loads(json.dumps(ConnectorSettings.model_json_schema()))


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml: cannot read the file" in str(info.value)


def test_http_off_loopback_requires_a_token() -> None:
    """Binding the admin/API server beyond loopback without a bearer token is refused."""
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + "http:\n  host: 0.0.0.0\n")
    assert "http: http.host is 0.0.0.0: a bearer token (http.token) is required off loopback" in str(
        info.value
    )


def test_replies_leave_by_smtp_when_configured_else_by_the_mailboxs_api() -> None:
    """`sends_via`: the smtp block wins; a Gmail or Graph mailbox without one sends through its API;
    Maildir or IMAP without smtp, or outbound switched off, cannot send."""
    oauth = {"kind": "static", "token": "${NOT_NEEDED_HERE}"}
    gmail = {"id": "g", "address": "g@example.com", "provider": "gmail", "gmail": {"oauth": oauth}}
    graph = {
        "id": "m",
        "address": "m@example.com",
        "provider": "graph",
        "graph": {"user_id": "m", "oauth": oauth},
    }
    smtp = {"smtp": {"host": "smtp.example.com", "auth": "none"}}
    login = {"host": "h", "username": "u", "password": "${NOT_NEEDED_HERE}"}
    imap = {"id": "i", "address": "i@example.com", "provider": "imap", "imap": login}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOT_NEEDED_HERE", "t")
        assert MailboxSettings.model_validate(gmail).sends_via == "gmail"
        assert MailboxSettings.model_validate(graph).sends_via == "graph"
        assert MailboxSettings.model_validate(gmail | smtp).sends_via == "smtp"
        assert MailboxSettings.model_validate(imap).sends_via is None
        assert MailboxSettings.model_validate(imap | smtp).sends_via == "smtp"
        assert MailboxSettings.model_validate(graph | {"outbound_enabled": False}).sends_via is None
