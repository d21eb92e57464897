"""Admin route group: status JSON, the admin page, /metrics, and the mailbox actions.

Readers only read the StatusBoard (and the metrics registry); actions go to the daemon, which does
them under the mailbox's lock. Every POST needs the header `X-Connector-Action: 1`: a cross-site
form cannot set it, so a browser carrying the token cookie cannot be made to act by another site.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from connector import __version__
from connector.api.admin_page import render_admin_page
from connector.api.app import ApiContext, error
from connector.api.browser_auth import ACTION_HEADER as ACTION_HEADER
from connector.errors import ConnectorError
from connector.metrics import CONTENT_TYPE, ConnectorMetrics
from connector.status import MailboxStatus

STATUS_PATH = "/api/v1/status"


def status_document(ctx: ApiContext) -> dict[str, Any]:
    """What `/api/v1/status` answers, and what `email-connector status` prints."""
    return dict(json.loads(_RowCache().document(ctx)))


class _RowCache:
    """Each mailbox's row as JSON text, rebuilt only when one of its fields changed.

    The console re-reads /api/v1/status every second; with hundreds of mailboxes, building every
    row's dict and dumping it again each time was most of the cost (bench/console_bench.py). A row's
    key is a shallow snapshot of its fields (values the writers replace, never mutate in place;
    `peers_down` is not part of the row), so a field added to MailboxStatus later is covered too."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[tuple[Any, ...], str]] = {}

    @staticmethod
    def _key(status: MailboxStatus, running: bool) -> tuple[Any, ...]:
        inbound = tuple(v for k, v in vars(status.inbound).items() if k != "peers_down")
        outbound = tuple(v for k, v in vars(status.outbound).items() if k != "peers_down")
        rest = tuple(v for k, v in vars(status).items() if k not in ("inbound", "outbound"))
        return (inbound, outbound, rest, running)

    def row(self, status: MailboxStatus, running: bool) -> str:
        key = self._key(status, running)
        cached = self.rows.get(status.mailbox_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = json.dumps(status.to_admin_json() | {"running": running}, separators=(",", ":"))
        self.rows[status.mailbox_id] = (key, text)
        return text

    def document(self, ctx: ApiContext) -> str:
        daemon = ctx.daemon
        configured = {b.id for b in (daemon.settings if daemon is not None else ctx.settings).mailboxes}
        runners = daemon.runners if daemon is not None else {}
        rows = [self.row(s, s.mailbox_id in runners) for s in ctx.board.all() if s.mailbox_id in configured]
        for gone in self.rows.keys() - configured:
            del self.rows[gone]
        head = json.dumps({"version": __version__, "running": daemon is not None})[:-1]
        return f'{head},"mailboxes":[{",".join(rows)}]}}'


def _metrics(ctx: ApiContext) -> ConnectorMetrics | None:
    daemon = ctx.daemon
    found = getattr(daemon, "metrics", None) if daemon is not None else ctx.extras.get("metrics")
    return found if isinstance(found, ConnectorMetrics) else None


def admin_routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    rows = _RowCache()

    async def status(_: Request) -> Response:
        return Response(
            rows.document(ctx), media_type="application/json", headers={"cache-control": "no-store"}
        )

    async def page(_: Request) -> Response:
        return HTMLResponse(
            render_admin_page(STATUS_PATH, ACTION_HEADER),
            headers={
                "cache-control": "no-store",
                "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                "frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
                "x-frame-options": "DENY",
                "referrer-policy": "no-referrer",
            },
        )

    async def root(_: Request) -> Response:
        return RedirectResponse("/admin", status_code=307)

    async def metrics(_: Request) -> Response:
        found = _metrics(ctx)
        if found is None:
            return error(503, "no_metrics", "metrics are available while the daemon runs")
        return Response(found.render(), media_type=CONTENT_TYPE)

    async def action(request: Request) -> Response:
        if request.headers.get(ACTION_HEADER) != "1":
            return error(403, "action_header_required", f"POST actions need the header {ACTION_HEADER}: 1")
        daemon = ctx.daemon
        if daemon is None:
            return error(503, "not_running", "the daemon is not running")
        mailbox_id = request.path_params["mailbox_id"]
        verb = request.path_params["verb"]
        if mailbox_id not in daemon.runners:
            return error(404, "unknown_mailbox", f"no running mailbox '{mailbox_id}'")
        if verb == "poll":
            ok = daemon.poll_now(mailbox_id)
            if not ok:
                return error(409, "paused", f"mailbox '{mailbox_id}' is paused: resume it first")
            return JSONResponse(
                {"mailboxId": mailbox_id, "action": "poll", "accepted": True}, status_code=202
            )
        if verb == "pause":
            daemon.pause(mailbox_id)
            return JSONResponse({"mailboxId": mailbox_id, "action": "pause", "paused": True})
        if verb == "resume":
            daemon.resume(mailbox_id)
            return JSONResponse({"mailboxId": mailbox_id, "action": "resume", "paused": False})
        if verb == "retry-quarantine":
            entry = request.query_params.get("entry")
            entry_id: int | None = None
            if entry is not None:
                if not (entry.isascii() and entry.isdigit()):
                    return error(400, "invalid_entry", "entry must be a quarantine entry id (a whole number)")
                entry_id = int(entry)
            try:
                tried, delivered = await daemon.retry_quarantine(mailbox_id, entry_id)
            except ConnectorError as exc:
                return error(502, exc.code, f"retry stopped: {exc}")
            return JSONResponse(
                {
                    "mailboxId": mailbox_id,
                    "action": "retry-quarantine",
                    "tried": tried,
                    "delivered": delivered,
                }
            )
        return error(
            404, "unknown_action", f"unknown action '{verb}' (poll, pause, resume, retry-quarantine)"
        )

    return [
        Route(STATUS_PATH, status, methods=["GET"]),
        Route("/admin", page, methods=["GET"]),
        Route("/", root, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/v1/mailboxes/{mailbox_id}/{verb}", action, methods=["POST"]),
    ]
