"""The connector's exception tree; callers decide by class, never by message text.

    ConnectorError
    ├── ConfigError                 bad configuration; names file and field path (exit 2)
    ├── ProviderError               anything a mail provider raised, translated at the adapter edge
    │   ├── AuthFailed              credentials rejected: the mailbox needs a person (state auth_required)
    │   ├── FolderMissing           a configured folder does not exist
    │   ├── ProviderUnavailable     network, TLS, timeout, server down: retried next cycle (degraded)
    │   │   └── CertificateRejected the server's TLS certificate is not trusted: a fix, not an outage
    │   ├── Throttled               the provider asked us to slow down (retry_after_seconds)
    │   └── CursorReset             the stored cursor is no longer valid (UIDVALIDITY, expired historyId)
    ├── IWDError                    the IWD API failed
    │   ├── IWDRejected             4xx other than 408/409/429: permanent for this payload
    │   └── IWDUnavailable          408, 429, 5xx, connection errors: retried, then the cycle stops
    ├── MessageError                one message cannot be converted: it goes to quarantine
    ├── StoreError                  the local store failed
    └── SendError                   an outbound reply could not be handed to the SMTP server
        ├── SendRejected            5xx: permanent, the server's text is kept for the agent
        ├── SendDeferred            4xx, connection or TLS trouble before DATA: retried with backoff
        └── SendUncertain           lost after the final DATA dot: may be delivered; never resent blindly
Every error carries context (mailbox, folder, provider id, IWD request id) and never a secret.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base class; `context` holds identifying fields safe to log and report."""

    code = "error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({where})"


class ConfigError(ConnectorError):
    code = "config_invalid"

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in problems))


class ProviderError(ConnectorError):
    code = "provider_error"


class AuthFailed(ProviderError):
    code = "auth_required"


class FolderMissing(ProviderError):
    code = "folder_missing"


class ProviderUnavailable(ProviderError):
    code = "unavailable"


class CertificateRejected(ProviderUnavailable):
    """Retried like an outage (the CA may be fixed by a reload), but shown as `error`: waiting
    will not help, a person must set the right CA."""


class Throttled(ProviderError):
    code = "throttled"

    def __init__(self, message: str, retry_after_seconds: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after_seconds = retry_after_seconds


class CursorReset(ProviderError):
    code = "cursor_reset"


class IWDError(ConnectorError):
    code = "iwd_error"

    def __init__(
        self,
        message: str,
        status: int | None = None,
        iwd_code: str | None = None,
        request_id: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, status=status, iwd_code=iwd_code, request_id=request_id, **context)
        self.status = status
        self.iwd_code = iwd_code
        self.request_id = request_id


class IWDRejected(IWDError):
    code = "iwd_rejected"


class IWDUnavailable(IWDError):
    code = "iwd_unavailable"


class MessageError(ConnectorError):
    code = "unparseable"


class StoreError(ConnectorError):
    code = "store_error"


class SendError(ConnectorError):
    """`smtp_code` is the server's reply code when there was one; `recipients` holds the
    per-recipient results (connector.models.RecipientResult) known when it was raised."""

    code = "send_error"

    def __init__(
        self, message: str, smtp_code: int | None = None, recipients: tuple[Any, ...] = (), **context: Any
    ) -> None:
        super().__init__(message, smtp_code=smtp_code, **context)
        self.smtp_code = smtp_code
        self.recipients = recipients


class SendRejected(SendError):
    code = "smtp_rejected"


class SendDeferred(SendError):
    code = "smtp_deferred"


class SendUncertain(SendError):
    code = "delivery_uncertain"
