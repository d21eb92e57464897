"""Replies end to end through the real daemon process: SIGKILL while sending, restart, the HTTP API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx

from connector.config_loading import load_config
from connector.outbox.compose import new_message_id
from connector.outbox.request import ReplyRequest
from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID, SandboxIWD
from connector.store import open_store
from connector.store.outbox import SqlOutbox
from connector.store.sql import SqlStore
from connector.store.types import OutboxEntry
from tests.connector.outbox.smtp_peer import PASSWORD, USER, Rules, SmtpPeer
from tests.peers.dovecot import free_port
from tests.peers.sandbox import real_client

REPLIES = 5
TOKEN = "replies-token-9f3b7c"
DEADLINE_SECONDS = 20.0


def write_config(tmp: Path, iwd_url: str, smtp: SmtpPeer, *, port: int, token: str | None) -> Path:
    (tmp / "Maildir").mkdir(exist_ok=True)
    token_line = f"  token: {token}\n" if token else ""
    text = f"""\
iwd:
  url: {iwd_url}
  api_key: {DEFAULT_API_KEY}
  ccid: {DEFAULT_CCID}
  timeout_seconds: 5
  max_retry_seconds: 2
store:
  url: sqlite+aiosqlite:///{tmp / "store.db"}
http:
  port: {port}
{token_line}outbox:
  poll_interval_seconds: 0.2
mailboxes:
  - id: support
    address: support@example.com
    provider: maildir
    maildir:
      path: {tmp / "Maildir"}
    poll_interval_seconds: 60
    smtp:
      host: 127.0.0.1
      port: {smtp.port}
      security: starttls
      username: {USER}
      password: {PASSWORD}
      ca_file: {smtp.ca_file}
      timeout_seconds: 5
"""
    path = tmp / "connector.yaml"
    path.write_text(text)
    return path


def start(config: Path, **env: str) -> subprocess.Popen[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
    child.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err


async def queue_replies(sandbox: SandboxIWD) -> list[str]:
    async with httpx.AsyncClient(
        base_url=sandbox.url, headers={"x-api-key": DEFAULT_API_KEY, "x-ccid": DEFAULT_CCID}
    ) as http:
        ids = []
        for n in range(REPLIES):
            body = {
                "direction": "outbound",
                "mailboxId": "support",
                "to": [{"address": f"c{n}@example.net"}],
                "subject": f"Question {n}",
                "textBody": f"Answer {n}",
            }
            resp = await http.post("/emails", json=body)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        return ids


async def wait_settled(
    sandbox: SandboxIWD, ids: list[str], proc: subprocess.Popen[str]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    async with real_client(sandbox) as iwd:
        while True:
            items = [await iwd.get_email(i) for i in ids]
            if all(i["status"] in ("sent", "failed") for i in items):
                return items
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, [i["status"] for i in items]
            await asyncio.sleep(0.1)


async def test_sigkill_after_data_accepted_is_reported_uncertain_and_never_resent(
    tmp_path: Path, sandbox_iwd: SandboxIWD, smtp: SmtpPeer
) -> None:
    """Killed right after the 3rd DATA was accepted: after restart every reply reached the server
    exactly once; the 3rd (accepted but not recorded) is reported delivery_uncertain, not resent."""
    ids = await queue_replies(sandbox_iwd)
    config = write_config(tmp_path, sandbox_iwd.url, smtp, port=free_port(), token=TOKEN)
    crashed = start(config, EMAIL_CONNECTOR_CRASH_AT="smtp_data_sent:3")
    assert crashed.wait(timeout=30) == -signal.SIGKILL, crashed.communicate()[1][-3000:]
    restarted = start(config)
    try:
        items = await wait_settled(sandbox_iwd, ids, restarted)
    finally:
        stop(restarted)
    counts = smtp.by_message_id()
    assert len(counts) == REPLIES and set(counts.values()) == {1}
    statuses = sorted(i["status"] for i in items)
    assert statuses == ["failed"] + ["sent"] * (REPLIES - 1)
    uncertain = next(i for i in items if i["status"] == "failed")
    assert uncertain["error"]["code"] == "delivery_uncertain"
    assert uncertain["messageId"] in counts  # the agent can look for exactly this message


async def test_sigkill_before_data_loses_nothing_and_sends_once(
    tmp_path: Path, sandbox_iwd: SandboxIWD, smtp: SmtpPeer
) -> None:
    """Killed after claiming the 3rd reply but before its SMTP transaction: it is simply sent on restart."""
    ids = await queue_replies(sandbox_iwd)
    config = write_config(tmp_path, sandbox_iwd.url, smtp, port=free_port(), token=TOKEN)
    crashed = start(config, EMAIL_CONNECTOR_CRASH_AT="outbox_sending:3")
    assert crashed.wait(timeout=30) == -signal.SIGKILL, crashed.communicate()[1][-3000:]
    restarted = start(config)
    try:
        items = await wait_settled(sandbox_iwd, ids, restarted)
    finally:
        stop(restarted)
    assert [i["status"] for i in items] == ["sent"] * REPLIES
    counts = smtp.by_message_id()
    assert len(counts) == REPLIES and set(counts.values()) == {1}


async def test_replies_api_accepts_idempotently_and_reports_state(
    tmp_path: Path, sandbox_iwd: SandboxIWD, smtp: SmtpPeer
) -> None:
    """POST twice with one id: 202 then 200, one email; GET shows sent; no token configured → 403."""
    port = free_port()
    config = write_config(tmp_path, sandbox_iwd.url, smtp, port=port, token=TOKEN)
    proc = start(config)
    base = f"http://127.0.0.1:{port}"
    body = {
        "id": "ticket-77-reply-1",
        "mailboxId": "support",
        "to": [{"address": "x@example.net"}],
        "subject": "Your order",
        "textBody": "It shipped.",
    }
    try:
        async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}) as http:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                try:
                    first = await http.post("/api/v1/replies", json=body)
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    await asyncio.sleep(0.1)
            assert first.status_code == 202, first.text
            assert first.headers["location"] == "/api/v1/replies/ticket-77-reply-1"
            again = await http.post("/api/v1/replies", json=body)
            assert again.status_code == 200
            clash = await http.post("/api/v1/replies", json={**body, "textBody": "other"})
            assert clash.status_code == 409
            unauth = await http.get(
                "/api/v1/replies/ticket-77-reply-1", headers={"authorization": "Bearer no"}
            )
            assert unauth.status_code == 401
            while (state := (await http.get(first.headers["location"])).json())["state"] != "sent":
                assert time.monotonic() < deadline, state
                await asyncio.sleep(0.05)
            assert state["attempts"] == 1 and state["sentAt"] and state["messageId"]
            assert state["recipients"][0]["address"] == "x@example.net"
            assert state["recipients"][0]["accepted"] is True
    finally:
        stop(proc)
    assert list(smtp.by_message_id().values()) == [1]

    no_token = write_config(tmp_path, sandbox_iwd.url, smtp, port=free_port(), token=None)
    proc = start(no_token)
    try:
        port2 = int(no_token.read_text().split("port: ")[1].split()[0])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port2}") as http:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                try:
                    resp = await http.post("/api/v1/replies", json=body)
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    await asyncio.sleep(0.1)
        assert resp.status_code == 403
        assert "http.token" in resp.json()["message"]
    finally:
        stop(proc)


async def queue_local_reply(config: Path, reply_id: str, to: str) -> None:
    """Stores a reply in the connector's outbox the way `POST /api/v1/replies` does."""
    settings = load_config(config)
    store = await open_store(settings.store.url)
    try:
        request = ReplyRequest.model_validate(
            {"mailboxId": "support", "to": [{"address": to}], "subject": "Local", "textBody": "From the API"}
        )
        now = datetime.now(UTC)
        await SqlOutbox(cast(SqlStore, store)).outbox_enqueue(
            OutboxEntry(
                id=reply_id,
                mailbox_id="support",
                origin="api",
                request=request.to_json(),
                request_sha256=request.fingerprint(),
                message_id=new_message_id("support@example.com"),
                created_at=now,
                next_attempt_at=now,
            )
        )
    finally:
        await store.close()


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    """`email-connector run --once` on the config's (empty) Maildir."""
    for sub in ("new", "cur", "tmp"):
        (config.parent / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    child = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", "run", "--once", "-c", str(config)],
        capture_output=True,
        text=True,
        env=child,
        timeout=60,
    )


