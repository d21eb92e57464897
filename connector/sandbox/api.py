"""The profile's endpoints as the sandbox implements them; validation uses the profile's models.

A request that breaks the profile gets 400 with the field named (`from.address: required`),
so a connector bug shows up as a precise message rather than a silently odd work item.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.iwd import profile as p
from connector.iwd.client import decode_filename, encode_filename
from connector.sandbox.control import control_for
from connector.sandbox.storage import AttachmentKeyConflict

MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024
MAX_BATCH_BYTES = 32 * 1024 * 1024


class ApiError(Exception):
    """Raised by handlers; turned into the profile's JSON error by the app's handler."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str, code: str = "invalid_field") -> ApiError:
    return ApiError(400, code, message)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise invalid("(body): not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("(body): must be a JSON object", "invalid_json")
    return body


def _validate(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    try:
        return model.model_validate(body).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        raise invalid(p.describe_validation_error(exc)) from None


def _limit(request: Request, default: int) -> int:
    text = request.query_params.get(p.Q_LIMIT)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= p.MAX_PAGE_LIMIT:
        raise invalid(f"{p.Q_LIMIT}: must be an integer 1..{p.MAX_PAGE_LIMIT}")
    return int(text)


def _mailbox_param(request: Request) -> str:
    mailbox_id = str(request.path_params["mailboxId"])
    if not re.fullmatch(p.MAILBOX_ID_PATTERN, mailbox_id):
        raise invalid("mailboxId: must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    return mailbox_id


def _encode_cursor(seq: int | None) -> str | None:
    return None if seq is None else base64.urlsafe_b64encode(f"s:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(text: str | None) -> int:
    if not text:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if raw.startswith("s:") and raw[2:].isdigit():
            return int(raw[2:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise invalid(f"{p.Q_CURSOR}: not a cursor this server issued")


# ---------------------------------------------------------------- emails


async def create_email(request: Request) -> Response:
    ctl = control_for(request)
    body = await _json_object(request)
    direction = body.get("direction")
    if direction is None:
        raise invalid("direction: required")
    if direction == p.INBOUND:
        record = _validate(p.InboundEmail, body)
        key = request.headers.get(p.IDEMPOTENCY_HEADER)
        if not key:
            raise invalid(f"{p.IDEMPOTENCY_HEADER}: required (the item's externalId)")
        if key != record["externalId"]:
            raise invalid(f"{p.IDEMPOTENCY_HEADER}: must equal externalId")
        existing = await run_in_threadpool(ctl.store.find_by_external_id, record["externalId"])
        if existing is not None:
            return JSONResponse({p.F_ID: existing}, status_code=200)
        await _check_attachments(request, record["attachments"], strict=True)
    elif direction == p.OUTBOUND_DIRECTION:
        record = _validate(p.OutboundEmail, body)
        reply_to = record["inReplyToItemId"]
        if reply_to is not None and await run_in_threadpool(ctl.store.get_item, reply_to) is None:
            raise invalid("inReplyToItemId: no such item")
        await _check_attachments(request, record["attachments"], strict=False)
        record.update(sentAt=None, messageId=None, error=None)
    else:
        raise invalid("direction: must be inbound or outbound")
    item_id, created = await run_in_threadpool(
        lambda: ctl.store.create_item(record, external_id=record.get("externalId"))
    )
    return JSONResponse({p.F_ID: item_id}, status_code=201 if created else 200)


async def create_emails_batch(request: Request) -> Response:
    """POST /emails/batch (v1.1): one result per item, the valid items stored in one transaction."""
    ctl = control_for(request)
    if not ctl.batch or ctl.faults.batch_disabled:
        raise ApiError(404, "not_found", f"{request.method} {request.url.path}: Not Found")
    raw = await request.body()
    if len(raw) > MAX_BATCH_BYTES:
        raise ApiError(413, "too_large", f"(body): batch larger than {MAX_BATCH_BYTES} bytes")
    body = await _json_object(request)
    unknown = sorted(set(body) - {p.F_ITEMS})
    if unknown:
        raise invalid(f"{unknown[0]}: not a field of the profile")
    items = body.get(p.F_ITEMS)
    if not isinstance(items, list):
        raise invalid(f"{p.F_ITEMS}: required, a list of 1..{p.MAX_BATCH_ITEMS} inbound items")
    if not 1 <= len(items) <= p.MAX_BATCH_ITEMS:
        raise invalid(f"{p.F_ITEMS}: must hold 1..{p.MAX_BATCH_ITEMS} items, not {len(items)}")

    results: list[dict[str, Any]] = [{} for _ in items]
    records: dict[int, dict[str, Any]] = {}  # index -> validated record, first occurrences only
    first_of: dict[str, int] = {}  # externalId -> index of its first valid occurrence
    repeats: dict[int, int] = {}  # index -> index of the identical first occurrence
    for i, raw_item in enumerate(items):
        ext = raw_item.get(p.F_EXTERNAL_ID) if isinstance(raw_item, dict) else None
        results[i] = _item_result(ext if isinstance(ext, str) else "", 400)
        if not isinstance(raw_item, dict):
            results[i][p.F_ERROR] = _item_error("invalid_field", f"items[{i}]: must be a JSON object")
            continue
        try:
            record = p.InboundEmail.model_validate(raw_item).model_dump(mode="json", by_alias=True)
        except ValidationError as exc:
            message = p.describe_validation_error(exc, at=(p.F_ITEMS, i))
            results[i][p.F_ERROR] = _item_error("invalid_field", message)
            continue
        first = first_of.get(record["externalId"])
        if first is None:
            first_of[record["externalId"]] = i
            records[i] = record
        elif records[first] == record:
            repeats[i] = first
        else:
            results[i][p.F_STATUS] = 409
            results[i][p.F_ERROR] = _item_error(
                "conflict",
                f"items[{i}].externalId: items[{first}] has the same externalId with different content",
            )

    existing = await run_in_threadpool(ctl.store.find_by_external_ids, list(first_of))
    to_store: list[int] = []
    for i, record in records.items():
        if record["externalId"] in existing:
            results[i].update({p.F_STATUS: 200, p.F_ID: existing[record["externalId"]]})
            continue
        try:
            await _check_attachments(request, record["attachments"], strict=True)
        except ApiError as exc:
            results[i][p.F_ERROR] = _item_error(exc.code, f"items[{i}].{exc.message}")
            continue
        to_store.append(i)
    stored = await run_in_threadpool(ctl.store.create_items, [records[i] for i in to_store])
    for i, (item_id, created) in zip(to_store, stored, strict=True):
        results[i].update({p.F_STATUS: 201 if created else 200, p.F_ID: item_id})
    for i, first in repeats.items():
        ok = results[first][p.F_STATUS] in (200, 201)
        results[i] = {**results[first], p.F_STATUS: 200 if ok else results[first][p.F_STATUS]}
        if not ok:
            message = f"items[{i}]: same as items[{first}], which was refused"
            results[i][p.F_ERROR] = _item_error(results[first][p.F_ERROR][p.F_CODE], message)
    return JSONResponse({p.F_RESULTS: results})


def _item_result(external_id: str, status: int) -> dict[str, Any]:
    return {p.F_EXTERNAL_ID: external_id, p.F_STATUS: status, p.F_ID: None, p.F_ERROR: None}


def _item_error(code: str, message: str) -> dict[str, str]:
    return {p.F_CODE: code, p.F_MESSAGE: message}


async def _check_attachments(request: Request, refs: list[dict[str, Any]], *, strict: bool) -> None:
    store = control_for(request).store
    for i, ref in enumerate(refs):
        stored = await run_in_threadpool(store.get_attachment, str(ref["attachmentId"]), with_data=False)
        if stored is None:
            raise invalid(f"attachments[{i}].attachmentId: unknown attachment (upload it first)")
        if strict and ref["size"] != stored.size:
            raise invalid(f"attachments[{i}].size: the uploaded attachment has {stored.size} bytes")
        if strict and ref["sha256"] != stored.sha256:
            raise invalid(f"attachments[{i}].sha256: does not match the uploaded attachment")


async def get_email(request: Request) -> Response:
    item = await run_in_threadpool(control_for(request).store.get_item, request.path_params["id"])
    if item is None:
        raise ApiError(404, "not_found", "id: no such item")
    return JSONResponse(item)


async def list_emails(request: Request) -> Response:
    direction = request.query_params.get(p.Q_DIRECTION)
    if direction is not None and direction not in (p.INBOUND, p.OUTBOUND_DIRECTION):
        raise invalid(f"{p.Q_DIRECTION}: must be inbound or outbound")
    limit = _limit(request, 100)
    after = _decode_cursor(request.query_params.get(p.Q_CURSOR))
    store = control_for(request).store
    items, last = await run_in_threadpool(
        lambda: store.list_items(
            mailbox_id=request.query_params.get(p.Q_MAILBOX),
            direction=direction,
            after_seq=after,
            limit=limit,
        )
    )
    return JSONResponse({p.F_ITEMS: items, p.F_NEXT_CURSOR: _encode_cursor(last)})


async def patch_email(request: Request) -> Response:
    store = control_for(request).store
    item_id = request.path_params["id"]
    item = await run_in_threadpool(store.get_item, item_id)
    if item is None:
        raise ApiError(404, "not_found", "id: no such item")
    if item.get("direction") != p.OUTBOUND_DIRECTION:
        raise invalid("direction: only outbound items can be patched", "not_outbound")
    body = await _json_object(request)
    patch = _validate(p.EmailPatch, body)
    if item.get("status") == "sent" and patch["status"] != "sent":
        raise invalid(
            f"status: the item was already sent; it cannot become {patch['status']}", "invalid_transition"
        )
    changes = {k: v for k, v in patch.items() if k in body}
    changes["updatedAt"] = datetime.now(UTC).isoformat()
    updated = await run_in_threadpool(store.update_item, item_id, changes)
    return JSONResponse(updated)


async def list_outbound(request: Request) -> Response:
    status = request.query_params.get(p.Q_STATUS, "queued")
    if status not in p.OUTBOUND_STATUSES:
        raise invalid(f"{p.Q_STATUS}: must be one of {', '.join(p.OUTBOUND_STATUSES)}")
    limit = _limit(request, 50)
    store = control_for(request).store
    items, _ = await run_in_threadpool(
        lambda: store.list_items(
            mailbox_id=request.query_params.get(p.Q_MAILBOX),
            direction=p.OUTBOUND_DIRECTION,
            status=status,
            limit=limit,
        )
    )
    return JSONResponse({p.F_ITEMS: items})


# ---------------------------------------------------------------- attachments


async def upload_attachment(request: Request) -> Response:
    """201 stored; 200 with the first attachment when its Idempotency-Key (v1.2) came before
    with the same bytes; 422 when that key came with other bytes. Without a key: always stored."""
    content_type = request.headers.get("content-type")
    if not content_type:
        raise invalid("Content-Type: required")
    raw_name = request.headers.get(p.FILENAME_HEADER)
    if raw_name is None:
        raise invalid(f"{p.FILENAME_HEADER}: required (percent-encoded UTF-8)")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise ApiError(413, "too_large", f"(body): attachment larger than {MAX_ATTACHMENT_BYTES} bytes")
    key = request.headers.get(p.IDEMPOTENCY_HEADER) or None
    if key is not None and len(key) > p.MAX_IDEMPOTENCY_KEY_CHARS:
        raise invalid(f"{p.IDEMPOTENCY_HEADER}: at most {p.MAX_IDEMPOTENCY_KEY_CHARS} characters")
    store = control_for(request).store
    try:
        stored, created = await run_in_threadpool(
            lambda: store.add_attachment(
                bytes(data),
                filename=decode_filename(raw_name),
                content_type=content_type,
                idempotency_key=key,
            )
        )
    except AttachmentKeyConflict as exc:
        raise ApiError(
            422,
            "idempotency_conflict",
            f"{p.IDEMPOTENCY_HEADER}: already used for attachment {exc.first.id} with other content "
            f"({exc.first.size} bytes, sha256 {exc.first.sha256}); a new attachment needs a new key",
        ) from None
    return JSONResponse(
        {p.F_ATTACHMENT_ID: stored.id, "size": stored.size, "sha256": stored.sha256},
        status_code=201 if created else 200,
    )


async def download_attachment(request: Request) -> Response:
    store = control_for(request).store
    stored = await run_in_threadpool(store.get_attachment, request.path_params["attachmentId"])
    if stored is None:
        raise ApiError(404, "not_found", "attachmentId: no such attachment")
    encoded = encode_filename(stored.filename)
    return Response(
        stored.data,
        headers={
            "content-type": stored.content_type,
            p.FILENAME_HEADER: encoded,
            "content-disposition": f"attachment; filename*=UTF-8''{encoded}",
        },
    )


# ---------------------------------------------------------------- mailboxes


async def put_mailbox_status(request: Request) -> Response:
    mailbox_id = _mailbox_param(request)
    status = _validate(p.MailboxStatus, await _json_object(request))
    store = control_for(request).store
    await run_in_threadpool(lambda: store.put_mailbox(mailbox_id, status=status))
    return JSONResponse({"mailboxId": mailbox_id, "status": status})


async def put_mailbox_config(request: Request) -> Response:
    mailbox_id = _mailbox_param(request)
    config = await _json_object(request)
    secret_keys = p.find_secret_keys(config)
    if secret_keys:
        raise invalid(f"{secret_keys[0]}: secrets must never be sent to IWD", "secret_field")
    store = control_for(request).store
    await run_in_threadpool(lambda: store.put_mailbox(mailbox_id, config=config))
    return JSONResponse({"mailboxId": mailbox_id, "config": config})


async def list_mailboxes(request: Request) -> Response:
    items = await run_in_threadpool(control_for(request).store.list_mailboxes)
    return JSONResponse({p.F_ITEMS: items})


Handler = Callable[[Request], Awaitable[Response]]


def profile_routes() -> list[Route]:
    """Specific paths first: /emails/{id} would otherwise swallow /emails/mailboxes."""
    table: list[tuple[str, str, Handler]] = [
        ("POST", p.ATTACHMENTS, upload_attachment),
        ("GET", p.ATTACHMENT, download_attachment),
        ("GET", p.MAILBOXES, list_mailboxes),
        ("PUT", p.MAILBOX_STATUS, put_mailbox_status),
        ("PUT", p.MAILBOX, put_mailbox_config),
        ("GET", p.OUTBOUND, list_outbound),
        ("POST", p.EMAILS_BATCH, create_emails_batch),
        ("POST", p.EMAILS, create_email),
        ("GET", p.EMAILS, list_emails),
        ("GET", p.EMAIL, get_email),
        ("PATCH", p.EMAIL, patch_email),
    ]
    return [Route(p.BASE_PATH + path, handler, methods=[method]) for method, path, handler in table]
