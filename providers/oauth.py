"""OAuth2 access tokens for XOAUTH2 (IMAP now, SMTP later) behind one tiny interface.

msal and google-auth are synchronous (requests underneath), so each request runs in a worker
thread. Both libraries cache: msal keeps the token until it expires, google-auth refreshes when
it is within a few minutes of expiry. `invalidate()` drops the cache after a server rejected a
token so the next `token()` asks the authority again. Errors never carry the secret or token.

HTTPS to the token endpoints always goes through our own requests.Session with `trust_env`
off: REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE and proxy variables would otherwise silently replace
the CA bundle we verify against. It verifies with `oauth.ca_file` when set, certifi otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import threading
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from connector.config import OAuthSettings
from connector.errors import AuthFailed, ConfigError, ProviderUnavailable

IMAP_SCOPE_MICROSOFT = "https://outlook.office365.com/.default"
IMAP_SCOPE_GOOGLE = "https://mail.google.com/"
DEFAULT_GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_TIMEOUT_SECONDS = 30.0
# Token-endpoint error codes that mean "try again later", not "a person must fix the credentials".
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "service_unavailable"})
_TLS_HINT = "set oauth.ca_file to the CA bundle that signed the token endpoint's certificate"


@runtime_checkable
class TokenProvider(Protocol):
    async def token(self) -> str:
        """A currently valid access token; raises AuthFailed or ProviderUnavailable."""
        ...

    def invalidate(self) -> None:
        """Forget any cached token (the server rejected it)."""
        ...


def https_session(ca_file: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """A requests.Session that verifies with `ca_file` (or certifi), ignores the environment,
    and gives every request a default timeout (requests has none, msal sets none on our session)."""
    import certifi
    import requests  # type: ignore[import-untyped]

    session = requests.Session()
    session.trust_env = False
    session.verify = ca_file or certifi.where()
    session.request = functools.partial(session.request, timeout=timeout_seconds)  # type: ignore[method-assign]
    return session


def tls_failure(exc: BaseException) -> str | None:
    """The certificate/handshake reason if `exc` (or anything it wraps) is a TLS failure."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return str(item.verify_message or item.reason or "certificate verify failed")
        if isinstance(item, ssl.SSLError):
            return str(item.reason or "TLS handshake failed")
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return None


