"""Picks the adapters for a mailbox: the reader for its `provider:`, the sender for `sends_via`.
The only place that names concrete providers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.config import MailboxSettings
from providers.base import InboundProvider, OutboundSender, SentFolder

if TYPE_CHECKING:
    from providers.imap.budget import ConnectionBudget


def build_inbound(
    mailbox: MailboxSettings, *, imap_budget: ConnectionBudget | None = None
) -> InboundProvider:
    """The reader for `mailbox`; IMAP ones share `imap_budget` (the daemon's: one per daemon),
    else each has its own, unbounded."""
    if mailbox.provider == "maildir":
        from providers.maildir import MaildirInboundProvider

        return MaildirInboundProvider(mailbox)
    if mailbox.provider == "imap":
        from providers.imap import ImapInboundProvider

        return ImapInboundProvider(mailbox, budget=imap_budget)
    if mailbox.provider == "gmail":
        from providers.gmail import GmailInboundProvider

        return GmailInboundProvider(mailbox)
    if mailbox.provider == "graph":
        from providers.graph import GraphInboundProvider

        return GraphInboundProvider(mailbox)
    raise NotImplementedError(f"provider '{mailbox.provider}' is not available yet (mailbox {mailbox.id})")


def build_sender(mailbox: MailboxSettings) -> OutboundSender:
    """SMTP when the mailbox has an `smtp:` block, else the API it is read through."""
    via = mailbox.sends_via
    if via == "smtp":
        from providers.smtp import SmtpSender

        return SmtpSender(mailbox)
    if via == "gmail":
        from providers.gmail.send import GmailSender

        return GmailSender(mailbox)
    if via == "graph":
        from providers.graph.send import GraphSender

        return GraphSender(mailbox)
    raise NotImplementedError(f"mailbox {mailbox.id} cannot send replies (no smtp block)")


def build_sent_folder(mailbox: MailboxSettings) -> SentFolder | None:
    """Where a sent reply is filed, or looked up after a crash: the IMAP Sent folder for SMTP
    senders that want a copy; Gmail's or Graph's own Sent (they file the copy themselves)."""
    via = mailbox.sends_via
    if via == "gmail":
        from providers.gmail.send import GmailSentFolder

        return GmailSentFolder(mailbox)
    if via == "graph":
        from providers.graph.send import GraphSentFolder

        return GraphSentFolder(mailbox)
    from providers.sent_copy import ImapSentFolder, wants_sent_copy

    return ImapSentFolder(mailbox) if wants_sent_copy(mailbox) else None
