"""IMAP inbound provider (aioimaplib): TLS/STARTTLS, LOGIN/XOAUTH2, UID cursors, IDLE, post-actions."""

from providers.imap.connection import InsecureTransportRefused
from providers.imap.provider import ImapInboundProvider

__all__ = ["ImapInboundProvider", "InsecureTransportRefused"]
