"""Picks the adapter for a mailbox's `provider:` setting. The only place that names concrete providers."""

from __future__ import annotations

from connector.config import MailboxSettings
from providers.base import InboundProvider


def build_inbound(mailbox: MailboxSettings) -> InboundProvider:
    if mailbox.provider == "maildir":
        from providers.maildir import MaildirInboundProvider

        return MaildirInboundProvider(mailbox)
    if mailbox.provider == "imap":
        from providers.imap import ImapInboundProvider

        return ImapInboundProvider(mailbox)
    if mailbox.provider == "gmail":
        from providers.gmail import GmailInboundProvider

        return GmailInboundProvider(mailbox)
    if mailbox.provider == "graph":
        from providers.graph import GraphInboundProvider

        return GraphInboundProvider(mailbox)
    raise NotImplementedError(f"provider '{mailbox.provider}' is not available yet (mailbox {mailbox.id})")