class StaticTokenProvider:
    """A fixed token from configuration (tests, or tokens refreshed by something else)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenProvider(token=**********)"


class MicrosoftAppTokenProvider:
    """Client-credentials (app-only) tokens from Entra ID via msal.ConfidentialClientApplication.

    The application (and with it msal's token cache) lives as long as this provider, so a second
    `token()` within the token's lifetime makes no HTTP request. With an `authority` override
    (sovereign cloud, private authority, tests) instance discovery is off, because it would ask
    login.microsoftonline.com about a host it does not know; the public cloud keeps msal's defaults.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None,
        client_id: str,
        client_secret: str,
        scope: str = IMAP_SCOPE_MICROSOFT,
        authority: str | None = None,
        ca_file: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        http_client: Any = None,
    ) -> None:
        if not authority and not tenant_id:
            raise ValueError("tenant_id or authority is required")
        self._override = bool(authority)
        self._authority = authority or f"https://login.microsoftonline.com/{tenant_id}"
        self._tenant = tenant_id or urlsplit(self._authority).path.rstrip("/").rsplit("/", 1)[-1]
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._ca_file = ca_file
        self._timeout = timeout_seconds
        self._http_client = http_client
        self._app: Any = None
        self._stale = False  # set by invalidate() without taking the lock (it runs on the loop)
        self._guard = threading.Lock()

    def _application(self) -> Any:
        import msal

        if self._app is None:
            kwargs: dict[str, Any] = {
                "http_client": self._http_client or https_session(self._ca_file, self._timeout)
            }
            if self._override:
                kwargs["instance_discovery"] = False
            # Construction fetches the tenant's OpenID configuration (network): worker thread only.
            self._app = msal.ConfidentialClientApplication(
                self._client_id, client_credential=self._secret, authority=self._authority, **kwargs
            )
        return self._app

    def _acquire(self) -> dict[str, Any]:
        import msal

        with self._guard:  # one request at a time: concurrent callers then share the cached token
            app = self._application()
            if self._stale:
                self._stale = False
                cache = app.token_cache
                for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(item)
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[self._scope])
            return result

    def _context(self) -> dict[str, Any]:
        return {"tenant": self._tenant, "client_id": self._client_id, "authority": self._authority}

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "**********") if self._secret else text

    async def token(self) -> str:
        import msal

        try:
            result = await asyncio.to_thread(self._acquire)
        except Exception as exc:
            raise self._translate(exc, msal.exceptions.MsalServiceError) from None
        token = result.get("access_token")
        if token:
            return str(token)
        code = str(result.get("error", "unknown_error"))
        lines = str(result.get("error_description", "")).splitlines()
        detail = f" ({self._scrub(lines[0].strip())[:300]})" if lines else ""
        if code in _TRANSIENT_ERRORS:
            raise ProviderUnavailable(
                f"Microsoft token endpoint temporarily failing: {code}{detail}", **self._context()
            )
        raise AuthFailed(f"Microsoft token request rejected: {code}{detail}", **self._context())

    def _translate(self, exc: Exception, service_error: type[Exception]) -> Exception:
        reason = tls_failure(exc)
        if reason is not None:
            return ProviderUnavailable(
                f"TLS verification of the Microsoft token endpoint failed: {reason}; {_TLS_HINT}",
                **self._context(),
            )
        if isinstance(exc, service_error):  # non-JSON HTTP error, e.g. 503 from the token endpoint
            return ProviderUnavailable(
                f"Microsoft token endpoint failed: {self._scrub(str(exc))[:200]}", **self._context()
            )
        if isinstance(exc, ValueError) and not isinstance(exc, OSError):
            # msal: malformed authority, unknown tenant (4xx from discovery), non-https authority.
            text = self._scrub(str(exc)).splitlines()[0][:300] if str(exc) else type(exc).__name__
            return AuthFailed(f"Microsoft token request misconfigured: {text}", **self._context())
        # requests: connection refused, timeouts, 5xx on discovery (HTTPError), anything else.
        detail = self._scrub(str(exc)).splitlines()[0][:300] if str(exc) else ""
        return ProviderUnavailable(
            f"Microsoft token endpoint unreachable: {type(exc).__name__}" + (f": {detail}" if detail else ""),
            **self._context(),
        )

    def invalidate(self) -> None:
        self._stale = True

    def __repr__(self) -> str:
        return f"MicrosoftAppTokenProvider(authority={self._authority!r}, client_id={self._client_id!r})"


