"""A real SMTP server for reply tests: aiosmtpd with STARTTLS and AUTH (trustme certificates).

`rules` decide per recipient (RCPT) and per message (DATA) what the server answers, so tests
can greylist (451), reject (550), or drop the connection after the DATA dot; `hold_rcpt`
keeps every RCPT unanswered until the test sets the event. Everything received is kept as
parsed messages with its envelope and the client's address.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.peers.dovecot import free_port

USER, PASSWORD = "agent@example.com", "smtp-pass-Secret-42"


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes
    peer: tuple[str, int] | None = None


@dataclass
class Rules:
    """Return an SMTP reply line to refuse, or None to accept."""

    rcpt: Callable[[str], str | None] = lambda _addr: None
    data: Callable[[EmailMessage], str | None] = lambda _msg: None
    drop_after_data: Callable[[EmailMessage], bool] = lambda _msg: False
    hold_rcpt: threading.Event | None = None  # while not set, RCPT waits (the client sees a slow server)
    data_seconds: float = 0.0  # how long the server takes after the DATA dot before it answers


@dataclass
class SmtpPeer:
    controller: Controller
    port: int
    ca_file: str
    received: list[Received] = field(default_factory=list)
    rules: Rules = field(default_factory=Rules)
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: list[tuple[str, int]] = field(default_factory=list)  # clients whose RCPT waited on hold_rcpt

    def by_message_id(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.lock:
            for r in self.received:
                key = str(r.message["Message-ID"])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def smtp_block(self, **extra: Any) -> dict[str, Any]:
        block: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "security": "starttls",
            "username": USER,
            "password": PASSWORD,
            "ca_file": self.ca_file,
            "timeout_seconds": 5,
        }
        block.update(extra)
        return block


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        hold = self.peer.rules.hold_rcpt
        if hold is not None and not hold.is_set():
            with self.peer.lock:
                self.peer.held.append(session.peer)
            # until set, or until the test's rules are replaced (a test that failed while holding)
            while not await asyncio.to_thread(hold.wait, 0.2) and self.peer.rules.hold_rcpt is hold:
                pass
        refusal = self.peer.rules.rcpt(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        refusal = self.peer.rules.data(msg)
        if refusal:
            return refusal
        if self.peer.rules.data_seconds:
            await asyncio.sleep(self.peer.rules.data_seconds)  # a client gone meanwhile cancels this
        with self.peer.lock:
            self.peer.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), msg, raw, session.peer)
            )
        if self.peer.rules.drop_after_data(msg):
            server.transport.abort()  # accepted, but the client never hears the 250
            return "250 OK (never heard)"
        return "250 2.0.0 queued"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword) and data.login.decode() == USER and data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class _Certs:
    ca_file: str
    server_ctx: ssl.SSLContext


def _certs(directory: Path) -> _Certs:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return _Certs(str(ca_file), ctx)


def start_peer() -> Iterator[SmtpPeer]:
    directory = Path(tempfile.mkdtemp(prefix="smtp-peer-"))
    certs = _certs(directory)
    port = free_port()
    peer = SmtpPeer(controller=None, port=port, ca_file=certs.ca_file)  # type: ignore[arg-type]
    controller = Controller(
        _Handler(peer),
        hostname="127.0.0.1",
        port=port,
        server_hostname="localhost",
        tls_context=certs.server_ctx,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticate,
    )
    controller.start()
    peer.controller = controller
    try:
        yield peer
    finally:
        controller.stop()
