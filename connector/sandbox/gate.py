"""The door every sandbox request passes: request id, tally, injected faults, then credentials.

Pure ASGI middleware so that the `x-request-id` header lands on every response, including the
injected failures and the auth refusals that never reach a route. An injected delay comes after
the request has been read in full, so a request the client abandoned is still handled.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.iwd import profile as p
from connector.sandbox.control import SandboxControl
from connector.sandbox.faults import FaultDecision

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def error_response(status: int, code: str, message: str, request_id: str, **headers: str) -> JSONResponse:
    body = {p.F_CODE: code, p.F_MESSAGE: message, p.F_REQUEST_ID: request_id}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope["headers"]:
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None


class ProfileGate:
    """Wraps the whole app; only paths under the profile base get faults and auth checks."""

    def __init__(self, app: ASGIApp, control: SandboxControl) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, p.REQUEST_ID_HEADER)
        request_id = offered if offered and _REQUEST_ID.match(offered) else "req_" + uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        self.control.requests.record(scope["method"], path)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((p.REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if path.startswith(p.BASE_PATH + "/"):
                decision = self.control.faults.decide()
                if decision.delay_seconds:
                    receive = await _slow(receive, decision.delay_seconds)
                refusal = self._check(scope, request_id, decision)
                if refusal is not None:
                    await refusal(scope, receive, send_with_id)
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            self.control.requests.finished()

    def _check(self, scope: Scope, request_id: str, decision: FaultDecision) -> JSONResponse | None:
        if decision.fail_status is not None:
            extra = {p.RETRY_AFTER_HEADER: decision.retry_after} if decision.retry_after else {}
            return error_response(
                decision.fail_status,
                "unavailable" if decision.fail_status >= 500 else "throttled",
                decision.reason,
                request_id,
                **extra,
            )
        key = _header(scope, p.API_KEY_HEADER)
        if key is None or not hmac.compare_digest(key.encode(), self.control.api_key.encode()):
            what = "missing" if key is None else "not valid"
            return error_response(401, "unauthorized", f"{p.API_KEY_HEADER}: {what}", request_id)
        ccid = _header(scope, p.CCID_HEADER)
        if not ccid:
            return error_response(400, "invalid_field", f"{p.CCID_HEADER}: required", request_id)
        if ccid != self.control.ccid:
            return error_response(403, "forbidden", f"{p.CCID_HEADER}: unknown contact center", request_id)
        return None


async def _slow(receive: Receive, delay_seconds: float) -> Receive:
    """Reads the whole request, then waits: a slow IWD that has the request and handles it even
    after the client gave up (the case idempotency keys exist for). A server that waited first
    would lose the body of an abandoned request, so whether it ran would depend on timing."""
    body: list[Message] = []
    while True:
        message = await receive()
        body.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    await asyncio.sleep(delay_seconds)
    pending = iter(body)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return replay
