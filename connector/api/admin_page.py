# ruff: noqa: E501  (the page's CSS and JS read better unwrapped)
"""The admin console: one static HTML document whose small script renders the local API.

Views by address fragment: `#` overview (every mailbox, live charts), `#/mailbox/<id>` (what to open
when a mailbox is red), `#/quarantine`, `#/replies`. The current view is re-read every second and
redrawn in place, so scroll position and an open detail survive. No framework, no CDN, no data in
the HTML: every value is put in with textContent, so nothing a message contains can become markup;
charts are inline SVG drawn from numbers.
"""

from __future__ import annotations

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>iwd-email-connector</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem;padding:.7rem 1.2rem;background:#1d2330;color:#fff}
header h1{font-size:1.1rem;margin:0}
header nav a{color:#dfe6ff;margin-right:.9rem;text-decoration:none;font-weight:600;padding:.2rem 0}
header nav a[aria-current=page]{color:#fff;border-bottom:2px solid #9fb7ff}
main{padding:1rem 1.2rem;max-width:1800px}
h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
#meta{color:#556;margin-bottom:.4rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #dde;vertical-align:top}
th{background:#eef0f6;font-weight:600}
.state{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;font-weight:600;color:#fff;background:#5c6370}
.state-ok,.state-sent{background:#1e6b24}.state-degraded,.state-throttled,.state-retrying,.state-queued,.state-sending{background:#8f5500}
.state-auth_required,.state-error,.state-stalled,.state-failed,.state-uncertain{background:#b3261e}.state-disabled{background:#5c6370}
.err{color:#8a1c1c;max-width:32rem;word-break:break-word}
.cause{color:#7a4100;font-size:.85rem;margin-top:.15rem}
.muted{color:#5b6270}
button{margin:0 .2rem .2rem 0;font:inherit;padding:.25rem .6rem;cursor:pointer;border:1px solid #8891a5;border-radius:.3rem;background:#fff;color:#1d2330}
button:hover{background:#eef0f6}
button.danger{border-color:#b3261e;color:#8a1c1c}
:focus-visible{outline:3px solid #2b5fd9;outline-offset:2px}
a{color:#1f4fbf}
#notice{min-height:1.3rem;color:#1e3a66;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:.8rem}
.card{background:#fff;border:1px solid #dde;border-radius:.4rem;padding:.6rem .8rem;min-width:0}
.card h3{margin:0 0 .3rem;font-size:.95rem}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:0}
dl.kv dt{color:#5b6270}dl.kv dd{margin:0;word-break:break-word}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f8;padding:.5rem;max-height:24rem;overflow:auto;font-size:12px}
.confirm{border:2px solid #b3261e;background:#fff5f4;padding:.5rem;margin:.3rem 0;border-radius:.3rem}
svg.chart{width:100%;height:70px;display:block}
.scroll{overflow-x:auto}
@media (max-width:700px){
 main{padding:.6rem}
 table.cards thead{display:none}
 table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:auto}
 table.cards tr{border:1px solid #dde;border-radius:.4rem;margin-bottom:.6rem;background:#fff}
 table.cards td{border:0;padding:.2rem .6rem;display:flex;gap:.6rem;justify-content:space-between}
 table.cards td::before{content:attr(data-label);color:#5b6270;font-weight:600;flex:none}
 table.cards td>*{text-align:right}
}
</style></head>
<body>
<header><h1>iwd-email-connector</h1>
<nav aria-label="views"><a href="#" data-view="overview">Mailboxes</a><a href="#/quarantine" data-view="quarantine">Quarantine</a><a href="#/replies" data-view="replies">Replies</a></nav></header>
<main>
<div id="meta">loading…</div>
<div id="notice" role="status" aria-live="polite"></div>
<div id="view"></div>
</main>
<script>
"use strict";
const STATUS = "__STATUS__", HEADER = "__HEADER__";
const openDetails = new Set();   // ids of <details> a person opened: kept across redraws
const pending = {};              // confirmations on screen, by key
let busy = false;
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function add(parent, ...kids) { for (const k of kids) if (k) parent.appendChild(k); return parent; }
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? Math.round(s) + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleDateString(undefined, {month: "short", day: "numeric"}) + " " + d.toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}
const PEERS = {iwd: "IWD", mail_server: "mail server", store: "local store"};
function lasted(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
}
function td(label, content, cls) {
  const c = el("td", typeof content === "object" && content !== null ? undefined : content, cls);
  if (typeof content === "object" && content !== null) c.appendChild(content);
  c.dataset.label = label;
  return c;
}
function table(headers, rows, cards) {
  const t = el("table", undefined, cards ? "cards" : ""), head = el("thead"), hr = el("tr");
  for (const h of headers) hr.appendChild(el("th", h));
  head.appendChild(hr); t.appendChild(head);
  const body = el("tbody");
  for (const r of rows) body.appendChild(r);
  t.appendChild(body);
  const wrap = el("div", undefined, "scroll"); wrap.appendChild(t);
  return wrap;
}
function statePill(state, id, dir) {
  const span = el("span", state, "state state-" + state);
  if (id) { span.dataset.mailbox = id; span.dataset.direction = dir; }
  span.dataset.state = state;
  return span;
}
function stateBox(d, id, dir) {
  const box = el("div");
  box.appendChild(statePill(d.state, id, dir));
  const e = d.lastError;
  if (d.state !== "ok" && d.state !== "disabled" && e) {  // whose outage, and for how long
    const cause = el("div", (e.peer ? PEERS[e.peer] + " failing" : e.code) + " for " + lasted(e.since || e.at), "cause");
    cause.dataset.peer = e.peer || "";
    box.appendChild(cause);
  }
  return box;
}
async function getJSON(path) {
  const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
async function post(path, label, key) {
  const notice = document.getElementById("notice");
  try {
    const r = await fetch(path, {method: "POST", headers: {[HEADER]: "1"}, credentials: "same-origin"});
    const body = await r.json();
    notice.textContent = r.ok ? label + " done" + (body.tried !== undefined ? " (" + body.delivered + "/" + body.tried + " delivered)" : "") + (body.detail ? ": " + body.detail : "")
                              : label + " refused: " + body.message;
    notice.dataset.last = key + ":" + r.status;
  } catch (e) { notice.textContent = label + " failed: " + e; }
  refresh();
}
function button(label, onClick, data, cls) {
  const b = el("button", label, cls);
  b.type = "button";
  Object.assign(b.dataset, data || {});
  b.addEventListener("click", onClick);
  return b;
}
function act(id, verb) { return post("/api/v1/mailboxes/" + encodeURIComponent(id) + "/" + verb, id + ": " + verb, id + ":" + verb); }
function mailboxButtons(m) {
  const acts = el("div");
  if (!m.running) { acts.textContent = "not running"; return acts; }
  const id = m.mailboxId;
  acts.appendChild(button("poll now", () => act(id, "poll"), {action: "poll", mailbox: id}));
  acts.appendChild(m.paused ? button("resume", () => act(id, "resume"), {action: "resume", mailbox: id})
                            : button("pause", () => act(id, "pause"), {action: "pause", mailbox: id}));
  if (m.inbound.quarantined > 0) acts.appendChild(button("retry quarantine", () => act(id, "retry-quarantine"), {action: "retry-quarantine", mailbox: id}));
  return acts;
}
function details(key, summary, build) {
  const d = el("details"); d.dataset.key = key;
  d.open = openDetails.has(key);
  d.addEventListener("toggle", () => { if (d.open) openDetails.add(key); else openDetails.delete(key); });
  d.appendChild(el("summary", summary));
  build(d);
  return d;
}
function kv(pairs) {
  const dl = el("dl", undefined, "kv");
  for (const [k, v] of pairs) { dl.appendChild(el("dt", k)); const dd = el("dd"); if (v instanceof Node) dd.appendChild(v); else dd.textContent = v === null || v === undefined || v === "" ? "–" : String(v); dl.appendChild(dd); }
  return dl;
}
// ---------------------------------------------------------------- charts (inline SVG)
function chart(title, values, unit) {
  const card = el("div", undefined, "card"), W = 300, H = 70;
  const nums = values.map(v => v === null ? null : Number(v));
  const max = Math.max(1e-9, ...nums.filter(v => v !== null));
  const last = [...nums].reverse().find(v => v !== null);
  card.appendChild(el("h3", title + ": " + (last === undefined ? "–" : (Math.round(last * 10) / 10) + " " + unit)));
  const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart"); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title + " over the last hour, per minute; peak " + Math.round(max * 10) / 10 + " " + unit);
  const step = W / Math.max(nums.length - 1, 1);
  let d = "", pen = false;
  nums.forEach((v, i) => { if (v === null) { pen = false; return; } const x = i * step, y = H - 4 - (v / max) * (H - 8); d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1); pen = true; });
  const base = document.createElementNS(ns, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", W); base.setAttribute("y1", H - 2); base.setAttribute("y2", H - 2); base.setAttribute("stroke", "#c8ccd8");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d || "M0 " + (H - 4)); path.setAttribute("fill", "none"); path.setAttribute("stroke", "#2b5fd9"); path.setAttribute("stroke-width", "2");
  path.setAttribute("vector-effect", "non-scaling-stroke");
  svg.appendChild(base); svg.appendChild(path);
  card.appendChild(svg);
  card.appendChild(el("div", "last 60 min · peak " + Math.round(max * 10) / 10 + " " + unit, "muted"));
  return card;
}
function charts(series, title) {
  const g = el("div", undefined, "grid"); g.dataset.charts = title;
  g.appendChild(chart("Items/min " + title, series.itemsPerMinute, "/min"));
  g.appendChild(chart("Detection lag " + title, series.lagSeconds, "s"));
  g.appendChild(chart("IWD latency " + title, series.iwdLatencyMs, "ms"));
  return g;
}
// ---------------------------------------------------------------- views
async function overview() {
  const [doc, ch] = await Promise.all([getJSON(STATUS), getJSON("/api/v1/charts")]);
  document.getElementById("meta").textContent = "version " + doc.version + " · " + doc.mailboxes.length + " mailbox(es) · updated " + new Date().toLocaleTimeString();
  const rows = doc.mailboxes.map(m => {
    const i = m.inbound, tr = el("tr"), link = el("a", m.mailboxId + (m.paused ? " (paused)" : ""));
    link.href = "#/mailbox/" + encodeURIComponent(m.mailboxId); link.dataset.mailboxLink = m.mailboxId;
    tr.dataset.mailbox = m.mailboxId;
    add(tr, td("Mailbox", link), td("Inbound", stateBox(i, m.mailboxId, "inbound")), td("Outbound", stateBox(m.outbound, m.mailboxId, "outbound")),
      td("Last success", ago(i.lastSuccessAt)), td("Lag", i.lagSeconds === null ? "–" : i.lagSeconds.toFixed(1) + " s"),
      td("Backlog", i.backlog), td("Quarantine", i.quarantined), td("Delivered", i.deliveredTotal),
      td("Last error", i.lastError ? i.lastError.code + ": " + i.lastError.message + " (" + ago(i.lastError.at) + ")" : "–", "err"),
      td("Actions", mailboxButtons(m)));
    return tr;
  });
  const frag = document.createDocumentFragment();
  add(frag, table(["Mailbox", "Inbound", "Outbound", "Last success", "Lag", "Backlog", "Quarantine", "Delivered", "Last error", "Actions"], rows, true),
    el("h2", "All mailboxes, last hour"), charts(ch.series["*"], "(all)"));
  return frag;
}
async function mailboxView(id) {
  const [d, ch] = await Promise.all([getJSON("/api/v1/mailboxes/" + encodeURIComponent(id)), getJSON("/api/v1/charts?mailbox=" + encodeURIComponent(id))]);
  const m = d.status, i = m.inbound;
  document.getElementById("meta").textContent = "mailbox " + id + " · updated " + new Date().toLocaleTimeString();
  const frag = document.createDocumentFragment();
  const top = el("div", undefined, "grid");
  const stateCard = el("div", undefined, "card"); stateCard.dataset.section = "state";
  add(stateCard, el("h3", "State"), kv([["inbound", stateBox(i, id, "inbound")], ["outbound", stateBox(m.outbound, id, "outbound")],
    ["cause", i.lastError && i.state !== "ok" ? i.lastError.code + ": " + i.lastError.message : (i.state === "ok" ? "all peers answer" : "–")],
    ["last success", ago(i.lastSuccessAt)], ["lag", i.lagSeconds === null ? "–" : i.lagSeconds.toFixed(1) + " s"],
    ["backlog", i.backlog], ["quarantined", i.quarantined], ["delivered", i.deliveredTotal],
    ...(m.owner !== undefined ? [["owner (replica)", m.owner || "none"], ["lease expires", when(m.leaseExpiresAt)]] : [])]));
  const actions = mailboxButtons(m);
  if (m.running) actions.appendChild(button("re-check connection", () => post("/api/v1/mailboxes/" + encodeURIComponent(id) + "/check", id + ": check", id + ":check"), {action: "check", mailbox: id}));
  stateCard.appendChild(actions);
  const cfg = el("div", undefined, "card");
  add(cfg, el("h3", "Effective configuration (secrets hidden)"), details("cfg:" + id, "show", det => det.appendChild(el("pre", JSON.stringify(d.config, null, 2)))));
  add(top, stateCard, cfg);
  frag.appendChild(top);
  frag.appendChild(el("h2", "Folders"));
  frag.appendChild(table(["Folder", "Cursor (UIDVALIDITY:UID or sync token)", "Last fetch", "Backlog"], d.folders.map(f => add(el("tr"), td("Folder", f.name), td("Cursor", f.cursor || "none yet"), td("Last fetch", when(f.lastFetchAt)), td("Backlog", f.backlog))), true));
  frag.appendChild(el("h2", "State timeline (24 h)"));
  const tl = d.timeline.length ? d.timeline.map(c => add(el("tr"), td("When", when(c.at)), td("Direction", c.direction), td("State", statePill(c.state)), td("Cause", c.cause || "–", "err")))
                               : [add(el("tr"), td("When", "no change since the daemon started"))];
  const tlTable = table(["When", "Direction", "State", "Cause"], tl, true); tlTable.dataset.section = "timeline";
  frag.appendChild(tlTable);
  frag.appendChild(el("h2", "Last hour"));
  frag.appendChild(charts(ch.series[id], "(" + id + ")"));
  frag.appendChild(el("h2", "Last errors"));
  frag.appendChild(table(["When", "Direction", "Code", "Message", "Folder", "UID", "IWD request"], d.errors.map(e => add(el("tr"), td("When", when(e.at)), td("Direction", e.direction), td("Code", e.code), td("Message", e.message, "err"),
    td("Folder", e.context.folder || "–"), td("UID", e.context.uid || e.context.provider_id || "–"), td("IWD request", e.context.request_id || "–"))), true));
  frag.appendChild(el("h2", "Last 50 deliveries"));
  const dv = table(["When", "Subject", "externalId", "IWD item", "Latency"], d.deliveries.map(x => add(el("tr"), td("When", when(x.at)), td("Subject", x.subject), td("externalId", x.externalId),
    td("IWD item", x.iwdItemId || "–"), td("Latency", x.lagSeconds === null ? "–" : x.lagSeconds.toFixed(1) + " s"))), true);
  dv.dataset.section = "deliveries";
  frag.appendChild(dv);
  return frag;
}
async function quarantineView() {
  const doc = await getJSON("/api/v1/quarantine");
  document.getElementById("meta").textContent = doc.entries.length + " quarantined message(s) · updated " + new Date().toLocaleTimeString();
  const frag = document.createDocumentFragment();
  if (!doc.entries.length) { frag.appendChild(el("p", "Nothing is quarantined.")); return frag; }
  const shown = await Promise.all(doc.entries.filter(e => openDetails.has("q:" + e.id)).map(e => getJSON("/api/v1/quarantine/" + e.id)));
  const full = Object.fromEntries(shown.map(s => [s.id, s]));
  const rows = doc.entries.map(e => {
    const tr = el("tr"); tr.dataset.entry = e.id;
    const acts = el("div");
    const q = "/api/v1/quarantine/" + e.id;
    acts.appendChild(button("retry", () => post(q + "/retry", "entry " + e.id + ": retry", "q" + e.id + ":retry"), {action: "retry", entry: e.id}));
    const dl = el("a", "download .eml"); dl.href = q + "/raw"; dl.dataset.download = e.id; dl.setAttribute("download", "quarantine-" + e.id + ".eml");
    acts.appendChild(dl);
    acts.appendChild(el("span", " "));
    acts.appendChild(confirmable("deliver as unparseable", "q" + e.id + ":unparseable",
      "The item reaches IWD flagged unparseable with the raw .eml attached; it will not be converted again.",
      () => post(q + "/deliver-unparseable", "entry " + e.id + ": deliver as unparseable", "q" + e.id + ":deliver-unparseable"), {action: "deliver-unparseable", entry: e.id}));
    const more = details("q:" + e.id, "show", det => {
      const s = full[e.id];
      if (!s) { det.appendChild(el("p", "loading…")); return; }
      det.appendChild(kv([["why it is held", s.reason], ["provider id", s.providerId], ["size", s.sizeText]]));
      det.appendChild(el("h3", "Headers"));
      det.appendChild(el("pre", s.headers.map(h => h[0] + ": " + h[1]).join("\\n")));
      det.appendChild(el("h3", "Raw source" + (s.rawTruncated ? " (first 64 KiB)" : "")));
      det.appendChild(el("pre", s.rawPreview));
    });
    more.addEventListener("toggle", () => { if (more.open && !full[e.id]) refresh(); });
    add(tr, td("Id", e.id), td("Mailbox", e.mailboxId + " / " + e.folder), td("Subject", e.subject || "(none)"), td("Reason", e.reason, "err"),
      td("Attempts", e.attempts + " of " + e.maxAttempts), td("Next retry", e.nextRetryAt ? when(e.nextRetryAt) : "on retry"), td("Size", e.size + " B"), td("Actions", acts), td("Detail", more));
    return tr;
  });
  frag.appendChild(table(["Id", "Mailbox / folder", "Subject", "Reason", "Attempts", "Next retry", "Size", "Actions", "Detail"], rows, true));
  return frag;
}
function confirmable(label, key, risk, go, data) {
  const box = el("div");
  if (!pending[key]) { box.appendChild(button(label, () => { pending[key] = true; refresh(); }, data, "danger")); return box; }
  const c = el("div", undefined, "confirm"); c.setAttribute("role", "alertdialog"); c.dataset.confirm = key;
  c.appendChild(el("p", risk));
  c.appendChild(button("yes, " + label, () => { delete pending[key]; go(); }, {confirm: key}, "danger"));
  c.appendChild(button("cancel", () => { delete pending[key]; refresh(); }, {cancel: key}));
  box.appendChild(c);
  return box;
}
async function repliesView() {
  const doc = await getJSON("/api/v1/outbox");
  const frag = document.createDocumentFragment();
  if (!doc.running) { document.getElementById("meta").textContent = "the outbox is not running"; return frag; }
  const total = doc.groups.reduce((n, g) => n + g.replies.length, 0);
  document.getElementById("meta").textContent = total + " reply(ies) · updated " + new Date().toLocaleTimeString();
  for (const g of doc.groups) {
    if (!g.replies.length) continue;
    const h = el("h2"); add(h, statePill(g.state), el("span", " " + g.replies.length)); frag.appendChild(h);
    const rows = g.replies.map(r => {
      const tr = el("tr"); tr.dataset.reply = r.id; tr.dataset.state = r.state;
      const acts = el("div");
      const base = "/api/v1/outbox/" + encodeURIComponent(r.id);
      if (r.state === "uncertain") {
        acts.appendChild(confirmable("mark sent", r.id + ":mark-sent", "Only if the customer has it (check the Sent folder or ask): if it never arrived, the customer gets no reply at all.",
          () => post(base + "/mark-sent", r.id + ": mark sent", r.id + ":mark-sent"), {action: "mark-sent", reply: r.id}));
        acts.appendChild(confirmable("send again", r.id + ":send-again", "If the first copy did arrive, the customer receives this reply twice.",
          () => post(base + "/send-again", r.id + ": send again", r.id + ":send-again"), {action: "send-again", reply: r.id}));
      } else if (r.state === "failed" || r.state === "retrying") {
        acts.appendChild(confirmable("send again", r.id + ":send-again", "The server refused it before; it is sent to the recipients that did not accept it.",
          () => post(base + "/send-again", r.id + ": send again", r.id + ":send-again"), {action: "send-again", reply: r.id}));
      }
      const server = r.lastError ? r.lastError.code + ": " + r.lastError.message : (r.recipients.map(x => x.address + " " + (x.code || "") + " " + (x.message || "")).join("; ") || "–");
      const thread = details("r:" + r.id, "threading", det => det.appendChild(kv([["Message-ID", r.messageId], ["In-Reply-To", r.inReplyTo], ["References", (r.references || []).join(" ")], ["replies to IWD item", r.inReplyToItemId], ["phase", r.phase]])));
      add(tr, td("Reply", r.id), td("Mailbox", r.mailboxId), td("To", r.to.join(", ")), td("Subject", r.subject), td("Attempts", r.attempts),
        td("Server said", server, "err"), td("Updated", when(r.updatedAt)), td("Thread", thread), td("Actions", acts));
      return tr;
    });
    frag.appendChild(table(["Reply", "Mailbox", "To", "Subject", "Attempts", "Server said", "Updated", "Thread", "Actions"], rows, true));
  }
  if (!total) frag.appendChild(el("p", "No replies yet."));
  return frag;
}
function route() {
  const h = location.hash.replace(/^#/, "");
  if (h.startsWith("/mailbox/")) return ["mailbox", decodeURIComponent(h.slice(9))];
  if (h === "/quarantine") return ["quarantine"];
  if (h === "/replies") return ["replies"];
  return ["overview"];
}
async function refresh() {
  if (busy) return;
  busy = true;
  const [view, arg] = route();
  for (const a of document.querySelectorAll("nav a")) { if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current"); }
  try {
    const frag = view === "mailbox" ? await mailboxView(arg) : view === "quarantine" ? await quarantineView() : view === "replies" ? await repliesView() : await overview();
    const focused = document.activeElement, focusKey = focused && focused.dataset ? JSON.stringify(focused.dataset) : null, focusTag = focused ? focused.tagName : null;
    document.getElementById("view").replaceChildren(frag);
    if (focusKey && focusKey !== "{}") {  // keyboard users keep their place across redraws
      for (const e of document.querySelectorAll("#view " + focusTag)) if (JSON.stringify(e.dataset) === focusKey) { e.focus({preventScroll: true}); break; }
    }
    document.body.dataset.ready = "1"; document.body.dataset.view = view;
    if (window.firstRenderMs === undefined) window.firstRenderMs = performance.now();  // bench/console_bench.py
  } catch (e) { document.getElementById("meta").textContent = "cannot read the daemon: " + e; }
  finally { busy = false; }
}
window.addEventListener("hashchange", () => { document.body.dataset.ready = ""; refresh(); });
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"""


def render_admin_page(status_path: str, action_header: str) -> str:
    return _PAGE.replace("__STATUS__", status_path).replace("__HEADER__", action_header)