async def statuses(sandbox: SandboxIWD, ids: list[str]) -> list[tuple[str, str | None]]:
    async with real_client(sandbox) as iwd:
        items = [await iwd.get_email(i) for i in ids]
    return [(i["status"], (i.get("error") or {}).get("code")) for i in items]


async def test_run_once_sends_the_due_replies_before_it_exits(
    tmp_path: Path, sandbox_iwd: SandboxIWD, smtp: SmtpPeer
) -> None:
    """`run --once` sends IWD's queued replies and the local outbox once each, reports them, exits 0."""
    ids = await queue_replies(sandbox_iwd)
    config = write_config(tmp_path, sandbox_iwd.url, smtp, port=free_port(), token=TOKEN)
    await queue_local_reply(config, "ticket-9-reply-1", "local@example.net")

    done = run_once(config)

    assert done.returncode == 0, done.stderr[-3000:]
    assert await statuses(sandbox_iwd, ids) == [("sent", None)] * REPLIES
    received = sorted(r.recipients[0] for r in smtp.received)
    assert received == sorted([f"c{n}@example.net" for n in range(REPLIES)] + ["local@example.net"])
    assert set(smtp.by_message_id().values()) == {1}


async def test_run_once_leaves_uncertain_and_failed_replies_as_they_are(
    tmp_path: Path, sandbox_iwd: SandboxIWD, smtp: SmtpPeer
) -> None:
    """A reply cut off after DATA stays uncertain and a refused one failed: the next run sends nothing."""
    smtp.rules = Rules(
        rcpt=lambda address: "550 5.1.1 No such user" if address == "c2@example.net" else None,
        drop_after_data=lambda msg: str(msg["To"]) == "c1@example.net",
    )
    ids = await queue_replies(sandbox_iwd)
    config = write_config(tmp_path, sandbox_iwd.url, smtp, port=free_port(), token=TOKEN)

    first = run_once(config)
    after_first = await statuses(sandbox_iwd, ids)
    sent_first = smtp.by_message_id()
    second = run_once(config)

    assert first.returncode == 0, first.stderr[-3000:]  # the mailbox sent the later replies: it works
    assert after_first == [
        ("sent", None),
        ("failed", "delivery_uncertain"),
        ("failed", "smtp_rejected"),
        ("sent", None),
        ("sent", None),
    ]
    assert second.returncode == 0, second.stderr[-3000:]
    assert await statuses(sandbox_iwd, ids) == after_first
    assert smtp.by_message_id() == sent_first and set(sent_first.values()) == {1}
