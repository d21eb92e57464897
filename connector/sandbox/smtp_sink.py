"""The demo's SMTP sink: aiosmtpd on 127.0.0.1, keeping every message it is handed.

The demo's replies need somewhere real to go, and the sandbox page shows what arrived. aiosmtpd
speaks the protocol (the same server the tests use as their peer); this module only keeps a short,
bounded list of what was received. Never a relay: nothing it receives leaves the machine.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
KEPT = 200


class _KeepingHandler:
    """aiosmtpd calls `handle_DATA` once per accepted message; the answer is the SMTP reply."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        self.messages.append(
            {
                "at": datetime.now(UTC).isoformat(),
                "from": envelope.mail_from or "",
                "recipients": list(envelope.rcpt_tos),
                "subject": str(headers.get("Subject", "")),
                "messageId": str(headers.get("Message-ID", "")),
                "inReplyTo": str(headers.get("In-Reply-To", "")),
                "size": len(raw),
            }
        )
        del self.messages[:-KEPT]
        return "250 OK kept"


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.messages: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None

    def received(self) -> list[dict[str, Any]]:
        """What arrived, oldest first (a copy: the sandbox page reads it from its own thread)."""
        return list(self.messages)

    async def start(self) -> SmtpSink:
        handler = _KeepingHandler(self.messages)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, hostname="demo-sink"),
            self.host,
            self.port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
