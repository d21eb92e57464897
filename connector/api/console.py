"""The console's JSON routes: a mailbox's detail, the quarantine, the replies (outbox), the charts.

The same model as the admin routes: readers read the StatusBoard, its ActivityLog and the store
(the same store calls the CLI makes), never a peer; every POST needs `X-Connector-Action: 1`, and
the token gate in front decides who may call at all. Secrets never leave: a mailbox's effective
configuration is dumped with every secret masked.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connector.activity import TOTAL
from connector.api.app import ApiContext, error
from connector.api.browser_auth import ACTION_HEADER
from connector.config import MailboxSettings
from connector.errors import ConnectorError
from connector.ops_cli import message_summary, size_text
from connector.outbox.api import reply_json
from connector.runtime.services import BackgroundLoop
from connector.status import StatusBoard
from connector.store.types import OutboxState, QuarantineEntry

MASK = "••••••"
RAW_PREVIEW_BYTES = 64 * 1024
REPLIES_PER_STATE = 100
# a person acts on these first: shown on top
REPLY_STATE_ORDER = ("uncertain", "failed", "retrying", "sending", "queued", "sent")
OBSERVE_SECONDS = 0.5


class ActivityWatcher:
    """The daemon service that turns status changes into the activity timeline between reads."""

    name = "activity"

    def __init__(self, board: StatusBoard) -> None:
        self.board = board
        self._loop = BackgroundLoop(self.name)

    async def start(self) -> None:
        self._loop.start(self._run())

    async def _run(self) -> None:
        while not self._loop.stopping.is_set():
            self.board.activity.observe(self.board)
            await self._loop.pause(OBSERVE_SECONDS)

    async def stop(self) -> None:
        await self._loop.stop()


def masked(value: Any) -> Any:
    """A settings model as JSON, each secret replaced by a mask (never its value, nor its length)."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, BaseModel):
        return {name: masked(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _acting(request: Request) -> Response | None:
    if request.headers.get(ACTION_HEADER) != "1":
        return error(403, "action_header_required", f"POST actions need the header {ACTION_HEADER}: 1")
    return None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def quarantine_json(entry: QuarantineEntry, next_retry: datetime | None, max_attempts: int) -> dict[str, Any]:
    summary = message_summary(entry.raw)
    return {
        "id": entry.id,
        "mailboxId": entry.mailbox_id,
        "folder": entry.folder,
        "providerId": entry.provider_id,
        "attempts": entry.attempts,
        "maxAttempts": max_attempts,
        "firstSeenAt": _iso(entry.first_seen_at),
        "lastAttemptAt": _iso(entry.last_attempt_at),
        "nextRetryAt": _iso(next_retry),
        "size": entry.message.size,
        "sizeText": size_text(entry),
        "reason": entry.error,
        "subject": summary["Subject"],
        "from": summary["From"],
    }


def _headers(raw: bytes) -> list[list[str]]:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return [[name, str(value)] for name, value in parsed.items()]


def console_routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    board = ctx.board

    def settings_box(mailbox_id: str) -> MailboxSettings | None:
        settings = ctx.daemon.settings if ctx.daemon is not None else ctx.settings
        return next((b for b in settings.mailboxes if b.id == mailbox_id), None)

    def next_retry(entry: QuarantineEntry) -> datetime | None:
        """Quarantined mail is retried at the start of each cycle: the mailbox's next poll."""
        status = board.find(entry.mailbox_id)
        box = settings_box(entry.mailbox_id)
        if status is None or box is None or status.paused or status.inbound.last_poll_at is None:
            return None
        return status.inbound.last_poll_at + timedelta(seconds=box.poll_interval_seconds)

    def max_attempts() -> int:
        settings = ctx.daemon.settings if ctx.daemon is not None else ctx.settings
        return int(settings.quarantine_max_attempts)

    async def mailbox(request: Request) -> Response:
        mailbox_id = request.path_params["mailbox_id"]
        box = settings_box(mailbox_id)
        status = board.find(mailbox_id)
        if box is None or status is None:
            return error(404, "unknown_mailbox", f"no mailbox '{mailbox_id}'")
        board.activity.observe(board)
        row = status.to_admin_json() | {
            "running": ctx.daemon is not None and mailbox_id in ctx.daemon.runners
        }
        folders = []
        for folder in box.folders:
            try:
                cursor = await ctx.store.get_cursor(mailbox_id, folder)
            except ConnectorError as exc:
                cursor = f"(store: {exc.code})"
            folders.append(
                {
                    "name": folder,
                    "cursor": cursor,
                    "lastFetchAt": _iso(status.inbound.last_poll_at),
                    "backlog": status.inbound.backlog,
                }
            )
        return JSONResponse(
            {
                "status": row,
                "config": masked(box),
                "folders": folders,
                **board.activity.mailbox_json(mailbox_id),
            },
            headers={"cache-control": "no-store"},
        )

    async def check(request: Request) -> Response:
        if (refused := _acting(request)) is not None:
            return refused
        from connector.runtime.app import check_mailbox  # the same connect path as `email-connector check`

        box = settings_box(request.path_params["mailbox_id"])
        if box is None:
            return error(404, "unknown_mailbox", "no such mailbox")
        verdict = await check_mailbox(box)
        return JSONResponse(
            {"mailboxId": box.id, "action": "check", "ok": verdict.ok, "detail": verdict.detail}
        )

    async def quarantine(request: Request) -> Response:
        entries = await ctx.store.quarantine_list(request.query_params.get("mailbox") or None)
        limit = max_attempts()
        return JSONResponse(
            {"entries": [quarantine_json(e, next_retry(e), limit) for e in entries]},
            headers={"cache-control": "no-store"},
        )

    async def entry_or_404(request: Request) -> QuarantineEntry | Response:
        text = request.path_params["entry_id"]
        if not (text.isascii() and text.isdigit()):
            return error(400, "invalid_entry", "entry must be a quarantine entry id (a whole number)")
        entry = await ctx.store.quarantine_get(int(text))
        if entry is None:
            return error(404, "not_found", "no quarantine entry with this id")
        return entry

    async def quarantine_show(request: Request) -> Response:
        entry = await entry_or_404(request)
        if isinstance(entry, Response):
            return entry
        preview = entry.raw[:RAW_PREVIEW_BYTES].decode("utf-8", errors="replace")
        return JSONResponse(
            quarantine_json(entry, next_retry(entry), max_attempts())
            | {
                "headers": _headers(entry.raw),
                "rawPreview": preview,
                "rawTruncated": len(entry.raw) > RAW_PREVIEW_BYTES,
                "headersOnly": entry.headers_only,
            },
            headers={"cache-control": "no-store"},
        )

    async def quarantine_raw(request: Request) -> Response:
        entry = await entry_or_404(request)
        if isinstance(entry, Response):
            return entry
        return Response(
            entry.raw,
            media_type="message/rfc822",
            headers={
                "content-disposition": f'attachment; filename="quarantine-{entry.id}.eml"',
                "cache-control": "no-store",
                "x-content-type-options": "nosniff",
            },
        )

    async def quarantine_act(request: Request) -> Response:
        if (refused := _acting(request)) is not None:
            return refused
        entry = await entry_or_404(request)
        if isinstance(entry, Response):
            return entry
        verb = request.path_params["verb"]
        if verb not in ("retry", "deliver-unparseable"):
            return error(404, "unknown_action", f"unknown action '{verb}' (retry, deliver-unparseable)")
        daemon = ctx.daemon
        if daemon is None or entry.mailbox_id not in daemon.runners:
            return error(503, "not_running", f"mailbox '{entry.mailbox_id}' is not running here")
        try:
            tried, delivered = await daemon.retry_quarantine(
                entry.mailbox_id, entry.id, as_unparseable=verb == "deliver-unparseable"
            )
        except ConnectorError as exc:
            return error(502, exc.code, f"retry stopped: {exc}")
        return JSONResponse({"entry": entry.id, "action": verb, "tried": tried, "delivered": delivered})

    def outbox() -> Any:
        return ctx.extras.get("outbox")

    async def replies(_: Request) -> Response:
        worker = outbox()
        if worker is None:
            return JSONResponse({"running": False, "groups": []})
        groups = []
        for state in REPLY_STATE_ORDER:
            rows = await worker.outbox.outbox_in_state(OutboxState(state), REPLIES_PER_STATE)
            rows.sort(key=lambda e: e.updated_at or datetime.min.replace(tzinfo=UTC), reverse=True)
            groups.append({"state": state, "replies": [_reply(e) for e in rows]})
        return JSONResponse({"running": True, "groups": groups}, headers={"cache-control": "no-store"})

    async def reply_act(request: Request) -> Response:
        if (refused := _acting(request)) is not None:
            return refused
        worker = outbox()
        if worker is None:
            return error(503, "outbox_not_running", "the outbox worker is not running")
        reply_id, verb = request.path_params["reply_id"], request.path_params["verb"]
        if verb == "send-again":
            entry = await worker.requeue(reply_id)
            if entry is None:
                return error(
                    409, "not_resendable", "only uncertain, failed or retrying replies can be sent again"
                )
            return JSONResponse(_reply(entry), status_code=202)
        if verb == "mark-sent":
            entry = await worker.mark_sent(reply_id)
            if entry is None:
                return error(409, "not_uncertain", "only an uncertain reply can be marked sent")
            return JSONResponse(_reply(entry))
        return error(404, "unknown_action", f"unknown action '{verb}' (mark-sent, send-again)")

    async def charts(request: Request) -> Response:
        wanted = request.query_params.get("mailbox")  # without it: the total only (the overview)
        keys = [TOTAL, wanted] if wanted else [TOTAL]
        return JSONResponse(board.activity.charts_json(keys), headers={"cache-control": "no-store"})

    return [
        Route("/api/v1/mailboxes/{mailbox_id}", mailbox, methods=["GET"]),
        Route("/api/v1/mailboxes/{mailbox_id}/check", check, methods=["POST"]),
        Route("/api/v1/quarantine", quarantine, methods=["GET"]),
        Route("/api/v1/quarantine/{entry_id}", quarantine_show, methods=["GET"]),
        Route("/api/v1/quarantine/{entry_id}/raw", quarantine_raw, methods=["GET"]),
        Route("/api/v1/quarantine/{entry_id}/{verb}", quarantine_act, methods=["POST"]),
        Route("/api/v1/outbox", replies, methods=["GET"]),
        Route("/api/v1/outbox/{reply_id}/{verb}", reply_act, methods=["POST"]),
        Route("/api/v1/charts", charts, methods=["GET"]),
    ]


def _reply(entry: Any) -> dict[str, Any]:
    """The replies API's JSON plus what a person deciding needs: subject, recipients, threading."""
    request = entry.request
    return reply_json(entry) | {
        "subject": request.get("subject", ""),
        "to": [a.get("address", a) if isinstance(a, dict) else a for a in request.get("to", [])],
        "inReplyToItemId": request.get("inReplyToItemId"),
        "inReplyTo": request.get("inReplyTo"),
        "references": request.get("references", []),
        "phase": entry.phase,
    }