class GoogleTokenProvider:
    """A user refresh token, or a service account acting for `subject` (domain-wide delegation)."""

    def __init__(
        self,
        credentials: Any,
        *,
        describe: str,
        ca_file: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._credentials = credentials
        self._describe = describe
        self._ca_file = ca_file
        self._timeout = timeout_seconds
        self._session: Any = None
        self._stale = False
        self._guard = threading.Lock()

    @classmethod
    def from_refresh_token(
        cls,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        scope: str,
        token_uri: str | None = None,
        ca_file: str | None = None,
    ) -> GoogleTokenProvider:
        from google.oauth2.credentials import Credentials

        creds = Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            token_uri=token_uri or DEFAULT_GOOGLE_TOKEN_URI,
            scopes=[scope],
        )
        return cls(creds, describe=f"refresh token for client {client_id}", ca_file=ca_file)

    @classmethod
    def from_service_account(
        cls, *, file: str, subject: str | None, scope: str, ca_file: str | None = None
    ) -> GoogleTokenProvider:
        from google.oauth2 import service_account

        try:
            creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                file, scopes=[scope]
            )
        except (OSError, ValueError) as exc:
            raise AuthFailed(
                f"cannot read Google service account file: {type(exc).__name__}", file=file
            ) from None
        if subject:
            creds = creds.with_subject(subject)
        return cls(creds, describe=f"service account for {subject or 'itself'}", ca_file=ca_file)

    def _refresh(self) -> str:
        from google.auth.transport.requests import Request

        with self._guard:
            if self._session is None:
                self._session = https_session(self._ca_file, self._timeout)
            if self._stale:
                self._stale = False
                self._credentials.token = None  # `valid` is False → refresh below
            if not self._credentials.valid:
                self._credentials.refresh(Request(session=self._session))
            return str(self._credentials.token)

    async def token(self) -> str:
        from google.auth import exceptions as gexc

        try:
            return await asyncio.to_thread(self._refresh)
        except gexc.RefreshError as exc:
            reason = str(exc.args[0]) if exc.args else "refresh rejected"
            data = exc.args[1] if len(exc.args) > 1 else None
            code = data.get("error") if isinstance(data, dict) else None
            # retryable: 5xx/429 (JSON body) after google-auth's own retries, or an OAuth
            # "try later" code. google-auth marks a non-JSON 5xx body on the user-token path as
            # not retryable; that case stays AuthFailed (its text is kept in the message).
            if getattr(exc, "retryable", False) or code in _TRANSIENT_ERRORS:
                raise ProviderUnavailable(
                    f"Google token endpoint temporarily failing: {reason[:200]}", credentials=self._describe
                ) from None
            raise AuthFailed(
                f"Google token refresh rejected: {reason[:200]}", credentials=self._describe
            ) from None
        except gexc.TransportError as exc:
            tls = tls_failure(exc)
            if tls is not None:
                raise ProviderUnavailable(
                    f"TLS verification of the Google token endpoint failed: {tls}; {_TLS_HINT}",
                    credentials=self._describe,
                ) from None
            raise ProviderUnavailable(
                f"Google token endpoint unreachable: {type(exc).__name__}", credentials=self._describe
            ) from None

    def invalidate(self) -> None:
        self._stale = True

    def __repr__(self) -> str:
        return f"GoogleTokenProvider({self._describe})"


def _need(value: Any, name: str, kind: str) -> Any:
    if value is None:
        raise ConfigError([f"oauth.{name}: is required when kind is {kind}"])
    return value


def _ca_file(oauth: OAuthSettings) -> str | None:
    if oauth.ca_file is not None and not os.path.isfile(oauth.ca_file):
        raise ConfigError([f"oauth.ca_file: no such file: {oauth.ca_file}"])
    return oauth.ca_file


def build_token_provider(oauth: OAuthSettings, *, default_scope: str = IMAP_SCOPE_MICROSOFT) -> TokenProvider:
    """The provider for one `oauth:` block. When the block names no scope, Google kinds get the
    Google mail scope (a Microsoft scope would be refused by Google's token endpoint) and
    Microsoft gets `default_scope`."""
    google = oauth.kind in ("google_refresh", "google_service_account")
    scope = oauth.scope or (IMAP_SCOPE_GOOGLE if google else default_scope)
    if oauth.kind == "static":
        return StaticTokenProvider(_need(oauth.token, "token", "static").get_secret_value())
    if oauth.kind == "microsoft":
        if oauth.tenant_id is None and oauth.authority is None:
            raise ConfigError(["oauth.tenant_id: is required when kind is microsoft (or give authority)"])
        return MicrosoftAppTokenProvider(
            tenant_id=oauth.tenant_id,
            client_id=_need(oauth.client_id, "client_id", "microsoft"),
            client_secret=_need(oauth.client_secret, "client_secret", "microsoft").get_secret_value(),
            scope=scope,
            authority=oauth.authority,
            ca_file=_ca_file(oauth),
        )
    if oauth.kind == "google_refresh":
        return GoogleTokenProvider.from_refresh_token(
            client_id=_need(oauth.client_id, "client_id", "google_refresh"),
            client_secret=_need(oauth.client_secret, "client_secret", "google_refresh").get_secret_value(),
            refresh_token=_need(oauth.refresh_token, "refresh_token", "google_refresh").get_secret_value(),
            scope=scope,
            token_uri=oauth.token_uri,
            ca_file=_ca_file(oauth),
        )
    return GoogleTokenProvider.from_service_account(
        file=_need(oauth.service_account_file, "service_account_file", "google_service_account"),
        subject=oauth.subject,
        scope=scope,
        ca_file=_ca_file(oauth),
    )
