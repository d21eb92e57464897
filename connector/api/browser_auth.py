"""Lets a browser use the bearer token: `/admin?token=…` once sets an HttpOnly SameSite=Strict cookie.

It runs outside the token gate and turns a valid cookie into the `Authorization: Bearer` header the
gate checks, so the gate stays the only place that decides. `?token=` is accepted only on GET of the
admin page and answered with a redirect that drops it from the address bar (and from history).
The cookie counts only for GET/HEAD and for requests that carry the `X-Connector-Action` header: a
cross-site form cannot send it, and a cross-site fetch with it needs a CORS preflight we never grant.
So a POST another site makes the browser send (e.g. to the replies API) gets 401, cookie or not.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie

from starlette.datastructures import URL, MutableHeaders, QueryParams
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "iwd_email_connector_token"
ADMIN_PATHS = frozenset({"/", "/admin"})
ACTION_HEADER = "x-connector-action"  # the same header connector.api.admin demands on actions
SAFE_METHODS = frozenset({"GET", "HEAD"})


def same_secret(offered: str, expected: str) -> bool:
    """Constant-time comparison of UTF-8 bytes (str needs ASCII: `é` would raise, i.e. a 500)."""
    return hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))


class BrowserTokenMiddleware:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        url = URL(scope=scope)
        offered = QueryParams(scope.get("query_string", b"")).get("token")
        if offered is not None and scope["method"] == "GET" and scope["path"] in ADMIN_PATHS:
            response: Response
            if same_secret(offered, self.token):
                response = RedirectResponse(str(url.remove_query_params("token").path), status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            else:
                response = Response("wrong token", status_code=401, media_type="text/plain")
            await response(scope, receive, send)
            return
        headers = MutableHeaders(scope=scope)
        cookie_allowed = scope["method"] in SAFE_METHODS or ACTION_HEADER in headers
        if cookie_allowed and "authorization" not in headers:
            cookie = SimpleCookie()
            cookie.load(headers.get("cookie", ""))
            morsel = cookie.get(COOKIE)
            if morsel is not None and same_secret(morsel.value, self.token):
                headers["authorization"] = f"Bearer {self.token}"
        await self.app(scope, receive, send)
