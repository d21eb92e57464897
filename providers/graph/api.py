"""HTTP to Microsoft Graph: one httpx client per mailbox, tokens, retries, and error translation.

Every request carries `Prefer: IdType="ImmutableId"` (ids survive moves) and a bearer token from
the TokenProvider; the token goes into that one header and nowhere else. At most four requests
run at once per mailbox (Outlook's concurrency limit). Decisions follow `error.code` (the codes of
`innerError` included), never the message text:

* 401: the token is invalidated and the request tried once more with a fresh one, then AuthFailed.
* 429, 503, 504: wait exactly `Retry-After` and try again (bounded), then Throttled.
* other 5xx and connection errors: exponential backoff (bounded), then ProviderUnavailable
  (`ServerFailed` when Graph answered with a 5xx other than 503: that may be about the one item).
* 403 access denied: AccessDenied (an AuthFailed) naming the Mail.ReadWrite application permission.
* 404 and lost sync state: GraphNotFound / SyncStateLost, for the caller to decide what they mean.
* an answer httpx cannot decode: ProviderError.

Links Graph returns (nextLink, deltaLink) are followed only when `owns()` them: same scheme, host
(any case), effective port and path prefix as the configured endpoint; the token goes nowhere else.

`once()` is for requests that must never be repeated once Graph may have acted on them (sendMail):
only a 401 is tried again, every answer goes back to the caller as it is, and a connection failure
says whether the whole request had been written (`RequestCutOff.body_sent`).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from connector.config import MailboxSettings
from connector.endpoints import checked_api_endpoint, is_cert_verify_failure
from connector.errors import (
    AuthFailed,
    CertificateRejected,
    ConfigError,
    ProviderError,
    ProviderUnavailable,
    Throttled,
)
from providers.oauth import TokenProvider, build_token_provider

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

T = TypeVar("T")
IMMUTABLE_IDS = 'IdType="ImmutableId"'
MAX_CONCURRENT_REQUESTS = 4  # Outlook allows 4 concurrent requests per app and mailbox
TIMEOUT_SECONDS = 30.0
MAX_ERROR_BODY_BYTES = 64 * 1024
SYNC_STATE_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
ACCESS_DENIED_CODES = frozenset({"erroraccessdenied", "accessdenied", "authorization_requestdenied"})
THROTTLE_STATUSES = frozenset({429, 503, 504})


class GraphNotFound(ProviderError):
    """404 from Graph; what is missing (message, folder, user) only the caller knows."""


class TokenRejected(AuthFailed):
    """401: the access token was refused (expired, revoked); a fresh one may work."""


class AccessDenied(AuthFailed):
    """403 access denied: for the mailbox an auth problem, for one item's download maybe not."""


class ServerFailed(ProviderUnavailable):
    """Graph answered with a 5xx other than 503: possibly about the one item asked for."""


class EndpointMismatch(ProviderError):
    """Graph's links point somewhere the configured api_endpoint does not cover."""

    code = "config_invalid"


class SyncStateLost(ProviderError):
    """The delta token is gone (410, syncStateNotFound, resyncRequired): restart the folder."""


class RequestCutOff(ProviderUnavailable):
    """The connection failed during a `once()` request. `body_sent` is True when the whole request
    had been written before: Graph may then have acted on it, and nobody knows whether it did."""

    def __init__(self, message: str, *, body_sent: bool, **context: Any) -> None:
        super().__init__(message, **context)
        self.body_sent = body_sent


@dataclass(frozen=True, slots=True)
class Answer:
    """Graph's answer to a `once()` request, whatever its status; `body` is bounded."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else {}
        except ValueError:
            return {}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one request is retried; tests shrink it."""

    attempts: int = 4
    backoff_seconds: float = 0.5  # 5xx/connection errors without Retry-After: 0.5, 1, 2 s
    max_retry_after_seconds: float = 30.0  # a longer Retry-After ends the cycle as Throttled


