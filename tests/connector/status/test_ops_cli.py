"""`email-connector status` and `quarantine ...`: from the daemon when it runs, from the store when not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from connector import ops_cli
from connector.cli import app
from connector.config import load_config
from connector.models import RawMessage
from connector.sandbox import SandboxIWD
from connector.store import open_store
from providers.maildir import deliver_to_maildir
from tests.acceptance.status_rig import FAST_STATUS, maildir_box, running, wait_for
from tests.mailfactory import make_message
from tests.peers.dovecot import free_port
from tests.peers.sandbox import iwd_settings, real_client


def held(provider_id: str, raw: bytes) -> RawMessage:
    """A message as fetched from INBOX, to put into quarantine."""
    return RawMessage(folder="INBOX", provider_id=provider_id, raw=raw, size=len(raw))


def write_config(tmp_path: Path, sandbox: SandboxIWD, port: int) -> Path:
    path = tmp_path / "connector.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "iwd": iwd_settings(sandbox.url).model_dump(mode="json") | {"api_key": sandbox.api_key},
                "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"},
                "http": {"host": "127.0.0.1", "port": port},
                "status": FAST_STATUS,
                "mailboxes": [maildir_box("cli-box", tmp_path / "m", post_action="none")],
            }
        )
    )
    return path


def test_status_without_a_daemon_says_so_and_shows_store_counts(
    tmp_path: Path, sandbox_iwd: SandboxIWD
) -> None:
    """No daemon: the table still shows quarantine counts from the store, and the output says why."""
    config = write_config(tmp_path, sandbox_iwd, free_port())

    async def seed() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await store.quarantine_put("cli-box", held("7", b"Subject: broken\r\n\r\nx"), "unparseable: test")
        await store.close()

    asyncio.run(seed())
    result = CliRunner().invoke(app, ["status", "-c", str(config)])
    assert "the daemon is not running" in result.output
    assert "cli-box" in result.output and "unknown" in result.output
    row = next(line for line in result.output.splitlines() if "cli-box" in line)
    assert "│ 1 " in row  # quarantine column


async def test_status_reads_the_running_daemon_and_quarantine_commands_work(
    tmp_path: Path, sandbox_iwd: SandboxIWD
) -> None:
    """With the daemon up, `status` prints its states; `quarantine list/show/export/retry` handle an entry."""
    deliver_to_maildir(tmp_path / "m", make_message(1), "m1")
    port = free_port()
    config = write_config(tmp_path, sandbox_iwd, port)
    settings = load_config(config)
    store = await open_store(settings.store.url)
    try:
        async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
            await wait_for(
                lambda: _true(rig.board.get("cli-box").inbound.delivered_total == 1), what="delivery"
            )
            runner = CliRunner()
            result = await asyncio.to_thread(runner.invoke, app, ["status", "-c", str(config)])
            assert result.exit_code == 0, result.output
            assert "not running" not in result.output
            row = next(line for line in result.output.splitlines() if "cli-box" in line)
            assert "ok" in row
            rig.daemon.pause("cli-box")  # no cycle competes with the manual retry below
            entry = await store.quarantine_put("cli-box", held("q9", make_message(9, subject="Held")), "test")
            listed = await asyncio.to_thread(runner.invoke, app, ["quarantine", "list", "-c", str(config)])
            assert "q9" in listed.output and "Held" in listed.output
            shown = await asyncio.to_thread(
                runner.invoke, app, ["quarantine", "show", str(entry.id), "-c", str(config)]
            )
            assert "Subject: Held" in shown.output.replace("subject", "Subject") or "Held" in shown.output
            eml = tmp_path / "held.eml"
            await asyncio.to_thread(
                runner.invoke, app, ["quarantine", "export", str(entry.id), "-o", str(eml), "-c", str(config)]
            )
            assert eml.read_bytes() == make_message(9, subject="Held")
            retried = await asyncio.to_thread(
                runner.invoke, app, ["quarantine", "retry", str(entry.id), "-c", str(config)]
            )
            assert retried.exit_code == 0, retried.output
            assert "delivered to IWD" in retried.output
            assert await store.quarantine_count("cli-box") == 0
    finally:
        await store.close()


async def _true(value: bool) -> bool:
    return value


def test_quarantine_commands_report_a_store_error_without_a_traceback(
    tmp_path: Path, sandbox_iwd: SandboxIWD
) -> None:
    """An unreachable store makes list/show/export/retry exit 1 with the error code, not a traceback."""
    config = write_config(tmp_path, sandbox_iwd, free_port())
    data = yaml.safe_load(config.read_text())
    data["store"]["url"] = f"postgresql+asyncpg://u:p@127.0.0.1:{free_port()}/nothing"
    config.write_text(yaml.safe_dump(data))
    for args in (["list"], ["show", "1"], ["export", "1", "-o", str(tmp_path / "x.eml")], ["retry", "1"]):
        result = CliRunner().invoke(app, ["quarantine", *args, "-c", str(config)])
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert "store" in result.output.lower(), result.output


def test_retry_does_not_fall_back_locally_when_the_daemon_refuses(
    tmp_path: Path, sandbox_iwd: SandboxIWD, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 (non-JSON) from the running daemon is reported and exits 1; no local retry happens."""
    config = write_config(tmp_path, sandbox_iwd, free_port())

    async def seed() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await store.quarantine_put("cli-box", held("7", b"Subject: held\r\n\r\nx"), "unparseable: test")
        await store.close()

    asyncio.run(seed())
    refusing = httpx.MockTransport(lambda _: httpx.Response(401, text="<html>no</html>"))
    monkeypatch.setattr(ops_cli, "_daemon", lambda _s: httpx.Client(transport=refusing, base_url="http://x"))

    async def no_local_retry(*_: object) -> bool:
        raise AssertionError("retried locally although a daemon answered")

    monkeypatch.setattr(ops_cli, "_retry_locally", no_local_retry)
    result = CliRunner().invoke(app, ["quarantine", "retry", "1", "-c", str(config)])
    assert result.exit_code == 1 and "HTTP 401" in result.output
    assert isinstance(result.exception, SystemExit)
