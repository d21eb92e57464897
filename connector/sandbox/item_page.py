# ruff: noqa: E501  (the page's HTML reads better unwrapped)
"""The sandbox's view of one item, and its reply box: `GET /items/{id}`, `POST /items/{id}/reply`.

An agent's reply is queued exactly as IWD queues one (an outbound item, status `queued`, with
`inReplyToItemId`); the connector takes it from there, sends it, and reports `sent`. With the demo's
SMTP sink attached (`SandboxControl.sink`), the page also lists what the sink received, so one page
shows the whole loop: customer mail, item, agent reply, reply delivered.

Server-rendered, every value escaped; the item's HTML body (already sanitized by the connector) is
shown in a sandboxed iframe whose policy forbids scripts and remote loads.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from connector.iwd import profile as p
from connector.sandbox.control import control_for
from connector.sandbox.page import STYLE, human_time, item_flags

MAX_REPLY_BYTES = 64 * 1024
IFRAME_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _address(a: dict[str, Any] | None) -> str:
    a = a or {}
    return f"{a.get('name')} <{a.get('address')}>" if a.get("name") else str(a.get("address") or "")


def _thread(item: dict[str, Any], others: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items of the same conversation: the same threadKey, or replies to this item."""
    key = item.get("threadKey")
    return [
        o
        for o in others
        if o.get("id") != item.get("id")
        and ((key and o.get("threadKey") == key) or o.get("inReplyToItemId") == item.get("id"))
    ]


