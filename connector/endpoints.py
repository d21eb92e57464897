"""Where a provider may send credentials: the one loopback test and the one API-endpoint check.

Plaintext (IMAP `security: plain`, SMTP, an `http://` API endpoint) is only allowed to this machine
(an emulator, a local proxy) unless a person opts in, because a password or bearer token would
otherwise cross a network in clear.
"""

from __future__ import annotations

import ipaddress
import ssl
from urllib.parse import urlsplit

from connector.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_api_endpoint(url: str, field: str) -> str:
    """`url` without a trailing slash; https, or http only to loopback. `field` names the setting
    in the error (`mailboxes[support].graph.api_endpoint`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError([f"{field}: must be an https:// URL"])
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            [
                f"{field}: plain http to {parts.hostname} is refused (the access token would travel "
                "in clear); use https"
            ]
        )
    return url.rstrip("/")


def is_cert_verify_failure(exc: BaseException) -> bool:
    """True when `exc`, or anything it wraps, is a failed certificate check."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
