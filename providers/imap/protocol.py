"""aioimaplib 2.0.3, patched where it fails us (pinned version; these subclass its internals).

- Its response parser tail-recurses once per received line: a large response overflows the stack,
  asyncio drops the transport and the command never completes. `ImapProtocol` parses iteratively.
- A lost connection never fails the pending command: `ImapProtocol.lost` resolves instead, and
  the session races every command against it. The last `* BYE` text is kept for the error.
- Its XOAUTH2 never answers the server's error challenge and hangs: `SaslCommand` replies with
  the empty line SASL expects, so the server sends the tagged NO at once.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import CRLF, Command, IMAP4ClientProtocol, IncompleteRead, literal_data_re


class ImapProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol with an iterative parser, BYE capture and a lost-connection future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lost: asyncio.Future[None]) -> None:
        super().__init__(loop, None)
        self.lost = lost
        self.bye: str | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)

    def _untagged_response(self, line: bytes) -> Any:
        if line.startswith(b"* BYE"):
            self.bye = line[6:].decode("utf-8", "replace")[:200]
        return super()._untagged_response(line)

    def _handle_responses(self, data: bytes, line_handler: Any, current_cmd: Any = None) -> None:
        # Same logic as aioimaplib 2.0.3, whose version tail-recurses once per line (RecursionError
        # on large responses, then a silent hang); offsets avoid re-copying the rest of the chunk.
        pos = 0
        while True:
            if pos >= len(data):
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                need = current_cmd._expected_size - len(current_cmd._resp_literal_data)
                piece = data[pos : pos + need]
                pos += len(piece)
                current_cmd.append_literal_data(piece)
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            end = data.find(CRLF, pos)
            if end < 0:
                raise IncompleteRead(current_cmd, data[pos:])
            line = data[pos:end]
            pos = end + 2
            cmd = line_handler(line, current_cmd)
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                if cmd is None:
                    cmd = Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None


class ImapClient(aioimaplib.IMAP4):  # type: ignore[misc]
    def __init__(self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None) -> None:
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        super().__init__(host, port, timeout=timeout, ssl_context=ssl_context)

    def create_client(
        self, host: str, port: int, loop: Any, conn_lost_cb: Any = None, ssl_context: Any = None
    ) -> None:
        local_loop = asyncio.get_running_loop()
        self.protocol = ImapProtocol(local_loop, self._lost)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


class SaslCommand(Command):  # type: ignore[misc]
    """AUTHENTICATE with an initial response; answers any server challenge with an empty line,
    which is how a client acknowledges a SASL error so the server sends the tagged NO."""

    def __init__(self, protocol: ImapProtocol, tag: str, *args: str) -> None:
        super().__init__("AUTHENTICATE", tag, *args, loop=protocol.loop)
        self._protocol = protocol

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if result == "Pending" and isinstance(line, bytes) and line.startswith(b"+"):
            self._protocol.transport.write(CRLF)
