"""One authenticated IMAP session over aioimaplib: connect, TLS/STARTTLS, login, run commands.

aioimaplib 2.0.3 has no STARTTLS (done here) and loses its per-command timer, so every command
races a deadline and the connection's end (`protocol.py` holds the patches to aioimaplib itself).
Only this module and `protocol.py` touch aioimaplib's internals. Every library, ssl and OS error
leaves here as a `connector.errors` class, with context and without secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aioimaplib
from aioimaplib.aioimaplib import Command

from connector.config import ImapSettings
from connector.endpoints import is_loopback
from connector.errors import (
    AuthFailed,
    CertificateRejected,
    ConfigError,
    FolderMissing,
    ProviderError,
    ProviderUnavailable,
)
from providers.imap.protocol import ImapClient, SaslCommand
from providers.imap.utf7 import decode_folder, quote_folder
from providers.oauth import TokenProvider

T = TypeVar("T")
LOGOUT_TIMEOUT_SECONDS = 2.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


class InsecureTransportRefused(ConfigError, ProviderError):
    """Plaintext IMAP to a non-loopback host without `allow_insecure: true` (a config problem)."""


def refuse_insecure(settings: ImapSettings, mailbox_id: str) -> None:
    """Raises InsecureTransportRefused for `security: plain` to a remote host unless opted in."""
    if settings.security == "plain" and not settings.allow_insecure and not is_loopback(settings.host):
        raise InsecureTransportRefused(
            [
                f"mailboxes[{mailbox_id}].imap.security: plain (unencrypted) IMAP to {settings.host} "
                "is refused; use tls or starttls, or set allow_insecure: true to accept sending "
                "the password in clear"
            ]
        )


def tls_context(settings: ImapSettings) -> ssl.SSLContext:
    ctx = (
        ssl.create_default_context(cafile=settings.ca_file)
        if settings.ca_file
        else ssl.create_default_context()
    )
    if not settings.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True, slots=True)
class SelectedFolder:
    name: str
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    attributes: frozenset[str]  # lower-case, e.g. "\\archive"


class ImapSession:
    """A logged-in connection. Not safe for concurrent use: the provider serializes calls."""

    def __init__(self, client: ImapClient, settings: ImapSettings, mailbox_id: str) -> None:
        self.client = client
        self.settings = settings
        self.mailbox_id = mailbox_id
        self.selected: SelectedFolder | None = None
        self.dead = False
        self.closed_by_server = False  # the peer ended it (BYE, restart): a retry may succeed at once
        self._folders: list[FolderInfo] | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(cls, settings: ImapSettings, mailbox_id: str, tokens: TokenProvider | None) -> ImapSession:
        """Connects (TLS, STARTTLS or loopback plaintext) and logs in; raises ProviderError subclasses."""
        refuse_insecure(settings, mailbox_id)
        where = {"mailbox": mailbox_id, "server": f"{settings.host}:{settings.port}"}
        ctx = tls_context(settings) if settings.security != "plain" else None
        try:
            client = ImapClient(
                settings.host,
                settings.port,
                settings.timeout_seconds,
                ctx if settings.security == "tls" else None,
            )
        except OSError as exc:
            raise ProviderUnavailable(f"cannot connect: {exc.strerror or exc}", **where) from None
        session = cls(client, settings, mailbox_id)
        try:
            await session._guard(client.wait_hello_from_server(), "connect")
            if settings.security == "starttls":
                assert ctx is not None
                await session._starttls(ctx)
            await session._login(tokens)
        except BaseException:
            session.abort()
            raise
        return session

    async def _guard(self, awaitable: Awaitable[T], what: str) -> T:
        where = {"mailbox": self.mailbox_id, "server": f"{self.settings.host}:{self.settings.port}"}
        lost: asyncio.Future[Any] = self.client.protocol.lost
        task: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=self.settings.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if task not in done:
                task.cancel()
                if lost.done():
                    raise ProviderUnavailable(f"connection closed by the server during {what}", **where)
                raise TimeoutError
            return cast(T, task.result())
        except ssl.SSLCertVerificationError as exc:
            raise CertificateRejected(
                f"TLS certificate verify failed: {exc.verify_message}", **where
            ) from None
        except ssl.SSLError as exc:
            raise ProviderUnavailable(f"TLS handshake failed: {exc.reason or exc}", **where) from None
        except (TimeoutError, aioimaplib.CommandTimeout):
            raise ProviderUnavailable(
                f"timed out during {what} after {self.settings.timeout_seconds:g} s", **where
            ) from None
        except OSError as exc:
            raise ProviderUnavailable(f"cannot connect: {exc.strerror or exc}", **where) from None
        except aioimaplib.AioImapException as exc:
            raise ProviderUnavailable(f"IMAP error during {what}: {type(exc).__name__}", **where) from None

    async def _starttls(self, ctx: ssl.SSLContext) -> None:
        if "STARTTLS" not in self.client.protocol.capabilities:
            raise ProviderUnavailable(
                "server does not offer STARTTLS",
                mailbox=self.mailbox_id,
                server=f"{self.settings.host}:{self.settings.port}",
            )
        proto = self.client.protocol
        resp = await self._guard(
            proto.execute(Command("STARTTLS", proto.new_tag(), loop=proto.loop)), "STARTTLS"
        )
        if resp.result != "OK":
            raise ProviderUnavailable("server refused STARTTLS", mailbox=self.mailbox_id)
        loop = asyncio.get_running_loop()
        proto.transport = await self._guard(
            loop.start_tls(proto.transport, proto, ctx, server_hostname=self.settings.host), "TLS handshake"
        )
        await self._guard(proto.capability(), "CAPABILITY")

    async def _login(self, tokens: TokenProvider | None) -> None:
        s = self.settings
        where = {"mailbox": self.mailbox_id, "user": s.username}
        if s.auth == "xoauth2":
            assert tokens is not None
            token = await tokens.token()
            proto = self.client.protocol
            sasl = base64.b64encode(f"user={s.username}\x01auth=Bearer {token}\x01\x01".encode()).decode()
            cmd = SaslCommand(proto, proto.new_tag(), "XOAUTH2", sasl)
            resp = await self._guard(proto.execute(cmd, scrub=sasl), "AUTHENTICATE XOAUTH2")
            if resp.result != "OK":
                tokens.invalidate()
                raise AuthFailed(f"XOAUTH2 login rejected: {_server_text(resp)}", **where)
            proto.state = aioimaplib.AUTH
        else:
            assert s.password is not None
            resp = await self._guard(self.client.login(s.username, s.password.get_secret_value()), "LOGIN")
            if resp.result != "OK":
                raise AuthFailed(f"login rejected: {_server_text(resp)}", **where)
        await self._guard(self.client.protocol.capability(), "CAPABILITY")

    # ------------------------------------------------------------------ facts

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(c.upper() for c in self.client.protocol.capabilities)

    @property
    def alive(self) -> bool:
        return not self.dead and not self.client.protocol.lost.done()

    def tls_description(self) -> str:
        if self.settings.security == "plain":
            return "plain (no TLS)"
        obj = self.client.protocol.transport.get_extra_info("ssl_object")
        if obj is None:
            return "unknown"
        cipher = obj.cipher()
        suffix = "" if self.settings.verify_tls else ", certificate NOT verified"
        return f"{obj.version()} {cipher[0] if cipher else ''}{suffix}".strip()

    # ------------------------------------------------------------------ commands

    async def run(
        self, awaitable: Awaitable[T], what: str, *, seconds: float | None = None, **context: Any
    ) -> T:
        """Awaits one aioimaplib call against a deadline and the connection's end; translates errors.

        Any failure leaves the session dead (the protocol state is unknown), so the caller reconnects.
        """
        ctx = {"mailbox": self.mailbox_id, **context}
        limit = seconds if seconds is not None else self.settings.timeout_seconds
        task: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
        lost: asyncio.Future[Any] = self.client.protocol.lost
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if task in done:
            try:
                return cast(T, task.result())
            except aioimaplib.CommandTimeout:
                self.abort()
                raise ProviderUnavailable(f"IMAP {what} timed out after {limit:g} s", **ctx) from None
            except aioimaplib.AioImapException as exc:
                self.abort()
                raise ProviderUnavailable(
                    f"IMAP protocol error during {what}: {type(exc).__name__}", **ctx
                ) from None
            except OSError as exc:
                self.abort()
                raise ProviderUnavailable(
                    f"IMAP connection error during {what}: {exc.strerror or exc}", **ctx
                ) from None
        task.cancel()
        self.abort()
        if lost.done():
            bye = self.client.protocol.bye
            raise ProviderUnavailable(
                f"IMAP connection closed by the server during {what}" + (f": {bye}" if bye else ""), **ctx
            )
        raise ProviderUnavailable(f"IMAP {what} timed out after {limit:g} s", **ctx)

    async def ok(
        self, awaitable: Awaitable[Any], what: str, *, seconds: float | None = None, **context: Any
    ) -> Any:
        """`run`, then a NO/BAD becomes ProviderUnavailable naming the command and the server's words."""
        resp = await self.run(awaitable, what, seconds=seconds, **context)
        if resp.result != "OK":
            raise ProviderUnavailable(
                f"IMAP {what} failed: {_server_text(resp)}", mailbox=self.mailbox_id, **context
            )
        return resp

    async def select(self, folder: str) -> SelectedFolder:
        """SELECT (cached while the same folder stays selected); NO → FolderMissing."""
        if self.selected is not None and self.selected.name == folder:
            return self.selected
        self.selected = None
        resp = await self.run(self.client.select(quote_folder(folder)), "SELECT", folder=folder)
        if resp.result != "OK":
            raise FolderMissing(
                f"folder cannot be selected: {_server_text(resp)}", mailbox=self.mailbox_id, folder=folder
            )
        validity = uidnext = None
        exists = 0
        for line in resp.lines:
            if not isinstance(line, bytes):
                continue
            if m := _UIDVALIDITY.search(line):
                validity = int(m.group(1))
            if m := _UIDNEXT.search(line):
                uidnext = int(m.group(1))
            if m := _EXISTS.match(line):
                exists = int(m.group(1))
        if validity is None:
            self.abort()
            raise ProviderUnavailable(
                "server sent no UIDVALIDITY on SELECT", mailbox=self.mailbox_id, folder=folder
            )
        self.selected = SelectedFolder(folder, validity, uidnext, exists)
        return self.selected

    async def sync(self, folder: str) -> None:
        """NOOP on an already selected folder: makes the server apply pending changes now (Dovecot
        ends the session with `BYE ... inconsistent` when the UIDVALIDITY changed underneath)."""
        if self.selected is not None and self.selected.name == folder:
            await self.ok(self.client.noop(), "NOOP", folder=folder)

    async def search_after(self, uid: int, folder: str) -> list[int]:
        """UIDs above `uid`, ascending. `n:*` always includes the highest UID, hence the filter."""
        if "ESEARCH" in self.capabilities:
            return await self._esearch_after(uid, folder)
        resp = await self.ok(
            self.client.uid_search(f"UID {uid + 1}:*", charset=None), "UID SEARCH", folder=folder
        )
        found: list[int] = []
        for line in resp.lines[:-1]:
            if isinstance(line, bytes):
                found.extend(int(t) for t in line.split() if t.isdigit())
        return sorted(u for u in set(found) if u > uid)

    async def _esearch_after(self, uid: int, folder: str) -> list[int]:
        """ESEARCH (RFC 4731) `RETURN (ALL)` answers with a compact set ("1:9000,9002") instead of
        one number per message; aioimaplib only collects the `* ESEARCH` line under that name."""
        proto = self.client.protocol
        cmd = Command(
            "SEARCH",
            proto.new_tag(),
            "RETURN",
            "(ALL)",
            "UID",
            f"{uid + 1}:*",
            prefix="UID",
            untagged_resp_name="ESEARCH",
            loop=proto.loop,
        )
        resp = await self.ok(proto.execute(cmd), "UID SEARCH", folder=folder)
        found: list[int] = []
        for line in resp.lines[:-1]:
            if isinstance(line, bytes) and (m := re.search(rb"\bALL ([0-9:,]+)", line)):
                for part in m.group(1).decode().split(","):
                    low, _, high = part.partition(":")
                    a, b = int(low), int(high or low)
                    found.extend(range(min(a, b), max(a, b) + 1))
        return sorted(u for u in set(found) if u > uid)

    async def list_folders(self) -> list[FolderInfo]:
        """LIST "" "*" once per session: names decoded from modified UTF-7, attributes lower-cased."""
        if self._folders is not None:
            return self._folders
        resp = await self.ok(self.client.list('""', '"*"'), "LIST")
        folders: list[FolderInfo] = []
        lines = resp.lines[:-1]
        for i, line in enumerate(lines):
            if not isinstance(line, bytes) or not (m := _LIST.match(line)):
                continue
            raw = m.group("name")
            if raw.endswith(b"}") and i + 1 < len(lines) and not isinstance(lines[i + 1], bytes):
                name = bytes(lines[i + 1]).decode("utf-8", "replace")
            else:
                name = _unquote(raw.decode("utf-8", "replace"))
            with contextlib.suppress(ValueError):
                name = decode_folder(name)
            attrs = frozenset(a.lower() for a in m.group("attrs").decode().split())
            folders.append(FolderInfo(name, attrs))
        self._folders = folders
        return folders

    async def status(self, folder: str) -> dict[str, int]:
        """STATUS (MESSAGES UIDVALIDITY UIDNEXT); a NO means the folder is missing."""
        resp = await self.run(
            self.client.status(quote_folder(folder), "(MESSAGES UIDVALIDITY UIDNEXT)"),
            "STATUS",
            folder=folder,
        )
        if resp.result != "OK":
            raise FolderMissing(
                f"folder not found: {_server_text(resp)}", mailbox=self.mailbox_id, folder=folder
            )
        facts: dict[str, int] = {}
        for line in resp.lines[:-1]:
            if isinstance(line, bytes) and (m := re.search(rb"\(([^()]*)\)\s*$", line)):
                words = m.group(1).decode().split()
                facts.update(
                    {k.upper(): int(v) for k, v in zip(words[::2], words[1::2], strict=False) if v.isdigit()}
                )
        return facts

    # ------------------------------------------------------------------ closing

    def abort(self) -> None:
        """Drops the connection at once (after a failure the protocol state cannot be trusted)."""
        if not self.dead:
            self.closed_by_server = self.client.protocol.lost.done()
        self.dead = True
        self.selected = None
        transport = self.client.protocol.transport
        if transport is not None:
            transport.abort()
        if not self.client._client_task.done():
            self.client._client_task.cancel()

    async def close(self) -> None:
        """LOGOUT politely with a short deadline, then drop the connection."""
        if self.alive:
            task = asyncio.ensure_future(self.client.logout())
            try:
                await asyncio.wait({task, self.client.protocol.lost}, timeout=LOGOUT_TIMEOUT_SECONDS)
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self.abort()


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _server_text(resp: Any) -> str:
    """The server's words from the tagged reply (never contains what we sent)."""
    for line in reversed(resp.lines):
        if isinstance(line, bytes) and line:
            return line.decode("utf-8", "replace")[:200]
    return resp.result or "no reply"
