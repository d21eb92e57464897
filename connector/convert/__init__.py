"""Message conversion: raw RFC 5322 bytes in, `EmailItem` out (pure, no IO)."""

from connector.convert.converter import convert, unparseable_item
from connector.convert.limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "Limits", "convert", "unparseable_item"]