class _Transient(Exception):
    def __init__(self, error: ProviderError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def error_codes(body: Any) -> list[str]:
    """`error.code` and every nested `innerError.code`, outermost first."""
    codes: list[str] = []
    node = body.get("error") if isinstance(body, dict) else None
    while isinstance(node, dict):
        code = node.get("code")
        if isinstance(code, str) and code:
            codes.append(code)
        node = node.get("innerError") or node.get("innererror")
    return codes


def request_id(body: Any, headers: Mapping[str, str]) -> str | None:
    node = body.get("error") if isinstance(body, dict) else None
    while isinstance(node, dict):
        for key in ("request-id", "requestId"):
            if isinstance(node.get(key), str):
                return str(node[key])
        node = node.get("innerError") or node.get("innererror")
    return headers.get("request-id")


def parse_retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class GraphApi:
    """Requests against one Graph endpoint for one mailbox; `context` goes into every error."""

    def __init__(
        self,
        endpoint: str,
        tokens: TokenProvider,
        *,
        mailbox_id: str,
        policy: RetryPolicy | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout_seconds: float = TIMEOUT_SECONDS,
    ) -> None:
        self.base = checked_api_endpoint(endpoint, f"mailboxes[{mailbox_id}].graph.api_endpoint")
        self.mailbox_id = mailbox_id
        self._tokens = tokens
        self._policy = policy or RetryPolicy()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), verify=verify, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def owns(self, url: str) -> bool:
        """True for URLs under our endpoint: the token is never sent anywhere else. Spelling that
        names the same place (host case, an explicit default port) does not matter."""
        mine, theirs = _origin_and_path(self.base + "/"), _origin_and_path(url)
        if mine is None or theirs is None:
            return False
        return theirs[0] == mine[0] and theirs[1].startswith(mine[1])

    async def json(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        prefer: str | None = None,
        **context: Any,
    ) -> dict[str, Any]:
        async def read(response: httpx.Response) -> dict[str, Any]:
            try:
                data = json.loads(await response.aread() or b"{}")
            except ValueError:
                raise ProviderError(
                    f"Graph answered {method} with a body that is not JSON",
                    mailbox=self.mailbox_id,
                    **context,
                ) from None
            return data if isinstance(data, dict) else {}

        return await self.call(method, url, read, body=body, prefer=prefer, **context)

    async def call(
        self,
        method: str,
        url: str,
        consume: Callable[[httpx.Response], Awaitable[T]],
        *,
        body: Any = None,
        prefer: str | None = None,
        **context: Any,
    ) -> T:
        """One logical request: retried as the module docstring says; `consume` reads a 2xx answer."""
        if not self.owns(url):
            raise ProviderError(
                "Graph returned a link outside the configured api_endpoint; refusing to follow it",
                mailbox=self.mailbox_id,
                **context,
            )
        where = {"mailbox": self.mailbox_id, **context}
        refreshed = False

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, _Transient) and exc.retry_after is not None:
                return exc.retry_after
            return float(self._policy.backoff_seconds * 2 ** (state.attempt_number - 1))

        def give_up(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome is not None else None
            too_long = (
                isinstance(exc, _Transient) and (exc.retry_after or 0) > self._policy.max_retry_after_seconds
            )
            return too_long or stop_after_attempt(self._policy.attempts)(state)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient), wait=wait, stop=give_up, reraise=True
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await self._attempt(method, url, consume, body, prefer, where)
                    except TokenRejected:
                        if refreshed:
                            raise
                        refreshed = True  # one retry with a fresh token, outside the backoff budget
                        self._tokens.invalidate()
                        return await self._attempt(method, url, consume, body, prefer, where)
        except _Transient as exc:
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def once(
        self,
        method: str,
        url: str,
        *,
        content: bytes,
        content_type: str,
        before_send: Callable[[], Awaitable[None]] | None = None,
        **context: Any,
    ) -> Answer:
        """One request that is not repeated once Graph may have acted on it. `before_send` is
        awaited after the token is in hand, right before the request goes out. A 401 (refused
        before any processing) is tried once more with a fresh token; every other answer is
        returned. Raises RequestCutOff for connection failures, AuthFailed/ProviderUnavailable
        from the token source."""
        if not self.owns(url):
            raise ProviderError(
                "refusing a request outside the configured api_endpoint", mailbox=self.mailbox_id, **context
            )
        where = {"mailbox": self.mailbox_id, **context}
        token = await self._tokens.token()
        if before_send is not None:
            await before_send()
        answer = await self._send_once(method, url, content, content_type, token, where)
        if answer.status == 401:
            self._tokens.invalidate()
            fresh = await self._tokens.token()
            answer = await self._send_once(method, url, content, content_type, fresh, where)
        return answer

    async def _send_once(
        self, method: str, url: str, content: bytes, content_type: str, token: str, where: dict[str, Any]
    ) -> Answer:
        headers = {
            "Authorization": f"Bearer {token}",
            "Prefer": IMMUTABLE_IDS,
            "Accept": "application/json",
            "Content-Type": content_type,
        }
        what = f"{method} {urlsplit(url).path.removeprefix(urlsplit(self.base).path)}"
        body_sent = False
        answer: Answer | None = None

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            nonlocal body_sent
            if event.endswith("send_request_body.complete"):  # httpcore: every byte was written
                body_sent = True

        async with self._slots:
            try:
                async with self._http.stream(
                    method, url, headers=headers, content=content, extensions={"trace": trace}
                ) as response:
                    try:
                        raw = await _read_bounded(response)
                    except httpx.HTTPError:  # the status line arrived: it is the answer
                        raw = b""
                    answer = Answer(response.status_code, raw, response.headers)
                return answer
            except httpx.TransportError as exc:
                if answer is not None:  # failed while closing: the answer stands
                    return answer
                if is_cert_verify_failure(exc):
                    raise RequestCutOff(
                        f"TLS certificate verification failed for {self.base}: {exc}",
                        body_sent=False,
                        **where,
                    ) from None
                when = "after the whole request was sent" if body_sent else "before the request was sent"
                raise RequestCutOff(
                    f"connection to Graph failed {when}: {what}: {type(exc).__name__}: {exc}",
                    body_sent=body_sent,
                    **where,
                ) from None
            except httpx.HTTPError as exc:
                if answer is not None:
                    return answer
                raise RequestCutOff(
                    f"Graph's answer could not be read: {what}: {type(exc).__name__}: {exc}",
                    body_sent=body_sent,
                    **where,
                ) from None

    async def _attempt(
        self,
        method: str,
        url: str,
        consume: Callable[[httpx.Response], Awaitable[T]],
        body: Any,
        prefer: str | None,
        where: dict[str, Any],
    ) -> T:
        token = await self._tokens.token()
        headers = {
            "Authorization": f"Bearer {token}",
            "Prefer": IMMUTABLE_IDS + (f", {prefer}" if prefer else ""),
            "Accept": "application/json",
        }
        what = f"{method} {urlsplit(url).path.removeprefix(urlsplit(self.base).path)}"
        async with self._slots:
            try:
                async with self._http.stream(method, url, headers=headers, json=body) as response:
                    if 200 <= response.status_code < 300:
                        return await consume(response)
                    raw = await _read_bounded(response)
                    raise _translate(response.status_code, raw, response.headers, what, where)
            except httpx.TransportError as exc:
                if is_cert_verify_failure(exc):
                    raise CertificateRejected(
                        f"TLS certificate verification failed for {self.base}: {exc}", **where
                    ) from None
                raise _Transient(
                    ProviderUnavailable(f"cannot reach Graph: {what}: {type(exc).__name__}: {exc}", **where)
                ) from None
            except httpx.HTTPError as exc:  # DecodingError and the like: the answer is unusable
                raise ProviderError(
                    f"Graph's answer could not be read: {what}: {type(exc).__name__}: {exc}", **where
                ) from None


