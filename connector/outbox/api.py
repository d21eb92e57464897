"""The local replies API: POST /api/v1/replies (idempotent by the caller's reply id) and
GET /api/v1/replies/{id}; POST /api/v1/replies/{id}/resend is a person's decision to send an
uncertain or failed reply again.

It always demands the bearer token (http.token), even on loopback: a reply goes out to a
customer under the company's name. Without a configured token it answers 403 saying so.
A 202 means the reply is durably in the outbox (it survives a crash from then on).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connector.api.app import ApiContext, bearer_ok, error
from connector.errors import ConnectorError, StoreError
from connector.outbox.request import parse_request
from connector.store.types import OutboxEntry

EXTRA_KEY = "outbox"
PREFIX = "/api/v1/replies"
MAX_BODY_BYTES = 1024 * 1024
_REPLY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")
RESERVED_ID_PREFIXES = ("iwd-", "auto-")  # the outbox's own ids for IWD-queued replies and auto-acks


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def reply_json(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "mailboxId": entry.mailbox_id,
        "origin": entry.origin,
        "iwdItemId": entry.iwd_item_id,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "nextAttemptAt": _iso(entry.next_attempt_at) if entry.state.value in ("queued", "retrying") else None,
        "messageId": entry.message_id,
        "sentAt": _iso(entry.sent_at),
        "createdAt": _iso(entry.created_at),
        "updatedAt": _iso(entry.updated_at),
        "lastError": (
            {"code": entry.last_error_code, "message": entry.last_error} if entry.last_error_code else None
        ),
        "recipients": [{"address": a, **r} for a, r in entry.results.items()],
    }


def reply_routes(ctx: ApiContext) -> list[BaseRoute]:
    def gate(request: Request) -> Response | None:
        if ctx.token is None:
            return error(
                403,
                "replies_disabled",
                "the replies API needs a bearer token: set http.token in the configuration",
            )
        if not bearer_ok(request, ctx.token):
            return error(401, "unauthorized", "a bearer token is required (http.token)")
        if ctx.extras.get(EXTRA_KEY) is None:
            return error(503, "outbox_not_running", "the outbox worker is not running")
        return None

    async def create(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        worker = ctx.extras[EXTRA_KEY]
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body)
        except ValueError:
            return error(400, "invalid_json", "the body is not JSON")
        if not isinstance(data, dict):
            return error(400, "invalid", "the body must be a JSON object")
        reply_id = data.pop("id", None)
        if not isinstance(reply_id, str) or not _REPLY_ID.match(reply_id):
            return error(400, "invalid", "id: required, 1-200 of A-Z a-z 0-9 . _ : @ - (your reply's id)")
        if reply_id.lower().startswith(RESERVED_ID_PREFIXES):
            return error(
                400, "invalid", f"id: must not start with {' or '.join(RESERVED_ID_PREFIXES)} (reserved)"
            )
        try:
            reply = parse_request(data)
        except ValueError as exc:
            return error(400, "invalid", str(exc))
        try:
            entry, created = await worker.submit(reply_id, reply)
        except ValueError as exc:
            return error(409, "conflict", str(exc))
        except StoreError:
            return error(503, "store_unavailable", "the reply could not be stored; nothing was queued, retry")
        except ConnectorError as exc:
            return error(422, exc.code, exc.message)
        location = f"{PREFIX}/{entry.id}"
        return JSONResponse(
            reply_json(entry), status_code=202 if created else 200, headers={"Location": location}
        )

    async def show(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        entry = await ctx.extras[EXTRA_KEY].outbox.outbox_get(request.path_params["id"])
        if entry is None:
            return error(404, "not_found", "no reply with this id")
        return JSONResponse(reply_json(entry))

    async def resend(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        entry = await ctx.extras[EXTRA_KEY].requeue(request.path_params["id"])
        if entry is None:
            return error(409, "not_resendable", "only uncertain, failed or retrying replies can be resent")
        return JSONResponse(reply_json(entry), status_code=202, headers={"Location": f"{PREFIX}/{entry.id}"})

    return [
        Route(PREFIX, create, methods=["POST"]),
        Route(PREFIX + "/{id}", show, methods=["GET"]),
        Route(PREFIX + "/{id}/resend", resend, methods=["POST"]),
    ]
