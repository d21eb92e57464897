"""Gmail API calls through google-api-python-client, with our tokens, retries and error mapping.

Why it is built this way:
- googleapiclient is synchronous, so every `execute` runs in `asyncio.to_thread`; httplib2 is not
  thread-safe, so each worker thread gets its own `httplib2.Http` (kept in a threading.local of
  this object, so keep-alive still works).
- The service is built once from the packaged discovery document (no network) with an
  unauthenticated Http; each request carries `Authorization: Bearer <token>` from our
  TokenProvider. google-auth's own refresh-on-401 is thereby not in play: on a 401 we
  `invalidate()` the token, fetch a new one and retry once; a second 401 is AuthFailed.
- HTTP batch (`/batch/gmail/v1`) is not used: googleapiclient would send it to the discovery
  rootUrl and ignore `api_endpoint`. batchModify covers the bulk post-actions.
- 429, 5xx, 403 rateLimitExceeded/userRateLimitExceeded and connection errors are retried with
  exponential backoff and jitter (tenacity), never sooner than Retry-After; once the budget is
  spent they become Throttled (carrying Retry-After) or ProviderUnavailable. A Retry-After longer
  than `max_wait_seconds` is not slept through: Throttled at once, the next cycle tries again.
- A 404 is `NotFound` (a ProviderError naming the call and where): callers that expect one (a
  message gone, history expired) catch it; anywhere else it reaches the operator as it is, with a
  hint at `gmail.user_id` for the calls that only name the account. 403 dailyLimitExceeded or
  quotaExceeded is Throttled at once (no use retrying within the cycle); 403
  insufficientPermissions/forbidden is `ScopeMissing` (AuthFailed) naming the scope reads need.
- A connection that fails is dropped: its Http is closed and forgotten, the retry opens another.
- `exchange()` is the one path without retries, refresh or mapping: messages.send must never be
  repeated blindly, so providers.gmail.send drives and classifies that single exchange itself.
Messages never contain the token: only the call name, status, Google's reason and message.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httplib2
import tenacity
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from connector.config import MailboxSettings
from connector.endpoints import checked_api_endpoint
from connector.errors import AuthFailed, ConfigError, ProviderError, ProviderUnavailable, Throttled
from providers.oauth import IMAP_SCOPE_GOOGLE, TokenProvider, build_token_provider

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
QUOTA_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded"})
SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "forbidden"})
READ_SCOPE = "https://www.googleapis.com/auth/gmail.modify (or https://mail.google.com/)"
ACCOUNT_CALLS = frozenset({"users.getProfile", "labels.list", "messages.list", "history.list"})
TIMEOUT_SECONDS = 60.0
Request = Callable[[Any], Any]  # users() resource -> googleapiclient HttpRequest
T = TypeVar("T")


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the rest and is raised as itself
    (no calls left running against the API after the fetch has already failed)."""

    async def run(item: Awaitable[T]) -> T:
        return await item

    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(a)) for a in awaitables]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    initial_seconds: float = 1.0
    max_wait_seconds: float = 32.0


