"""The sandbox's human view at `/`: recent items and mailbox status, refreshed every few seconds.

Plain server-rendered HTML with every value escaped; a demo aid, not an admin console.
"""

from __future__ import annotations

from html import escape
from typing import Any

from connector.iwd.profile import PROFILE_VERSION

REFRESH_SECONDS = 3

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:2em;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.flag{background:#fde68a;border-radius:3px;padding:0 .3em;margin-right:.2em}
.ok{color:#166534}.bad{color:#b91c1c}small{color:#666}
"""


def _cell(value: Any) -> str:
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _sender(item: dict[str, Any]) -> str:
    sender = item.get("from") or {}
    name, address = sender.get("name"), sender.get("address")
    return f"{name} <{address}>" if name else (address or "")


def _flags(item: dict[str, Any]) -> str:
    flags = [k for k, v in (item.get("flags") or {}).items() if v]
    if item.get("direction") == "outbound":
        flags.insert(0, str(item.get("status")))
    return "<td>" + "".join(f'<span class="flag">{escape(f)}</span>' for f in flags) + "</td>"


def _attachments(item: dict[str, Any]) -> str:
    names = [
        f"{a.get('filename') or a.get('attachmentId')} ({a.get('size', '?')} B)"
        for a in item.get("attachments") or []
    ]
    return _cell(", ".join(names))


def _state(direction: dict[str, Any] | None) -> str:
    if not direction:
        return "<td>-</td>"
    state = str(direction.get("state"))
    css = "ok" if state == "ok" else "bad"
    err = direction.get("lastError") or {}
    detail = (
        f"<br><small>{escape(str(err.get('code')))}: {escape(str(err.get('message')))}</small>" if err else ""
    )
    extra = escape(
        f"backlog {direction.get('backlog', 0)}, quarantined {direction.get('quarantined', 0)}, "
        f"delivered {direction.get('deliveredTotal', 0)}"
    )
    return f'<td><b class="{css}">{escape(state)}</b> <small>{extra}</small>{detail}</td>'


def render_page(items: list[dict[str, Any]], mailboxes: list[dict[str, Any]], total: int) -> str:
    """The whole page; `items` newest first."""
    rows = "".join(
        "<tr>"
        + _cell(i.get("mailboxId"))
        + _cell(i.get("direction"))
        + _cell(i.get("subject"))
        + _cell(
            _sender(i)
            if i.get("direction") == "inbound"
            else ", ".join(a.get("address", "") for a in i.get("to") or [])
        )
        + _cell(i.get("receivedAt") or i.get("createdAt"))
        + _flags(i)
        + _attachments(i)
        + "</tr>"
        for i in items
    )
    boxes = "".join(
        "<tr>"
        + _cell(m["mailboxId"])
        + _cell((m.get("config") or {}).get("address"))
        + _state((m.get("status") or {}).get("inbound"))
        + _state((m.get("status") or {}).get("outbound"))
        + _cell(m.get("statusUpdatedAt"))
        + "</tr>"
        for m in mailboxes
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>Sandbox IWD</title><style>{_STYLE}</style></head><body>
<h1>Sandbox IWD <small>email API profile v{PROFILE_VERSION}, {total} item(s)</small></h1>
<h2>Mailboxes</h2>
<table><tr><th>Mailbox</th><th>Address</th><th>Inbound</th><th>Outbound</th><th>Updated</th></tr>
{boxes or '<tr><td colspan="5">no mailbox has reported yet</td></tr>'}</table>
<h2>Email items <small>(newest {len(items)})</small></h2>
<table><tr><th>Mailbox</th><th>Direction</th><th>Subject</th><th>From / To</th><th>Received</th>
<th>Flags</th><th>Attachments</th></tr>
{rows or '<tr><td colspan="7">no items yet</td></tr>'}</table>
</body></html>"""
