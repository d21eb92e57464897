"""The sandbox's human view at `/`: recent items and mailbox status, refreshed every few seconds.

Plain server-rendered HTML with every value escaped; a demo aid, not an admin console. Each item
links to its own view (connector.sandbox.item_page), where an agent's reply can be queued.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from connector.iwd.profile import PROFILE_VERSION

REFRESH_SECONDS = 3

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
.when{white-space:nowrap}.id{font:12px ui-monospace,monospace;white-space:nowrap}
.off{color:#555}
table{border-collapse:collapse;margin-bottom:2em;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.flag{background:#fde68a;border-radius:3px;padding:0 .3em;margin-right:.2em}
.ok{color:#166534}.bad{color:#b91c1c}small{color:#555}
@media (max-width:700px){body{margin:.6em}table{display:block;overflow-x:auto}}
"""


def human_time(iso: Any) -> str:
    """`Dec 04 18:30:15 UTC`: one unbreakable token a person reads at a glance (ISO is kept in title)."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    return at.astimezone(UTC).strftime("%b %d %H:%M:%S UTC")


def _cell(value: Any) -> str:
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _sender(item: dict[str, Any]) -> str:
    sender = item.get("from") or {}
    name, address = sender.get("name"), sender.get("address")
    return f"{name} <{address}>" if name else (address or "")


def item_flags(item: dict[str, Any]) -> str:
    flags = [k for k, v in (item.get("flags") or {}).items() if v]
    if item.get("direction") == "outbound":
        flags.insert(0, str(item.get("status")))
    return "".join(f'<span class="flag">{escape(f)}</span>' for f in flags)


def _flags(item: dict[str, Any]) -> str:
    return f"<td>{item_flags(item)}</td>"


def _when(iso: Any) -> str:
    return f'<td class="when" title="{escape(str(iso or ""))}">{escape(human_time(iso))}</td>'


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
    css = {"ok": "ok", "disabled": "off"}.get(state, "bad")  # disabled is a setting, not an alarm
    err = direction.get("lastError") or {}
    detail = (
        f"<br><small>{escape(str(err.get('code')))}: {escape(str(err.get('message')))}</small>" if err else ""
    )
    extra = escape(
        f"backlog {direction.get('backlog', 0)}, quarantined {direction.get('quarantined', 0)}, "
        f"delivered {direction.get('deliveredTotal', 0)}"
    )
    return f'<td><b class="{css}">{escape(state)}</b> <small>{extra}</small>{detail}</td>'


def _sink(sink: list[dict[str, Any]] | None) -> str:
    if sink is None:
        return ""
    rows = "".join(
        f'<tr data-sink-message="{escape(str(m.get("messageId")))}">{_when(m.get("at"))}'
        + _cell(", ".join(m.get("recipients", [])))
        + _cell(m.get("subject"))
        + _cell(m.get("inReplyTo"))
        + "</tr>"
        for m in reversed(sink[-20:])
    )
    return (
        "<h2>Replies delivered to the demo's SMTP sink</h2><table><tr><th>Received</th><th>To</th>"
        "<th>Subject</th><th>In-Reply-To</th></tr>"
        f"{rows or '<tr><td colspan=4>nothing yet</td></tr>'}</table>"
    )


def render_page(
    items: list[dict[str, Any]],
    mailboxes: list[dict[str, Any]],
    total: int,
    sink: list[dict[str, Any]] | None = None,
) -> str:
    """The whole page; `items` newest first; `sink` is what the demo's SMTP sink received."""
    rows = "".join(
        "<tr>"
        + f'<td class="id"><a href="/items/{escape(str(i.get("id")))}">{escape(str(i.get("id")))}</a></td>'
        + _cell(i.get("mailboxId"))
        + _cell(i.get("direction"))
        + _cell(i.get("subject"))
        + _cell(
            _sender(i)
            if i.get("direction") == "inbound"
            else ", ".join(a.get("address", "") for a in i.get("to") or [])
        )
        + _when(i.get("receivedAt") or i.get("createdAt"))
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
        + _when(m.get("statusUpdatedAt"))
        + "</tr>"
        for m in mailboxes
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox IWD</title><style>{STYLE}</style></head><body>
<h1>Sandbox IWD <small>email API profile v{PROFILE_VERSION}, {total} item(s)</small></h1>
<h2>Mailboxes</h2>
<table><tr><th>Mailbox</th><th>Address</th><th>Inbound</th><th>Outbound</th><th>Updated</th></tr>
{boxes or '<tr><td colspan="5">no mailbox has reported yet</td></tr>'}</table>
{_sink(sink)}
<h2>Email items <small>(newest {len(items)}; open one to see its body or reply)</small></h2>
<table><tr><th>Item</th><th>Mailbox</th><th>Direction</th><th>Subject</th><th>From / To</th><th>Received</th>
<th>Flags</th><th>Attachments</th></tr>
{rows or '<tr><td colspan="8">no items yet</td></tr>'}</table>
</body></html>"""