class NotFound(ProviderError):
    """A 404: a message gone, a label unknown, a history id too old. Callers decide what it means."""

    def __init__(self, message: str, *, call: str, reason: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.call = call
        self.reason = reason


class Unreachable(ProviderUnavailable):
    """The API could not be reached at all (refused, reset, timeout, DNS): about the account,
    never about one message."""


class ScopeMissing(AuthFailed):
    """403 insufficientPermissions/forbidden: the token lacks a scope the call needs."""


class _Unauthorized(Exception):
    pass


class _NotFound(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class _Transient(Exception):
    def __init__(self, status: int | None, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


def _reason_of(exc: HttpError) -> tuple[str, str]:
    """(first errors[].reason, error.message) from Google's JSON error body."""
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        message = str(error.get("message", ""))[:200]
        errors = error.get("errors") or [{}]
        return str(errors[0].get("reason", "")), message
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return "", str(getattr(exc.resp, "reason", ""))[:200]


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after") if hasattr(exc.resp, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


# Public names for callers that classify HttpError themselves (providers.gmail.send).
reason_of = _reason_of
retry_after_of = _retry_after


class GmailApi:
    """One mailbox's Gmail API client. `context` (mailbox=...) goes into every error."""

    def __init__(
        self,
        tokens: TokenProvider,
        *,
        user_id: str = "me",
        api_endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.tokens = tokens
        self.user_id = user_id
        self.retry = retry or RetryPolicy()
        self.context = context or {}
        self.limit = asyncio.Semaphore(concurrency)
        self._local = threading.local()
        self._opened: list[httplib2.Http] = []  # every thread's Http, closed by close()
        self._opened_lock = threading.Lock()
        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        service = build(
            "gmail",
            "v1",
            http=httplib2.Http(timeout=TIMEOUT_SECONDS),
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
        self._users = service.users()

    # ------------------------------------------------------------------ one call

    async def call(self, name: str, request: Request, **context: Any) -> Any:
        """Runs `request(users)` with a token; raises connector errors (NotFound for a 404)."""
        where = {**self.context, **context}
        async with self.limit:
            for attempt in (1, 2):
                token = await self.tokens.token()
                try:
                    return await self._with_retries(name, request, token, where)
                except _Unauthorized:
                    if attempt == 2:
                        raise AuthFailed(
                            f"Gmail {name}: 401 Invalid Credentials after a token refresh", **where
                        ) from None
                    if await self.tokens.token() == token:  # not already replaced by a parallel call
                        self.tokens.invalidate()
        raise AssertionError("unreachable")

    async def _with_retries(self, name: str, request: Request, token: str, where: dict[str, Any]) -> Any:
        policy = self.retry
        backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.initial_seconds, max=policy.max_wait_seconds, jitter=policy.initial_seconds
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = exc.retry_after if isinstance(exc, _Transient) and exc.retry_after is not None else 0.0
            return max(after, float(backoff(state)))

        def worth_retrying(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if not isinstance(exc, _Transient):
                return False
            return exc.retry_after is None or exc.retry_after <= policy.max_wait_seconds

        try:
            async for attempt in tenacity.AsyncRetrying(
                retry=worth_retrying,
                stop=tenacity.stop_after_attempt(policy.attempts),
                wait=wait,
                reraise=True,
            ):
                with attempt:
                    return await asyncio.to_thread(self._execute, request, token)
        except _Transient as exc:
            raise self._exhausted(name, exc, where) from None
        except _NotFound as exc:
            raise self._not_found(name, exc, where) from None
        except HttpError as exc:
            raise self._permanent(name, exc, where) from None
        raise AssertionError("unreachable")

    def _execute(self, request: Request, token: str) -> Any:
        """Worker thread: one HTTP exchange on this thread's own Http."""
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = httplib2.Http(timeout=TIMEOUT_SECONDS)
            with self._opened_lock:
                self._opened.append(http)
        req = request(self._users)
        req.headers["authorization"] = f"Bearer {token}"
        try:
            return req.execute(http=http)
        except HttpError as exc:
            status = int(exc.resp.status)
            reason, message = _reason_of(exc)
            if status == 401:
                raise _Unauthorized() from None
            if status == 404:
                raise _NotFound(reason or "notFound", message) from None
            if status == 429 or status >= 500 or (status == 403 and reason in RATE_REASONS):
                raise _Transient(status, f"{status} {reason} {message}".strip(), _retry_after(exc)) from None
            raise
        except (OSError, httplib2.HttpLib2Error) as exc:  # refused, reset, timeout, DNS
            self._drop(http)  # a broken keep-alive connection must not be reused
            raise _Transient(None, f"connection failed: {type(exc).__name__}", None) from None

    async def exchange(self, request: Request, token: str, http: httplib2.Http) -> Any:
        """One HTTP exchange on the caller's `http`: no retry, no token refresh, no error mapping.
        For calls that must never be repeated blindly (messages.send): the caller owns `http`
        (so it knows whether the request went out) and classifies what is raised."""

        def run() -> Any:
            req = request(self._users)
            req.headers["authorization"] = f"Bearer {token}"
            return req.execute(http=http)

        async with self.limit:
            return await asyncio.to_thread(run)

    def _drop(self, http: httplib2.Http) -> None:
        self._local.http = None
        with self._opened_lock:
            if http in self._opened:
                self._opened.remove(http)
        http.close()

    def close(self) -> None:
        """Drops the pooled connections of every worker thread's Http."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for http in opened:
            http.close()

    def _exhausted(self, name: str, exc: _Transient, where: dict[str, Any]) -> ProviderError:
        if exc.status == 429 or exc.status == 403:
            return Throttled(
                f"Gmail {name}: throttled ({exc.reason})", retry_after_seconds=exc.retry_after, **where
            )
        if exc.status is None:
            return Unreachable(f"Gmail {name}: {exc.reason}", **where)
        return ProviderUnavailable(f"Gmail {name}: {exc.reason}", **where)

    def _not_found(self, name: str, exc: _NotFound, where: dict[str, Any]) -> NotFound:
        text = f"Gmail {name}: 404 {exc.reason}: {exc.message}".rstrip(": ")
        if name in ACCOUNT_CALLS:
            text += f" (is gmail.user_id {self.user_id!r} a mailbox this token may read?)"
        return NotFound(text, call=name, reason=exc.reason, **where)

    def _permanent(self, name: str, exc: HttpError, where: dict[str, Any]) -> ProviderError:
        reason, message = _reason_of(exc)
        status = int(exc.resp.status)
        if status == 403 and reason in QUOTA_REASONS:
            return Throttled(
                f"Gmail {name}: 403 {reason}: {message}", retry_after_seconds=_retry_after(exc), **where
            )
        if status == 403 and reason in SCOPE_REASONS:
            return ScopeMissing(
                f"Gmail {name}: 403 {reason}: {message}; the token needs the scope {READ_SCOPE}", **where
            )
        return ProviderError(f"Gmail {name}: {status} {reason}: {message}".strip(), **where)


def gmail_api(mailbox: MailboxSettings, tokens: TokenProvider | None, retry: RetryPolicy | None) -> GmailApi:
    """The mailbox's API client for the reader and the sender: endpoint checked, token source built."""
    settings = mailbox.gmail
    if settings is None:
        raise ConfigError([f"mailboxes[{mailbox.id}]: a Gmail mailbox needs a 'gmail:' block"])
    if settings.api_endpoint is not None:  # the bearer token never crosses a network in clear
        checked_api_endpoint(settings.api_endpoint, f"mailboxes[{mailbox.id}].gmail.api_endpoint")
    if tokens is None:
        tokens = build_token_provider(settings.oauth, default_scope=IMAP_SCOPE_GOOGLE)
    return GmailApi(
        tokens,
        user_id=settings.user_id,
        api_endpoint=settings.api_endpoint,
        retry=retry,
        context={"mailbox": mailbox.id},
    )