DEFAULT_PORTS = {"https": 443, "http": 80}


def _origin_and_path(url: str) -> tuple[tuple[str, str, int], str] | None:
    """((scheme, lower-cased host, effective port), path) or None for what is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return (scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]), parts.path or "/"


def origin(url: str) -> str:
    """scheme://host[:port]/path of `url`, without query: what an error may show of a link."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def _read_bounded(response: httpx.Response) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= MAX_ERROR_BODY_BYTES:
            break
    return bytes(data[:MAX_ERROR_BODY_BYTES])


def _translate(
    status: int, raw: bytes, headers: Mapping[str, str], what: str, where: dict[str, Any]
) -> Exception:
    """The exception for one non-2xx answer; `_Transient` when another try may succeed."""
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    codes = error_codes(body)
    lowered = {c.lower() for c in codes}
    context = {**where, "status": status, "graph_code": codes[-1] if codes else None}
    context["request_id"] = request_id(body, headers)
    detail = f"{what} answered {status}" + (f" {codes[-1]}" if codes else "")
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 401:
        return TokenRejected(f"Graph rejected the access token: {detail}", **context)
    if status == 410 or lowered & SYNC_STATE_CODES:
        return SyncStateLost(f"delta sync state is gone: {detail}", **context)
    if status == 403 and lowered & ACCESS_DENIED_CODES:
        return AccessDenied(
            f"Graph denied access to the mailbox: {detail}; the app registration needs the "
            "Mail.ReadWrite application permission with admin consent (and an application access "
            "policy that includes this mailbox, if one is used)",
            **context,
        )
    if status == 404:
        return GraphNotFound(f"not found: {detail}", **context)
    if status in THROTTLE_STATUSES:
        final: ProviderError
        if status == 429 or retry_after is not None:
            final = Throttled(f"Graph is throttling: {detail}", retry_after_seconds=retry_after, **context)
        elif status == 503:
            final = ProviderUnavailable(f"Graph unavailable: {detail}", **context)
        else:
            final = ServerFailed(f"Graph failed: {detail}", **context)
        return _Transient(final, retry_after)
    if status >= 500:
        return _Transient(ServerFailed(f"Graph failed: {detail}", **context), retry_after)
    return ProviderError(f"Graph refused the request: {detail}", **context)


def graph_api(mailbox: MailboxSettings, tokens: TokenProvider | None, **options: Any) -> GraphApi:
    """The mailbox's API client for the reader, the sender and the Sent lookup (each its own)."""
    if mailbox.graph is None:
        raise ConfigError([f"mailboxes[{mailbox.id}]: a Graph mailbox needs a 'graph:' block"])
    tokens = tokens or build_token_provider(mailbox.graph.oauth, default_scope=GRAPH_SCOPE)
    return GraphApi(mailbox.graph.api_endpoint, tokens, mailbox_id=mailbox.id, **options)


def user_url(api: GraphApi, user_id: str) -> str:
    """`{endpoint}/users/{user}`: the root of every mailbox request."""
    return f"{api.base}/users/{quote(user_id, safe='')}"
