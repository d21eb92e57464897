"""Helpers for tests that talk to the sandbox IWD: settings, clients, and valid items.

Fast tests mount the sandbox app in-process (`asgi_client`); retry, timeout and outage tests
run it as a real server (`connector.sandbox.SandboxIWD`) and point `real_client` at it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette

from connector.config import IWDSettings
from connector.iwd import IWDClient, RetryPolicy, build_email_payload
from connector.models import Address, Attachment, EmailItem
from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID, SandboxIWD

ASGI_URL = "http://sandbox.test/iwd/v3"
# Backoff short enough for tests; the budget (max_retry_seconds) still bounds every call.
FAST_RETRY = RetryPolicy(initial_seconds=0.05, max_wait_seconds=0.5, jitter_seconds=0.05)


def iwd_settings(url: str = ASGI_URL, **overrides: Any) -> IWDSettings:
    values: dict[str, Any] = {
        "url": url,
        "api_key": DEFAULT_API_KEY,
        "ccid": DEFAULT_CCID,
        "timeout_seconds": 5.0,
        "max_retry_seconds": 5.0,
    }
    values.update(overrides)
    return IWDSettings.model_validate(values)


def asgi_client(app: Starlette, **overrides: Any) -> IWDClient:
    """An IWDClient wired to the app in-process (no sockets)."""
    return IWDClient(
        iwd_settings(ASGI_URL, **overrides), transport=httpx.ASGITransport(app=app), retry_policy=FAST_RETRY
    )


def real_client(sandbox: SandboxIWD, **overrides: Any) -> IWDClient:
    """An IWDClient over real HTTP to a running SandboxIWD."""
    return IWDClient(iwd_settings(sandbox.url, **overrides), retry_policy=FAST_RETRY)


def raw_http(
    app: Starlette, *, api_key: str = DEFAULT_API_KEY, ccid: str = DEFAULT_CCID
) -> httpx.AsyncClient:
    """Plain httpx over the app, for asserting exact status codes and bodies."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox.test",
        headers={"x-api-key": api_key, "x-ccid": ccid},
    )


def make_item(
    n: int = 1, *, attachments: tuple[Attachment, ...] = (), subject: str | None = None
) -> EmailItem:
    return EmailItem(
        message_id=f"<msg-{n}@example.net>",
        subject=subject if subject is not None else f"Question {n}",
        normalized_subject=f"question {n}",
        sender=Address("customer@example.net", f"Customer {n}"),
        to=(Address("support@example.com"),),
        sent_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        text_body=f"Hello {n}",
        attachments=attachments,
        size=100 + n,
        raw_sha256=hashlib.sha256(str(n).encode()).hexdigest(),
    )


def make_attachment(
    data: bytes, filename: str = "file.bin", content_type: str = "application/octet-stream"
) -> Attachment:
    return Attachment(
        filename=filename, content_type=content_type, data=data, sha256=hashlib.sha256(data).hexdigest()
    )


def inbound_payload(
    n: int = 1,
    *,
    mailbox_id: str = "support",
    item: EmailItem | None = None,
    attachment_ids: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A valid POST /emails body built the way the pipeline builds it (externalId `ext-<n>`)."""
    return build_email_payload(
        item or make_item(n),
        external_id=f"ext-{n}",
        mailbox_id=mailbox_id,
        provider="maildir",
        received_at=datetime(2026, 11, 20, 9, 1, tzinfo=UTC),
        attachment_ids=attachment_ids,
    )


def status_body(state: str = "ok", **inbound: Any) -> dict[str, Any]:
    """A valid PUT .../status body."""
    now = datetime.now(UTC).isoformat()
    return {
        "inbound": {"state": state, "lastPollAt": now, "backlog": 0, "deliveredTotal": 3, **inbound},
        "outbound": {"state": "disabled"},
        "updatedAt": now,
    }


async def wait_until_idle(sandbox: SandboxIWD, within: float = 5.0) -> None:
    """Waits until the sandbox has answered every request, including ones a client gave up on."""
    deadline = time.monotonic() + within
    while sandbox.control.requests.in_flight:
        if time.monotonic() > deadline:
            raise AssertionError(f"the sandbox still has requests in flight after {within:g} s")
        await asyncio.sleep(0.05)
