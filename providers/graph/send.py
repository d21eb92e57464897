"""Replies through Microsoft Graph: `POST /users/{id}/sendMail` with the composed MIME, and the
lookup in Sent Items that settles a send whose outcome a crash left unknown.

The MIME path (`Content-Type: text/plain`, body = base64 of the message) keeps the message as the
outbox composed it, threading headers included; Graph's JSON path cannot set In-Reply-To or
References. Graph takes recipients from the headers, so envelope-only (Bcc) recipients are added as
a `Bcc:` header, which Exchange never passes on to the recipients but keeps in the Sent Items copy
it files by itself. Graph accepts or refuses the message as a whole (202, empty body: accepted,
not yet delivered); a recipient refused later comes back as a bounce, which is inbound mail.

The send request is made once (`GraphApi.once`): a 401 is tried again with a fresh token, nothing
else is. What an answer means for the outbox:

* 202: every recipient accepted.
* 400 and other 4xx (bad MIME, too large, bad recipient): SendRejected with Graph's code and text.
* 401 twice, 403: AuthFailed (403 names the Mail.Send application permission).
* 408, 429, 503 with Retry-After, 507, 509, or no connection before the request went out:
  SendDeferred (with the Retry-After wait when Graph gave one); nothing was accepted, the outbox
  tries again later.
* 500, 502, 504, a 503 without Retry-After (a gateway may say so after the backend acted) and other
  5xx, or a connection lost after the request went out: SendUncertain. Graph may have sent it;
  resending could give the customer the reply twice.

A message whose request would exceed Graph's 4 MB request limit is refused before anything is sent
(large attachments would need upload sessions, which this sender does not do).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlencode

from connector.config import MailboxSettings
from connector.errors import (
    AuthFailed,
    ProviderError,
    SendDeferred,
    SendRejected,
    SendUncertain,
)
from connector.models import RecipientResult, SendReceipt
from providers.graph.api import (
    Answer,
    RequestCutOff,
    RetryPolicy,
    error_codes,
    graph_api,
    parse_retry_after,
    request_id,
    user_url,
)
from providers.oauth import TokenProvider
from providers.whole_message import mime_for_api, unconfirmed

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # Graph's limit on one request body (the base64 text here)
DEFERRED_STATUSES = frozenset({408, 429, 507, 509})  # Graph did not take the message: try later
DEFERRED_WITH_RETRY_AFTER = frozenset({503})  # only Graph's own throttling answer says that
REJECTED_5XX = frozenset({501})  # Graph cannot do this at all: no retry will help
MAX_ERROR_TEXT = 300
SEND_PERMISSION_HINT = (
    "the app registration needs the Mail.Send application permission with admin consent (and an "
    "application access policy or RBAC scope that includes this mailbox, if one is used)"
)
BeforeData = Callable[[], Awaitable[None]]


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:MAX_ERROR_TEXT]


class GraphSender:
    """OutboundSender for one Graph mailbox. Sends are serialized (Exchange counts messages per
    minute anyway); requests share the mailbox's cap of concurrent Graph requests in GraphApi."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        policy: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        options: dict[str, Any] = {"policy": policy}
        if timeout_seconds is not None:
            options["timeout_seconds"] = timeout_seconds
        self.mailbox_id = mailbox.id
        self.api = graph_api(mailbox, tokens, **options)
        assert mailbox.graph is not None  # graph_api refused a mailbox without one
        self.user_id = mailbox.graph.user_id
        self.url = user_url(self.api, self.user_id) + "/sendMail"
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"GraphSender(mailbox={self.mailbox_id!r}, user={self.user_id!r})"

    async def send(
        self,
        message: EmailMessage,
        envelope_from: str,
        recipients: list[str],
        *,
        before_data: BeforeData | None = None,
    ) -> SendReceipt:
        """POSTs the MIME once; `before_data` runs right before the request that carries it."""
        where: dict[str, Any] = {"mailbox": self.mailbox_id, "user": self.user_id}
        if not recipients:
            raise SendRejected("no recipients", **where)
        raw = mime_for_api(message, recipients, "Graph")
        body = base64.b64encode(raw)
        if len(body) > MAX_REQUEST_BYTES:
            raise SendRejected(
                f"the reply is {len(raw)} bytes of MIME ({len(body)} base64-encoded), over Graph's "
                f"{MAX_REQUEST_BYTES // (1024 * 1024)} MB limit for one sendMail request; make the "
                "attachments smaller or send them as links",
                **where,
            )
        async with self._lock:
            try:
                answer = await self.api.once(
                    "POST", self.url, content=body, content_type="text/plain", before_send=before_data
                )
            except RequestCutOff as exc:
                if exc.body_sent:
                    raise SendUncertain(
                        f"{exc.message}; Graph may have accepted the reply",
                        recipients=unconfirmed(recipients),
                        **where,
                    ) from None
                raise SendDeferred(exc.message, **where) from None
        if 200 <= answer.status < 300:
            rid = request_id(answer.json(), answer.headers)
            took = "accepted by Graph sendMail"
            return SendReceipt(
                tuple(RecipientResult(r, True, answer.status, took) for r in recipients),
                data_response=f"{answer.status} Accepted" + (f" (request-id {rid})" if rid else ""),
            )
        raise _refusal(answer, recipients, where)

    async def close(self) -> None:
        await self.api.aclose()


