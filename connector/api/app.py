"""Builds the local HTTP app from route groups; each group lives in its own module.

Bound to 127.0.0.1 by default. Anywhere else the configuration requires a bearer token, and
then every route but the probes (/healthz, /readyz) demands it. The Host header must name loopback
or the configured http.host, so a page whose DNS name is rebound to 127.0.0.1 cannot read the API;
bound to every interface (0.0.0.0, ::) any Host is accepted, since the token is then mandatory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connector.api.browser_auth import BrowserTokenMiddleware, same_secret
from connector.config import ConnectorSettings
from connector.errors import ConnectorError
from connector.iwd.client import IWDClient
from connector.status import StatusBoard
from connector.store.types import Store

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# testserver: the Host of Starlette's TestClient
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]", "testserver")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def allowed_hosts(bind_host: str) -> list[str]:
    """Host header values the API answers: loopback names and the configured host (any if wildcard)."""
    if bind_host in WILDCARD_BINDS:
        return ["*"]
    hosts = [*LOOPBACK_HOSTS, bind_host.lower()]
    if ":" in bind_host and not bind_host.startswith("["):
        hosts.append(f"[{bind_host.lower()}]")  # the Host header brackets IPv6 literals
    return hosts


@dataclass
class ApiContext:
    """What request handlers may read; they never reach into the daemon's internals otherwise."""

    settings: ConnectorSettings
    store: Store
    iwd: IWDClient
    board: StatusBoard
    daemon: Any = None  # connector.runtime.daemon.Daemon when running (poll now, pause, resume)
    extras: dict[str, Any] = field(default_factory=dict)  # services register themselves here

    @property
    def token(self) -> str | None:
        secret = self.settings.http.token
        return secret.get_secret_value() if secret is not None else None


RouteGroup = Callable[[ApiContext], Sequence[BaseRoute]]


def bearer_ok(request: Request, token: str | None) -> bool:
    if token is None:
        return False
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and same_secret(value.strip(), token)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


class _TokenGate(BaseHTTPMiddleware):
    def __init__(self, app: Any, ctx: ApiContext) -> None:
        super().__init__(app)
        self.ctx = ctx

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if (
            self.ctx.token is not None
            and request.url.path not in OPEN_PATHS
            and not bearer_ok(request, self.ctx.token)
        ):
            return error(401, "unauthorized", "a bearer token is required (http.token)")
        return await call_next(request)


def health_routes(ctx: ApiContext) -> list[BaseRoute]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        checks: dict[str, str] = {}
        ok = True
        for name, probe in (("store", ctx.store.ping), ("iwd", ctx.iwd.ping)):
            try:
                await probe()
                checks[name] = "ok"
            except ConnectorError as exc:
                ok = False
                checks[name] = f"{exc.code}: {exc}"
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503
        )

    return [Route("/healthz", healthz), Route("/readyz", readyz)]


def create_api_app(ctx: ApiContext, groups: Sequence[RouteGroup] = ()) -> Starlette:
    routes: list[BaseRoute] = list(health_routes(ctx))
    for group in groups:
        routes.extend(group(ctx))
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(ctx.settings.http.host)),
            Middleware(BrowserTokenMiddleware, token=ctx.token),  # cookie → bearer, after the Host check
            Middleware(_TokenGate, ctx=ctx),
        ],
    )
