"""Replies end to end through the real daemon process: SIGKILL while sending, restart, the HTTP API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID, SandboxIWD
from tests.connector.outbox.smtp_peer import PASSWORD, USER, SmtpPeer
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
