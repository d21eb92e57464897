"""Gmail API inbound provider (google-api-python-client): labels as folders, historyId cursors."""

from providers.gmail.provider import GmailInboundProvider

__all__ = ["GmailInboundProvider"]
