"""`create_app()`: the sandbox IWD as a Starlette app, plus its admin endpoints and page.

Profile routes live under /iwd/v3 and need the API key; `/`, `/items/...`, `/sandbox/...` are for people and
tests only (no key): `POST /sandbox/faults`, `GET /sandbox/requests`, `POST /sandbox/reset`.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connector.sandbox.api import ApiError, profile_routes
from connector.sandbox.control import SandboxControl, control_for
from connector.sandbox.faults import Faults
from connector.sandbox.gate import ProfileGate, error_response
from connector.sandbox.item_page import item_page, reply
from connector.sandbox.page import render_page
from connector.sandbox.storage import SandboxStore

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_CCID = "sandbox"
log = logging.getLogger(__name__)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, _request_id(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return error_response(
        exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}", _request_id(request)
    )


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("sandbox handler failed")
    return error_response(500, "internal", f"sandbox error: {type(exc).__name__}", _request_id(request))


# ---------------------------------------------------------------- admin (no key; sandbox only)


async def page(request: Request) -> Response:
    store = control_for(request).store
    items = await run_in_threadpool(store.recent_items, 100)
    boxes = await run_in_threadpool(store.list_mailboxes)
    total = await run_in_threadpool(store.count_items)
    sink = control_for(request).sink
    return HTMLResponse(render_page(items, boxes, total, sink() if sink is not None else None))


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def faults(request: Request) -> Response:
    ctl = control_for(request)
    if request.method == "DELETE":
        ctl.faults.reset()
    elif request.method == "POST":
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("(body): must be a JSON object")
            ctl.faults.set_from_json(body)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, "invalid_field", str(exc)) from None
    return JSONResponse(ctl.faults.snapshot())


async def requests_seen(request: Request) -> Response:
    ctl = control_for(request)
    if request.method == "DELETE":
        ctl.requests.reset()
    return JSONResponse(ctl.requests.snapshot())


async def reset(request: Request) -> Response:
    await run_in_threadpool(control_for(request).reset)
    return JSONResponse({"ok": True})


def create_app(
    db_path: str,
    *,
    api_key: str = DEFAULT_API_KEY,
    ccid: str = DEFAULT_CCID,
    seed: int = 0,
    batch: bool = True,
) -> Starlette:
    """A sandbox IWD over the SQLite file `db_path` (":memory:" for a throwaway one).

    `batch=False` makes it a v1-only IWD: POST /emails/batch answers 404 like an unknown route.

    `control_of(app)` gives tests the store, the fault plan and the request tally.
    """
    control = SandboxControl(
        store=SandboxStore(db_path), api_key=api_key, ccid=ccid, faults=Faults(seed), batch=batch
    )
    routes = [
        *profile_routes(),
        Route("/", page, methods=["GET"]),
        Route("/items/{item_id}", item_page, methods=["GET"]),
        Route("/items/{item_id}/reply", reply, methods=["POST"]),
        Route("/sandbox/health", health, methods=["GET"]),
        Route("/sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/sandbox/requests", requests_seen, methods=["GET", "DELETE"]),
        Route("/sandbox/reset", reset, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
    )
    app.state.sandbox = control
    app.add_middleware(ProfileGate, control=control)
    return app
