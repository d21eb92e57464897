"""Microsoft Graph mail (Microsoft 365, Exchange Online) as an inbound provider, polled by delta query."""

from providers.graph.provider import GraphInboundProvider

__all__ = ["GraphInboundProvider"]
