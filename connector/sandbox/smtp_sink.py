"""The demo's SMTP sink: a plain SMTP server on 127.0.0.1 that accepts every message and keeps it.

Enough of RFC 5321 for the connector's SMTP sender (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no
TLS, no AUTH), so the demo's replies have somewhere real to go and the sandbox page can show them.
Never a relay: nothing it receives leaves the machine. Tests use aiosmtpd; this is for the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
from datetime import UTC, datetime
from typing import Any

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
KEPT = 200


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
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def _keep(self, sender: str, recipients: list[str], raw: bytes) -> None:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        self.messages.append(
            {
                "at": datetime.now(UTC).isoformat(),
                "from": sender,
                "recipients": recipients,
                "subject": str(headers.get("Subject", "")),
                "messageId": str(headers.get("Message-ID", "")),
                "inReplyTo": str(headers.get("In-Reply-To", "")),
                "size": len(raw),
            }
        )
        del self.messages[:-KEPT]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        sender, recipients = "", list[str]()
        try:
            await say("220 demo-sink ESMTP (keeps what it receives; relays nothing)")
            while line := await reader.readline():
                verb, _, arg = line.decode("latin-1").strip().partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    await say(
                        f"250-demo-sink\r\n250 SIZE {MAX_MESSAGE_BYTES}"
                        if verb == "EHLO"
                        else "250 demo-sink"
                    )
                elif verb == "MAIL":
                    sender, recipients = arg.partition(":")[2].split(" ")[0].strip("<>"), []
                    await say("250 OK")
                elif verb == "RCPT":
                    recipients.append(arg.partition(":")[2].split(" ")[0].strip("<>"))
                    await say("250 OK")
                elif verb == "DATA":
                    await say("354 end with <CRLF>.<CRLF>")
                    raw = await self._data(reader)
                    self._keep(sender, recipients, raw)
                    await say("250 OK kept")
                elif verb == "RSET":
                    sender, recipients = "", []
                    await say("250 OK")
                elif verb == "NOOP":
                    await say("250 OK")
                elif verb == "QUIT":
                    await say("221 bye")
                    break
                else:
                    await say("502 not implemented")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _data(reader: asyncio.StreamReader) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            line = await reader.readline()
            if not line or line in (b".\r\n", b".\n"):
                break
            size += len(line)
            if size > MAX_MESSAGE_BYTES:
                raise ValueError("message too large")
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)
