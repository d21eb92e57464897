"""The connector's local HTTP server: health, metrics, admin page, replies API."""

from connector.api.app import ApiContext, create_api_app
from connector.api.server import ApiServer

__all__ = ["ApiContext", "ApiServer", "create_api_app"]
