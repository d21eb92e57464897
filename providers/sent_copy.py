"""Files sent replies in the mailbox's Sent folder over IMAP, and finds them there again.

Reuses the IMAP provider's session (TLS/STARTTLS, XOAUTH2, error translation) instead of a
second implementation. The folder is the one LIST marks `\\Sent` (RFC 6154 SPECIAL-USE), else
`sent_folder` from the configuration, else "Sent". `contains()` lets the outbox settle a reply
left `sending` by a crash: if our Message-ID is in the Sent folder, the reply went out.
"""

from __future__ import annotations

import asyncio
import re

from connector.config import MailboxSettings
from connector.errors import ConfigError, ProviderError, ProviderUnavailable
from providers.imap.connection import ImapSession
from providers.imap.utf7 import quote_folder
from providers.oauth import TokenProvider, build_token_provider

DEFAULT_SENT_FOLDER = "Sent"
_GMAIL_HOSTS = ("imap.gmail.com", "imap.googlemail.com")
_SAFE_ID = re.compile(r"^<[^\s\"\\<>]+>$")


def files_sent_mail_itself(mailbox: MailboxSettings) -> bool:
    """Gmail (API or IMAP) stores what its SMTP server sends in Sent on its own."""
    if mailbox.provider == "gmail":
        return True
    return mailbox.imap is not None and mailbox.imap.host.lower() in _GMAIL_HOSTS


def wants_sent_copy(mailbox: MailboxSettings) -> bool:
    if mailbox.sent_copy is not None:
        return mailbox.sent_copy and mailbox.imap is not None
    return mailbox.provider == "imap" and mailbox.imap is not None and not files_sent_mail_itself(mailbox)


class ImapSentFolder:
    """The Sent folder of one IMAP mailbox; one session, reopened when it died."""

    def __init__(self, mailbox: MailboxSettings, *, tokens: TokenProvider | None = None) -> None:
        if mailbox.imap is None:
            raise ConfigError([f"mailboxes[{mailbox.id}]: a Sent copy needs an 'imap:' block"])
        self.mailbox = mailbox
        self.settings = mailbox.imap
        if tokens is None and self.settings.auth == "xoauth2":
            assert self.settings.oauth is not None
            tokens = build_token_provider(self.settings.oauth)
        self._tokens = tokens
        self._session: ImapSession | None = None
        self._folder: str | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ImapSession:
        if self._session is not None and self._session.alive:
            return self._session
        self._session = await ImapSession.open(self.settings, self.mailbox.id, self._tokens)
        return self._session

    async def folder(self) -> str:
        if self._folder is None:
            session = await self._open()
            special = [f.name for f in await session.list_folders() if "\\sent" in f.attributes]
            self._folder = special[0] if special else (self.mailbox.sent_folder or DEFAULT_SENT_FOLDER)
        return self._folder

    async def append(self, raw: bytes) -> str:
        """APPENDs with \\Seen; returns the folder name. Raises ProviderError."""
        async with self._lock:
            folder = await self.folder()
            session = await self._open()
            await session.ok(
                session.client.append(raw, mailbox=quote_folder(folder), flags="\\Seen"),
                "APPEND",
                folder=folder,
            )
            return folder

    async def contains(self, message_id: str) -> bool:
        """True when a message with this Message-ID is in the Sent folder. Raises ProviderError."""
        if not _SAFE_ID.match(message_id):
            raise ValueError("not a Message-ID we generate")
        async with self._lock:
            folder = await self.folder()
            session = await self._open()
            await session.select(folder)
            await session.sync(folder)
            resp = await session.ok(
                session.client.uid_search(f'HEADER Message-ID "{message_id}"', charset=None),
                "UID SEARCH",
                folder=folder,
            )
            for line in resp.lines[:-1]:
                if isinstance(line, bytes) and any(t.isdigit() for t in line.split()):
                    return True
            return False

    async def close(self) -> None:
        async with self._lock:
            session, self._session = self._session, None
            if session is not None:
                try:
                    await session.close()
                except (ProviderError, ProviderUnavailable, OSError):
                    session.abort()
