"""Agents' replies through the Gmail API (`messages.send`), and the Sent lookup after a crash.

Why it is built this way:
- The reply goes as JSON `{raw: base64url(RFC 2822), threadId?}`, serialised exactly as composed
  so Message-ID, In-Reply-To and References survive. Not as a media upload: googleapiclient keeps
  https for uploads and would bypass `api_endpoint`. Gmail takes recipients from the headers, so
  envelope-only (Bcc) recipients go into a Bcc header, which Gmail keeps in Sent only.
- Gmail files the reply in the customer's conversation only when `threadId` is given: the answered
  message is looked up by its Message-ID (`rfc822msgid:`, the reply's In-Reply-To). Not found (or
  not allowed by the token's scope): sent without it; the headers still thread it for the customer.
- The send is one HTTP exchange on a fresh connection, never repeated by itself. httplib2 resends a
  request whose connection dropped before the answer (it takes it for a stale keep-alive), which
  here could give the customer the reply twice; `_OneShotHttp` instead says whether the request had
  been written: not yet -> SendDeferred (Gmail cannot have it), written -> SendUncertain.
- Only a 401 is retried at once (with a new token): it proves nothing was accepted. 429 and a 503
  with Retry-After prove it too, but Gmail's sending limits last minutes to hours, so the outbox's
  schedule retries them. 500/502/504 and a bare 503 may come after Gmail took the message:
  SendUncertain (a person decides, or the Sent lookup after a restart). Errors name the mailbox,
  Google's reason and text, never the token.
"""

from __future__ import annotations

import base64
import http.client
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import httplib2
import structlog
from googleapiclient.errors import HttpError

from connector.config import MailboxSettings
from connector.errors import (
    AuthFailed,
    ConnectorError,
    ProviderError,
    ProviderUnavailable,
    SendDeferred,
    SendRejected,
    SendUncertain,
    Throttled,
)
from connector.models import RecipientResult, SendReceipt
from providers.gmail.api import (
    RATE_REASONS,
    TIMEOUT_SECONDS,
    NotFound,
    RetryPolicy,
    ScopeMissing,
    gmail_api,
    reason_of,
    retry_after_of,
)
from providers.oauth import TokenProvider
from providers.whole_message import mime_for_api, unconfirmed

log = structlog.get_logger("providers.gmail")

MAX_RAW_BYTES = 36_700_160  # 35 MiB: the largest message Gmail's messages.send takes
SEND_SCOPE = (
    "https://www.googleapis.com/auth/gmail.send (or gmail.compose, gmail.modify, https://mail.google.com/)"
)
LIMIT_REASONS = RATE_REASONS | {"dailyLimitExceeded", "quotaExceeded"}
SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
_SEARCHABLE_ID = re.compile(r"^<?([^\s\"\\<>(){}]+@[^\s\"\\<>(){}]+)>?$")
BeforeData = Callable[[], Awaitable[None]]


def searchable_id(message_id: str | None) -> str | None:
    """The Message-ID without brackets when it can go into a Gmail search as one term, else None."""
    if not message_id:
        return None
    first = re.search(r"<[^<>]*>", message_id)
    match = _SEARCHABLE_ID.match((first.group(0) if first else message_id).strip())
    return match.group(1) if match else None


# ---------------------------------------------------------------------- one exchange, told apart


class RequestNotSent(Exception):
    """The connection failed before the whole request was written: Gmail cannot have the reply."""


class OutcomeUnknown(Exception):
    """The request was written but no answer came: Gmail may have accepted the reply."""


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _OneShotHttp(httplib2.Http):  # type: ignore[misc]  # httplib2 is untyped
    """An Http that makes exactly one attempt per request and follows no redirect."""

    def __init__(self) -> None:
        super().__init__(timeout=TIMEOUT_SECONDS)
        self.follow_redirects = False

    def _conn_request(
        self, conn: Any, request_uri: str, method: str, body: Any, headers: Any
    ) -> tuple[Any, bytes]:
        try:
            if conn.sock is None:
                conn.connect()
            conn.request(method, request_uri, body, headers)
        except (OSError, http.client.HTTPException) as exc:  # refused, DNS, TLS, reset while writing
            conn.close()
            raise RequestNotSent(_describe(exc)) from exc
        try:
            response = conn.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:  # timeout, reset, closed without answer
            conn.close()
            raise OutcomeUnknown(_describe(exc)) from exc
        wrapped = httplib2.Response(response)
        return wrapped, httplib2._decompressContent(wrapped, content, self.limit_kwargs)


