# ruff: noqa: E501  (the page's CSS and JS read better unwrapped)
"""The admin page: one static HTML document whose small script renders `/api/v1/status` every second.

No framework and no data in the HTML itself: every value is put in with textContent, so nothing a
mailbox or an error message contains can become markup.
"""

from __future__ import annotations

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>iwd-email-connector</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330}
h1{font-size:1.3rem;margin:0 0 .2rem}
#meta{color:#667;margin-bottom:1rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #dde;vertical-align:top}
th{background:#f3f4f8;font-weight:600}
.state{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;font-weight:600;color:#fff;background:#889}
.state-ok{background:#2e7d32}.state-degraded,.state-throttled{background:#b26a00}
.state-auth_required,.state-error,.state-stalled{background:#c62828}.state-disabled{background:#777}
.err{color:#8a1c1c;max-width:28rem;word-break:break-word}
.cause{color:#8a4b00;font-size:.85rem;margin-top:.15rem}
button{margin:0 .2rem .2rem 0;font:inherit;padding:.1rem .45rem;cursor:pointer}
#notice{min-height:1.3rem;color:#245}
</style></head>
<body>
<h1>iwd-email-connector</h1>
<div id="meta">loading…</div>
<div id="notice" role="status"></div>
<table><thead><tr>
<th>Mailbox</th><th>Inbound</th><th>Outbound</th><th>Last success</th><th>Lag</th><th>Backlog</th>
<th>Quarantine</th><th>Delivered</th><th>Last error</th><th>Owner</th><th>Actions</th>
</tr></thead><tbody id="rows"></tbody></table>
<script>
"use strict";
const STATUS = "__STATUS__", HEADER = "__HEADER__";
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? Math.round(s) + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}
const PEERS = {iwd: "IWD", mail_server: "mail server", store: "local store"};
function lasted(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
}
function stateCell(d, id, dir) {
  const td = el("td");
  const span = el("span", d.state, "state state-" + d.state);
  span.dataset.mailbox = id; span.dataset.direction = dir; span.dataset.state = d.state;
  td.appendChild(span);
  const e = d.lastError;
  if (d.state !== "ok" && d.state !== "disabled" && e) {  // whose outage, and for how long
    const cause = el("div", (e.peer ? PEERS[e.peer] + " failing" : e.code) + " for " + lasted(e.since || e.at), "cause");
    cause.dataset.peer = e.peer || "";
    td.appendChild(cause);
  }
  return td;
}
async function act(id, verb) {
  const notice = document.getElementById("notice");
  try {
    const r = await fetch("/api/v1/mailboxes/" + encodeURIComponent(id) + "/" + verb,
      {method: "POST", headers: {[HEADER]: "1"}, credentials: "same-origin"});
    const body = await r.json();
    notice.textContent = r.ok ? id + ": " + verb + " done" + (body.tried !== undefined ? " (" + body.delivered + "/" + body.tried + " delivered)" : "")
                              : id + ": " + verb + " refused: " + body.message;
    notice.dataset.last = id + ":" + verb + ":" + r.status;
  } catch (e) { notice.textContent = id + ": " + verb + " failed: " + e; }
  refresh();
}
function button(id, verb, label) {
  const b = el("button", label);
  b.type = "button"; b.dataset.action = verb; b.dataset.mailbox = id;
  b.addEventListener("click", () => act(id, verb));
  return b;
}
async function refresh() {
  let doc;
  try {
    const r = await fetch(STATUS, {credentials: "same-origin", cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    doc = await r.json();
  } catch (e) { document.getElementById("meta").textContent = "cannot read status: " + e; return; }
  document.getElementById("meta").textContent = "version " + doc.version + " · " + doc.mailboxes.length +
    " mailbox(es) · updated " + new Date().toLocaleTimeString();
  const rows = document.getElementById("rows");
  const frag = document.createDocumentFragment();
  for (const m of doc.mailboxes) {
    const i = m.inbound, tr = el("tr");
    tr.dataset.mailbox = m.mailboxId;
    tr.appendChild(el("td", m.mailboxId + (m.paused ? " (paused)" : "")));
    tr.appendChild(stateCell(i, m.mailboxId, "inbound"));
    tr.appendChild(stateCell(m.outbound, m.mailboxId, "outbound"));
    tr.appendChild(el("td", ago(i.lastSuccessAt)));
    tr.appendChild(el("td", i.lagSeconds === null ? "–" : i.lagSeconds.toFixed(1) + " s"));
    tr.appendChild(el("td", i.backlog));
    tr.appendChild(el("td", i.quarantined));
    tr.appendChild(el("td", i.deliveredTotal));
    tr.appendChild(el("td", i.lastError ? i.lastError.code + ": " + i.lastError.message + " (" + ago(i.lastError.at) + ")" : "–", "err"));
    const owner = el("td", m.owner || "–", "owner");
    if (m.leaseExpiresAt) owner.title = "lease until " + new Date(m.leaseExpiresAt).toLocaleTimeString();
    tr.appendChild(owner);
    const acts = el("td");
    if (!m.running) { acts.textContent = m.owner ? "runs elsewhere" : "not running"; tr.appendChild(acts); frag.appendChild(tr); continue; }
    acts.appendChild(button(m.mailboxId, "poll", "poll now"));
    acts.appendChild(m.paused ? button(m.mailboxId, "resume", "resume") : button(m.mailboxId, "pause", "pause"));
    if (i.quarantined > 0) acts.appendChild(button(m.mailboxId, "retry-quarantine", "retry quarantine"));
    tr.appendChild(acts);
    frag.appendChild(tr);
  }
  rows.replaceChildren(frag);
  document.body.dataset.ready = "1";
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"""


def render_admin_page(status_path: str, action_header: str) -> str:
    return _PAGE.replace("__STATUS__", status_path).replace("__HEADER__", action_header)
