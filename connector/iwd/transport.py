"""HTTP to IWD: one httpx client, retries with tenacity inside each call's budget, errors translated.

Transient failures (408, 409, 429, 5xx, connection errors, timeouts) are retried; anything else
permanent raises IWDRejected at once. The API key goes into one request header and nowhere else:
not into messages, exceptions or logs.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from connector import __version__
from connector.config import IWDSettings
from connector.endpoints import is_cert_verify_failure
from connector.errors import ConfigError, IWDRejected, IWDUnavailable
from connector.iwd import profile as p
from connector.iwd.retry import (
    RetryClock,
    RetryPolicy,
    TransientFailure,
    is_transient_status,
    parse_retry_after,
)

log = logging.getLogger("connector.iwd.client")

MAX_MESSAGE_CHARS = 500
PAYLOAD_FAULT_STATUSES = frozenset({400, 413, 415, 422})

# (method, path, HTTP status or None, seconds, error kind or None), once per HTTP attempt
RequestObserver = Callable[[str, str, int | None, float, str | None], None]


def is_payload_fault(error: IWDRejected) -> bool:
    """True when IWD refused *this payload* (quarantine it); False for auth/URL problems (401,
    403, 404, 405...), which would refuse every payload and need a person instead."""
    return error.status in PAYLOAD_FAULT_STATUSES


def _tls_context(settings: IWDSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        log.warning("TLS verification to IWD is OFF (iwd.verify_tls: false)")
        return False
    if settings.ca_file:
        try:
            return ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"iwd.ca_file: cannot load CA file {settings.ca_file}: {exc}"]) from None
    return True


class IWDTransport:
    """The plumbing every IWD call goes through; the calls themselves live in subclasses."""

    def __init__(
        self,
        settings: IWDSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_policy: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self._settings = settings
        self.observer = observer  # metrics hook: (method, path, status, seconds, error kind) per attempt
        self._secret = settings.api_key.get_secret_value()
        self._policy = retry_policy or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=settings.url,
            headers={
                p.API_KEY_HEADER: self._secret,
                p.CCID_HEADER: settings.ccid,
                "accept": "application/json",
                "user-agent": f"iwd-email-connector/{__version__}",
            },
            timeout=httpx.Timeout(settings.timeout_seconds),
            verify=_tls_context(settings) if transport is None else True,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._settings.url!r}, ccid={self._settings.ccid!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: Callable[[], AsyncIterator[bytes]] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        clock = RetryClock(self._policy, self._settings.max_retry_seconds if retry else 0.0)
        attempts = 0

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "IWD %s %s failed (attempt %d: %s); retrying in %.2f s",
                method,
                path,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientFailure),
            wait=clock.wait,
            stop=clock.stop,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await self._attempt(method, path, json, params, headers, content)
        except TransientFailure as exc:
            elapsed = time.monotonic() - clock.started
            raise IWDUnavailable(
                self._redact(
                    f"IWD unavailable: {method} {path} failed {attempts} time(s) "
                    f"in {elapsed:.1f} s: {exc.message}"
                ),
                status=exc.status,
                iwd_code=exc.iwd_code,
                request_id=exc.request_id,
                retry_after_seconds=exc.retry_after,
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _attempt(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        content: Callable[[], AsyncIterator[bytes]] | None,
    ) -> httpx.Response:
        started = time.monotonic()
        try:
            response = await self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers=headers,
                content=content() if content is not None else None,
            )
        except httpx.TimeoutException as exc:
            self._observe(method, path, None, started, "timeout")
            raise TransientFailure(
                f"no answer within {self._settings.timeout_seconds:g} s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            self._observe(method, path, None, started, "connect")
            if is_cert_verify_failure(exc):
                raise TransientFailure(
                    self._redact(
                        f"TLS certificate verification failed for {self._settings.url}: {exc} "
                        "(set iwd.ca_file to the CA that signed IWD's certificate)"
                    ),
                    retryable=False,
                ) from None
            raise TransientFailure(self._redact(f"cannot reach IWD ({type(exc).__name__}: {exc})")) from None
        status = response.status_code
        self._observe(method, path, status, started, None)
        if 200 <= status < 300:
            return response
        code, message, request_id = self._error_fields(response)
        if is_transient_status(status):
            raise TransientFailure(
                f"HTTP {status} {code}: {message}",
                status=status,
                iwd_code=code,
                request_id=request_id,
                retry_after=parse_retry_after(response.headers.get(p.RETRY_AFTER_HEADER)),
            )
        raise IWDRejected(
            f"IWD rejected {method} {path} with HTTP {status}: {message}",
            status=status,
            iwd_code=code,
            request_id=request_id,
        )

    def _error_fields(self, response: httpx.Response) -> tuple[str | None, str, str | None]:
        request_id = request_id_of(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body.get(p.F_CODE)
            message = str(body.get(p.F_MESSAGE) or response.reason_phrase)
            request_id = body.get(p.F_REQUEST_ID) or request_id
            return (str(code) if code else None), self._redact(message[:MAX_MESSAGE_CHARS]), request_id
        return None, self._redact(response.text[:200] or response.reason_phrase), request_id

    def _json(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise IWDUnavailable(
                f"IWD answered {method} {path} with HTTP {response.status_code} but no JSON object "
                "(is iwd.url the IWD API base, ending in /iwd/v3?)",
                status=response.status_code,
                request_id=request_id_of(response),
            )
        return body

    def _observe(self, method: str, path: str, status: int | None, started: float, error: str | None) -> None:
        if self.observer is None:
            return
        try:
            self.observer(method, path, status, time.monotonic() - started, error)
        except Exception:  # a metrics bug must never fail an IWD call
            log.exception("IWD request observer failed")

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text


def request_id_of(response: httpx.Response) -> str | None:
    value = response.headers.get(p.REQUEST_ID_HEADER)
    return str(value) if value is not None else None