def render_item(item: dict[str, Any], thread: list[dict[str, Any]], sink: list[dict[str, Any]]) -> str:
    attachments = "".join(
        f"<li>{_e(a.get('filename') or a.get('attachmentId'))} ({_e(a.get('size', '?'))} B, "
        f"{_e(a.get('contentType', ''))})</li>"
        for a in item.get("attachments") or []
    )
    html_body = item.get("htmlBody")
    html = (
        f'<iframe sandbox="" csp="{IFRAME_CSP}" title="sanitized HTML body" '
        f'srcdoc="{escape(str(html_body), quote=True)}"></iframe>'
        if html_body
        else "<p><small>no HTML body</small></p>"
    )
    rows = "".join(
        f'<tr><td><a href="/items/{_e(o.get("id"))}">{_e(o.get("id"))}</a></td><td>{_e(o.get("direction"))}</td>'
        f"<td>{_e(o.get('subject'))}</td><td>{item_flags(o)}</td>"
        f'<td class="when">{_e(human_time(o.get("sentAt") or o.get("receivedAt") or o.get("createdAt")))}</td></tr>'
        for o in thread
    )
    delivered = "".join(
        f'<tr data-sink-message="{_e(m.get("messageId"))}"><td class="when">{_e(human_time(m.get("at")))}</td>'
        f"<td>{_e(', '.join(m.get('recipients', [])))}</td><td>{_e(m.get('subject'))}</td>"
        f"<td>{_e(m.get('inReplyTo'))}</td></tr>"
        for m in sink
    )
    sink_table = (
        "<h2>Delivered to the demo's SMTP sink</h2><table><tr><th>Received</th><th>To</th><th>Subject</th>"
        f"<th>In-Reply-To</th></tr>{delivered or '<tr><td colspan=4>nothing yet</td></tr>'}</table>"
    )
    reply = ""
    if item.get("direction") == "inbound":
        reply = f"""<h2>Reply as an agent</h2>
<form method="post" action="/items/{_e(item.get("id"))}/reply">
<label for="reply-text">To {_e(_address(item.get("from")))}, subject "Re: {_e(item.get("subject"))}"</label><br>
<textarea id="reply-text" name="textBody" rows="5" required></textarea><br>
<button type="submit">Queue reply</button>
<small>An outbound item, queued as IWD queues one; the connector sends it and reports back.</small>
</form>"""
    waiting = any(
        o.get("direction") == "outbound" and o.get("status") in ("queued", "sending") for o in thread
    )
    refresh = '<meta http-equiv="refresh" content="2">' if waiting else ""  # until the reply is out
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>Item {_e(item.get("id"))}: Sandbox IWD</title><style>{STYLE}
iframe{{width:100%;min-height:12em;border:1px solid #ddd;background:#fff}}
textarea{{width:100%;max-width:40em;font:inherit}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:.5em}}
</style></head><body>
<p><a href="/">← all items</a></p>
<h1 data-item="{_e(item.get("id"))}">{_e(item.get("subject"))}</h1>
<table>
<tr><th>Item id</th><td>{_e(item.get("id"))}</td></tr>
<tr><th>Direction</th><td>{_e(item.get("direction"))} {item_flags(item)}</td></tr>
<tr><th>Mailbox</th><td>{_e(item.get("mailboxId"))}</td></tr>
<tr><th>From</th><td>{_e(_address(item.get("from")))}</td></tr>
<tr><th>To</th><td>{_e(", ".join(_address(a) for a in item.get("to") or []))}</td></tr>
<tr><th>Received</th><td class="when">{_e(human_time(item.get("receivedAt") or item.get("createdAt")))}</td></tr>
<tr><th>externalId</th><td>{_e(item.get("externalId"))}</td></tr>
<tr><th>Message-ID</th><td>{_e(item.get("messageId"))}</td></tr>
</table>
<h2>Text</h2><pre>{_e(item.get("textBody"))}</pre>
<h2>HTML (sanitized)</h2>{html}
<h2>Attachments</h2><ul>{attachments or "<li>none</li>"}</ul>
<h2>Thread</h2><table><tr><th>Item</th><th>Direction</th><th>Subject</th><th>Status / flags</th><th>When</th></tr>
{rows or '<tr><td colspan="5">no other item in this conversation</td></tr>'}</table>
{reply}
{sink_table}
</body></html>"""


async def item_page(request: Request) -> Response:
    ctl = control_for(request)
    item = await run_in_threadpool(ctl.store.get_item, request.path_params["item_id"])
    if item is None:
        return HTMLResponse("<!doctype html><p>no such item</p>", status_code=404)
    recent = await run_in_threadpool(ctl.store.recent_items, 500)
    sink = ctl.sink() if ctl.sink is not None else []
    mine = [m for m in sink if m.get("inReplyToItemId") == item.get("id") or _replies_to(m, recent, item)]
    return HTMLResponse(render_item(item, _thread(item, recent), mine if ctl.sink is not None else []))


def _replies_to(message: dict[str, Any], recent: list[dict[str, Any]], item: dict[str, Any]) -> bool:
    """A sink message answers `item` when an outbound item replying to it has its Message-ID."""
    return any(
        o.get("inReplyToItemId") == item.get("id") and o.get("messageId") == message.get("messageId")
        for o in recent
    )


async def reply(request: Request) -> Response:
    """Queues the agent's reply as an outbound item and shows the item again (Post/Redirect/Get)."""
    ctl = control_for(request)
    item = await run_in_threadpool(ctl.store.get_item, request.path_params["item_id"])
    if item is None or item.get("direction") != "inbound":
        return HTMLResponse("<!doctype html><p>only an inbound item can be replied to</p>", status_code=404)
    raw = await request.body()
    if len(raw) > MAX_REPLY_BYTES:
        return HTMLResponse("<!doctype html><p>the reply is too long</p>", status_code=413)
    text = (parse_qs(raw.decode("utf-8", errors="replace")).get("textBody") or [""])[0]
    sender = item.get("from") or {}
    subject = str(item.get("subject") or "")
    body = {
        "mailboxId": item["mailboxId"],
        "direction": "outbound",
        "to": [
            {"address": sender.get("address"), **({"name": sender["name"]} if sender.get("name") else {})}
        ],
        "subject": subject if subject.lower().startswith("re:") else f"Re: {subject}",
        "textBody": text,
        "inReplyToItemId": item["id"],
    }
    try:
        record = p.OutboundEmail.model_validate(body).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        return HTMLResponse(f"<!doctype html><p>{_e(p.describe_validation_error(exc))}</p>", status_code=400)
    record.update(sentAt=None, messageId=None, error=None)
    await run_in_threadpool(lambda: ctl.store.create_item(record, external_id=None))
    return RedirectResponse(f"/items/{item['id']}", status_code=303)