# ---------------------------------------------------------------------- the ports


class GmailSender:
    """OutboundSender for one Gmail mailbox. Sends may overlap: each has its own connection."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
        max_bytes: int = MAX_RAW_BYTES,
    ) -> None:
        self.mailbox_id = mailbox.id
        self.api = gmail_api(mailbox, tokens, retry)
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"GmailSender(mailbox={self.mailbox_id!r}, user={self.api.user_id!r})"

    def _where(self, **extra: Any) -> dict[str, Any]:
        return {"mailbox": self.mailbox_id, **extra}

    async def send(
        self,
        message: EmailMessage,
        envelope_from: str,
        recipients: list[str],
        *,
        before_data: BeforeData | None = None,
    ) -> SendReceipt:
        """messages.send; `before_data` runs right before the request that carries the reply.
        Gmail takes or refuses the message as a whole, so every recipient shares one outcome."""
        if not recipients:
            raise SendRejected("no recipients", **self._where())
        raw = mime_for_api(message, recipients, "Gmail")
        if len(raw) > self.max_bytes:
            raise SendRejected(
                f"the reply is {len(raw)} bytes; Gmail sends at most {self.max_bytes} bytes per "
                "message (leave out or shrink attachments)",
                **self._where(),
            )
        body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(raw).decode("ascii")}
        thread_id = await self._thread_of(message)
        if thread_id is not None:
            body["threadId"] = thread_id
        sent = await self._send_once(body, recipients, before_data)
        gmail_id = str(sent.get("id", ""))
        note = f"accepted by the Gmail API as message {gmail_id} in thread {sent.get('threadId', '')}"
        return SendReceipt(
            tuple(RecipientResult(r, True, None, note) for r in recipients), data_response=gmail_id
        )

    async def _thread_of(self, message: EmailMessage) -> str | None:
        """The Gmail thread of the message answered, if Gmail has it (also in the trash)."""
        wanted = searchable_id(message.get("In-Reply-To"))
        if wanted is None:
            return None
        try:
            data = await self.api.call(
                "messages.list",
                lambda u: u.messages().list(
                    userId=self.api.user_id, q=f"rfc822msgid:{wanted}", includeSpamTrash=True, maxResults=1
                ),
            )
        except NotFound:
            return None
        except (Throttled, ProviderUnavailable) as exc:
            raise SendDeferred(
                f"cannot look up the customer's Gmail thread, the reply was not sent: {exc.message}",
                **self._where(),
            ) from None
        except AuthFailed as exc:
            if not isinstance(exc, ScopeMissing):
                raise
            log.warning("gmail_thread_lookup_failed", mailbox=self.mailbox_id, error=str(exc))
            return None
        except ProviderError as exc:  # e.g. a send-only scope may not search: thread by headers only
            log.warning("gmail_thread_lookup_failed", mailbox=self.mailbox_id, error=str(exc))
            return None
        found = data.get("messages") or []
        return str(found[0]["threadId"]) if found and found[0].get("threadId") else None

    async def _send_once(
        self, body: dict[str, Any], recipients: list[str], before_data: BeforeData | None
    ) -> dict[str, Any]:
        refreshed = dropped_thread = announced = False
        while True:
            token = await self.api.tokens.token()
            if not announced and before_data is not None:
                await before_data()
                announced = True
            http = _OneShotHttp()
            try:
                result = await self.api.exchange(self._send_request(body), token, http)
                return dict(result or {})
            except RequestNotSent as exc:
                raise SendDeferred(
                    f"cannot reach the Gmail API, the reply was not sent ({exc})", **self._where()
                ) from None
            except OutcomeUnknown as exc:
                raise SendUncertain(
                    f"the connection to the Gmail API was lost after the reply was sent ({exc}): "
                    "Gmail may have accepted it",
                    recipients=unconfirmed(recipients),
                    **self._where(),
                ) from None
            except HttpError as exc:
                status = int(exc.resp.status)
                if status == 401 and not refreshed:  # nothing was accepted: once more, new token
                    refreshed = True
                    if await self.api.tokens.token() == token:
                        self.api.tokens.invalidate()
                    continue
                if status == 404 and "threadId" in body and not dropped_thread:  # thread gone since
                    dropped_thread = True
                    body = {"raw": body["raw"]}
                    continue
                raise self._refusal(exc, recipients) from None
            finally:
                http.close()

    def _send_request(self, body: dict[str, Any]) -> Callable[[Any], Any]:
        return lambda users: users.messages().send(userId=self.api.user_id, body=body)

    def _refusal(self, exc: HttpError, recipients: list[str]) -> ConnectorError:
        """Google's answer as the outbox's error class: who must act, and whether to retry."""
        status = int(exc.resp.status)
        reason, text = reason_of(exc)
        what = f"{status} {reason}: {text}" if reason else f"{status} {text}"
        after = retry_after_of(exc)
        later = f" (Retry-After: {after:g} s)" if after is not None else ""
        where = self._where(status=status)
        if status == 401:
            return AuthFailed("Gmail messages.send: 401 Invalid Credentials after a token refresh", **where)
        if status == 429 or (status == 403 and reason in LIMIT_REASONS):
            return SendDeferred(f"Gmail is limiting sending for this account: {what}{later}", **where)
        if status == 403 and (reason in SCOPE_REASONS or "scope" in text.lower()):
            return AuthFailed(f"Gmail messages.send: {what}; the token needs the scope {SEND_SCOPE}", **where)
        if status == 403:
            return AuthFailed(
                f"Gmail messages.send: {what}; this account is not allowed to send through the Gmail API",
                **where,
            )
        if status == 404:
            return ProviderError(f"Gmail messages.send: {what} (check gmail.user_id)", **where)
        if status == 503 and after is not None:  # a bare 503 may come from a gateway after Gmail took it
            return SendDeferred(
                f"the Gmail API is unavailable, the reply was not sent: {what}{later}", **where
            )
        if status >= 500:
            return SendUncertain(
                f"the Gmail API answered {what} after receiving the reply: it may have been sent",
                recipients=unconfirmed(recipients),
                **where,
            )
        if status >= 400:
            return SendRejected(f"Gmail refused the reply: {what}", **where)
        return SendDeferred(f"unexpected answer from the Gmail API: {what}", **where)

    async def close(self) -> None:
        self.api.close()


class GmailSentFolder:
    """Gmail files sent mail under SENT by itself; this only finds a reply there again."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.mailbox_id = mailbox.id
        self.api = gmail_api(mailbox, tokens, retry)

    def __repr__(self) -> str:
        return f"GmailSentFolder(mailbox={self.mailbox_id!r}, user={self.api.user_id!r})"

    async def append(self, raw: bytes) -> str:
        return ""

    async def contains(self, message_id: str) -> bool:
        """True when sent mail (also trashed) has this Message-ID. Raises ProviderError."""
        wanted = searchable_id(message_id)
        if wanted is None:
            raise ValueError("not a Message-ID that can be searched for")
        try:
            data = await self.api.call(
                "messages.list",
                lambda u: u.messages().list(
                    userId=self.api.user_id,
                    q=f"rfc822msgid:{wanted}",
                    labelIds=["SENT"],
                    includeSpamTrash=True,
                    maxResults=1,
                ),
                message_id=message_id,
            )
        except NotFound as exc:
            raise ProviderError(
                f"Gmail messages.list: 404 {exc.reason} (check gmail.user_id)", mailbox=self.mailbox_id
            ) from None
        return bool(data.get("messages"))

    async def close(self) -> None:
        self.api.close()