def _refusal(answer: Answer, recipients: list[str], where: dict[str, Any]) -> Exception:
    """The exception for a non-2xx answer to sendMail (see the module docstring)."""
    body = answer.json()
    codes = error_codes(body)
    node = body.get("error") if isinstance(body, dict) else None
    text = _one_line(node.get("message", "")) if isinstance(node, dict) else ""
    status = answer.status
    code = codes[-1] if codes else None
    context = {**where, "status": status, "graph_code": code, "request_id": request_id(body, answer.headers)}
    detail = f"{status} {code or ''}".strip() + (f": {text}" if text else "")
    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
    if status == 401:
        return AuthFailed(f"Graph rejected the access token for sendMail: {detail}", **context)
    if status == 403:
        return AuthFailed(f"Graph refused sendMail: {detail}; {SEND_PERMISSION_HINT}", **context)
    if status == 404:
        return ProviderError(f"Graph has no mailbox for this user: {detail}", **context)
    if status in DEFERRED_STATUSES or (status in DEFERRED_WITH_RETRY_AFTER and retry_after is not None):
        wait = f"; Graph asks to retry after {retry_after:g} s" if retry_after is not None else ""
        return SendDeferred(
            f"Graph did not take the reply now: {detail}{wait}", retry_after_seconds=retry_after, **context
        )
    if 400 <= status < 500 or status in REJECTED_5XX:
        return SendRejected(f"Graph refused the reply: {detail}", **context)
    if status >= 500:
        return SendUncertain(
            f"Graph failed while handling sendMail: {detail}; it may have sent the reply",
            recipients=unconfirmed(recipients),
            **context,
        )
    return SendDeferred(f"unexpected answer to sendMail: {detail}", **context)


class GraphSentFolder:
    """Graph files sent mail in Sent Items by itself: `append` does nothing, `contains` looks there."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.mailbox_id = mailbox.id
        self.api = graph_api(mailbox, tokens, policy=policy)
        assert mailbox.graph is not None  # graph_api refused a mailbox without one
        self.url = user_url(self.api, mailbox.graph.user_id) + "/mailFolders/sentitems/messages"

    def __repr__(self) -> str:
        return f"GraphSentFolder(mailbox={self.mailbox_id!r})"

    async def append(self, raw: bytes) -> str:
        return ""

    async def contains(self, message_id: str) -> bool:
        """True when Sent Items holds a message with this RFC 5322 Message-ID. Raises ProviderError."""
        wanted = message_id.strip()
        if not wanted:
            return False
        if not wanted.startswith("<"):
            wanted = f"<{wanted}>"
        value = wanted.replace("'", "''")  # OData string literal: a quote is doubled
        query = urlencode(
            {"$filter": f"internetMessageId eq '{value}'", "$select": "id,internetMessageId", "$top": "1"},
            quote_via=quote,
        )
        page = await self.api.json("GET", f"{self.url}?{query}", folder="sentitems", message_id=wanted)
        found = page.get("value")
        return isinstance(found, list) and any(
            isinstance(m, dict) and m.get("internetMessageId") == wanted for m in found
        )

    async def close(self) -> None:
        await self.api.aclose()


__all__ = ["GraphSender", "GraphSentFolder"]
