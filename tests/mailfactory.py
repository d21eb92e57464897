"""Builds small, distinct RFC 5322 messages for tests (each with its own Message-ID)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime


def make_message(
    n: int,
    *,
    subject: str | None = None,
    sender: str = "customer@example.net",
    to: str = "support@example.com",
    body: str | None = None,
    domain: str = "example.net",
    attachment: bytes | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Customer {n} <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject or f"Question number {n}"
    msg["Date"] = format_datetime(datetime(2026, 11, 20, 9, 0, n % 60, tzinfo=UTC))
    msg["Message-ID"] = f"<msg-{n}@{domain}>"
    msg.set_content(body or f"Hello, this is message {n}.\nThanks!\n")
    if attachment is not None:
        msg.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename=f"file-{n}.bin"
        )
    return msg.as_bytes()
