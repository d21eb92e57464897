"""A Gmail API v1 emulator on http://127.0.0.1 for google-api-python-client (`api_endpoint`).

Serves the REST shapes the connector uses (protocols.md §1): profile, labels (list, get), messages
(list newest first, paged, `q` with `rfc822msgid:` / `in:sent`; get as raw|metadata|minimal|full;
modify; batchModify; trash), history (startHistoryId, historyTypes, labelId, paging) and the
sender's `messages/send` (JSON raw): the message is kept as sent (our Message-ID included) under
SENT, in the given threadId's thread, and recorded in `sent`. History ids rise with random gaps;
`expire_history()` makes every older startHistoryId answer 404 as Gmail does when history is gone.
Errors carry Google's JSON body (`{"error": {"code", "message", "errors": [{reason}], "status"}}`).

Control surface for tests (Python, not HTTP): `add_message`, `add_label`, `labels_of`, `thread_of`,
`remove`, `label_many` (one history record for many messages, as a bulk change), `forget_date`,
`expire_history`, `fail_next` (429 with Retry-After, 500, 401, 403 reasons, a message),
`drop_next_send` (read a send, keep it or not, close the connection unanswered: the client cannot
know the outcome), `sent`, `tokens` (the Bearer tokens accepted), `requests` (method, path) in
arrival order and `on_request` (a hook that sees each request before it is answered). Nothing here
imports the connector.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.peers.threaded import ThreadedPeer

SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT")
_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_DEFAULT_REASON = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
DROP = -1  # a status meaning: close the connection without answering


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    internal_date: int | None  # epoch ms; None: Gmail gives no internalDate
    labels: set[str]
    history_id: int


@dataclass
class HistoryRecord:
    id: int
    kind: str  # messageAdded | labelAdded | labelRemoved
    message_id: str
    thread_id: str
    labels_after: frozenset[str]
    changed: tuple[str, ...] = ()


@dataclass
class Fault:
    status: int
    reason: str
    retry_after: str | None = None
    path_contains: str = ""
    message: str = "Injected fault"
    query_contains: str = ""


@dataclass
class SentMessage:
    """One messages.send Gmail accepted: the raw bytes as received, parsed, and who it went to."""

    id: str
    thread_id: str
    raw: bytes
    message: EmailMessage
    recipients: list[str]
    thread_requested: str | None


@dataclass
class _State:
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)
    history_id: int = 1000
    history_floor: int = 0


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = raw.find(b"\n\n"), 2
    return raw if end < 0 else raw[: end + sep]


def parse_headers(raw: bytes) -> list[dict[str, str]]:
    text = header_block(raw).decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", text)
    out = []
    for line in unfolded.splitlines():
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            out.append({"name": name, "value": value.strip()})
    return out


class GmailEmulator(ThreadedPeer):
    """One Gmail account for any `users/{u}` (`me` or the address). Use as a context manager."""

    peer_name = "gmail emulator"

    def __init__(self, *, address: str = "support@example.com", seed: int = 7) -> None:
        self.address = address
        self.tokens: set[str] = {"test-token"}
        self.requests: list[tuple[str, str]] = []
        self.faults: deque[Fault] = deque()
        self.drops: deque[bool] = deque()  # per coming send: keep it before dropping the connection?
        self.sent: list[SentMessage] = []
        # called (method, path, JSON body) before each API request is answered, outside the lock
        self.on_request: Callable[[str, str, Any], None] | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._state = _State()
        self._next_id = 0x18C0000000000000 + seed
        self._clock_ms = 1_767_225_600_000  # 2026-01-01, +1 s per message unless told
        for name in SYSTEM_LABELS:
            self._state.labels[name] = {"id": name, "name": name, "type": "system"}
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), self._handler()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # ------------------------------------------------------------------ control surface

    def add_label(self, name: str) -> str:
        with self._lock:
            label_id = f"Label_{len(self._state.labels) + 1}"
            self._state.labels[label_id] = {"id": label_id, "name": name, "type": "user"}
            return label_id

    def add_message(
        self,
        raw: bytes,
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
        *,
        internal_date_ms: int | None = None,
        thread_id: str | None = None,
    ) -> str:
        """Delivers `raw` with `labels`; records a messageAdded history entry. Returns the id."""
        with self._lock:
            return self._store(raw, labels, internal_date_ms, thread_id).id

    def thread_of(self, msg_id: str) -> str:
        with self._lock:
            return self._state.messages[msg_id].thread_id

    def labels_of(self, msg_id: str) -> set[str]:
        with self._lock:
            return set(self._state.messages[msg_id].labels)

    def remove(self, msg_id: str) -> None:
        """Deletes a message for good (as a user emptying the trash would)."""
        with self._lock:
            self._state.messages.pop(msg_id, None)
            self._bump()

    def label_many(self, ids: list[str], label: str) -> int:
        """Adds `label` to every message of `ids` in one operation: ONE history record (one id)
        carrying them all, as Gmail reports a bulk change. Returns the record's id."""
        with self._lock:
            hid = self._bump()
            for msg_id in ids:
                msg = self._state.messages[msg_id]
                if label not in msg.labels:
                    msg.labels.add(label)
                    self._record("labelAdded", msg, hid, (label,))
            return hid

    def forget_date(self, msg_id: str) -> None:
        """The message comes without internalDate from now on."""
        with self._lock:
            self._state.messages[msg_id].internal_date = None

    def expire_history(self) -> None:
        """Every startHistoryId older than now answers 404 from then on."""
        with self._lock:
            self._state.history_floor = self._state.history_id

    def fail_next(
        self,
        status: int,
        *,
        reason: str | None = None,
        count: int = 1,
        retry_after: str | None = None,
        path_contains: str = "",
        message: str = "Injected fault",
        query_contains: str = "",
    ) -> None:
        for _ in range(count):
            self.faults.append(
                Fault(
                    status,
                    reason or _DEFAULT_REASON.get(status, "error"),
                    retry_after,
                    path_contains,
                    message,
                    query_contains,
                )
            )

    def drop_next_send(self, *, keep: bool = True, count: int = 1) -> None:
        """The next sends are read in full, kept as sent (`keep`) or not, and left unanswered."""
        self.drops.extend([keep] * count)

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if (method is None or m == method) and contains in p)

    @property
    def history_id(self) -> int:
        with self._lock:
            return self._state.history_id

    # ------------------------------------------------------------------ model (lock held)

    def _store(
        self, raw: bytes, labels: tuple[str, ...], internal_date_ms: int | None, thread_id: str | None
    ) -> StoredMessage:
        self._next_id += self._rng.randint(1, 999)
        msg_id = f"{self._next_id:016x}"
        self._clock_ms += 1000
        when = internal_date_ms if internal_date_ms is not None else self._clock_ms
        hid = self._bump()
        msg = StoredMessage(msg_id, thread_id or msg_id, raw, when, set(labels), hid)
        self._state.messages[msg_id] = msg
        self._record("messageAdded", msg, hid)
        return msg

    def _bump(self) -> int:
        self._state.history_id += self._rng.randint(1, 9)
        return self._state.history_id

    def _record(self, kind: str, msg: StoredMessage, hid: int, changed: tuple[str, ...] = ()) -> None:
        rec = HistoryRecord(hid, kind, msg.id, msg.thread_id, frozenset(msg.labels), changed)
        self._state.history.append(rec)
        msg.history_id = hid

    def _change_labels(self, msg: StoredMessage, add: list[str], remove: list[str]) -> None:
        added = tuple(x for x in add if x not in msg.labels)
        removed = tuple(x for x in remove if x in msg.labels and x not in add)
        msg.labels |= set(added)
        msg.labels -= set(removed)
        if added:
            self._record("labelAdded", msg, self._bump(), added)
        if removed:
            self._record("labelRemoved", msg, self._bump(), removed)

    def _message_json(self, msg: StoredMessage, fmt: str, wanted: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": msg.id,
            "threadId": msg.thread_id,
            "labelIds": sorted(msg.labels),
            "snippet": "",
            "historyId": str(msg.history_id),
            "sizeEstimate": len(msg.raw),
        }
        if msg.internal_date is not None:
            out["internalDate"] = str(msg.internal_date)
        if fmt == "raw":
            out["raw"] = base64.urlsafe_b64encode(msg.raw).decode()
        elif fmt in ("metadata", "full"):
            headers = parse_headers(msg.raw)
            if fmt == "metadata" and wanted:
                low = {w.lower() for w in wanted}
                headers = [h for h in headers if h["name"].lower() in low]
            out["payload"] = {"mimeType": "message/rfc822", "headers": headers}
            if fmt == "full":
                body = msg.raw[len(header_block(msg.raw)) :]
                out["payload"]["body"] = {"size": len(body), "data": base64.urlsafe_b64encode(body).decode()}
        return out

    # ------------------------------------------------------------------ API (lock held)

    def _dispatch(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        one = {k: v[-1] for k, v in query.items()}
        s = self._state
        if parts == ["profile"] and method == "GET":
            threads = {m.thread_id for m in s.messages.values()}
            return 200, {
                "emailAddress": self.address,
                "messagesTotal": len(s.messages),
                "threadsTotal": len(threads),
                "historyId": str(s.history_id),
            }
        if parts == ["labels"] and method == "GET":
            return 200, {"labels": list(s.labels.values())}
        if len(parts) == 2 and parts[0] == "labels" and method == "GET":
            label = s.labels.get(parts[1])
            return (200, label) if label else _error(404, "notFound", "Requested entity was not found.")
        if parts == ["messages"] and method == "GET":
            return self._list(query, one)
        if parts == ["messages", "send"] and method == "POST":
            return self._send(body)
        if parts == ["messages", "batchModify"] and method == "POST":
            return self._batch_modify(body)
        if parts == ["history"] and method == "GET":
            return self._history(query, one)
        if len(parts) >= 2 and parts[0] == "messages":
            msg = s.messages.get(parts[1])
            if msg is None:
                return _error(404, "notFound", "Requested entity was not found.")
            if len(parts) == 2 and method == "GET":
                return 200, self._message_json(
                    msg, one.get("format", "full"), query.get("metadataHeaders", [])
                )
            if parts[2:] == ["modify"] and method == "POST":
                add, remove = body.get("addLabelIds", []), body.get("removeLabelIds", [])
                bad = [x for x in [*add, *remove] if x not in s.labels]
                if bad:
                    return _error(400, "invalidArgument", f"Invalid label: {bad[0]}")
                self._change_labels(msg, add, remove)
                return 200, self._message_json(msg, "minimal", [])
            if parts[2:] == ["trash"] and method == "POST":
                self._change_labels(msg, ["TRASH"], ["INBOX"])
                return 200, self._message_json(msg, "minimal", [])
        return _error(404, "notFound", "Not Found")

    def _send(self, body: Any) -> tuple[int, Any]:
        """messages.send with JSON raw, as Gmail checks it: a payload, recipients, a known thread."""
        encoded = body.get("raw") if isinstance(body, dict) else None
        if not isinstance(encoded, str) or not encoded:
            return _error(
                400,
                "invalidArgument",
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
            )
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, binascii.Error):
            return _error(400, "invalidArgument", "Invalid value for ByteString")
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        named = [str(v) for h in ("To", "Cc", "Bcc") for v in parsed.get_all(h, [])]
        recipients = [address for _, address in getaddresses(named) if address]
        if not recipients:
            return _error(400, "invalidArgument", "Recipient address required")
        bad = [a for a in recipients if "@" not in a]
        if bad:
            return _error(400, "invalidArgument", f"Invalid To header: {bad[0]}")
        requested = body.get("threadId")
        if requested and not any(m.thread_id == requested for m in self._state.messages.values()):
            return _error(404, "notFound", "Requested entity was not found.")
        msg = self._store(raw, ("SENT",), None, requested or None)
        self.sent.append(SentMessage(msg.id, msg.thread_id, raw, parsed, recipients, requested))
        return 200, {"id": msg.id, "threadId": msg.thread_id, "labelIds": ["SENT"]}

    def _matches(self, msg: StoredMessage, terms: list[str]) -> bool:
        for term in terms:
            if term.startswith("rfc822msgid:"):
                wanted = term.split(":", 1)[1].strip("<>")
                headers = parse_headers(msg.raw)
                ids = [h["value"].strip("<>") for h in headers if h["name"].lower() == "message-id"]
                if wanted not in ids:
                    return False
            elif term == "in:sent" and "SENT" not in msg.labels:
                return False
        return True

    def _list(self, query: dict[str, list[str]], one: dict[str, str]) -> tuple[int, Any]:
        wanted = set(query.get("labelIds", []))
        hidden = set() if one.get("includeSpamTrash") == "true" else {"SPAM", "TRASH"}
        terms = one.get("q", "").split()
        unknown = [t for t in terms if not t.startswith("rfc822msgid:") and t != "in:sent"]
        if unknown:  # the emulator's limit, not Gmail's: fail loudly rather than match everything
            return _error(400, "invalidArgument", f"emulator: unsupported search term {unknown[0]}")
        found = [
            m
            for m in self._state.messages.values()
            if wanted <= m.labels and not (hidden & m.labels) and self._matches(m, terms)
        ]
        found.sort(key=lambda m: (m.internal_date or 0, m.id), reverse=True)  # newest first
        start = int(one.get("pageToken", "0") or 0)
        size = min(int(one.get("maxResults", "100")), 500)
        page = found[start : start + size]
        out: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            out["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            out["nextPageToken"] = str(start + size)
        return 200, out

    def _batch_modify(self, body: Any) -> tuple[int, Any]:
        add, remove = body.get("addLabelIds", []), body.get("removeLabelIds", [])
        bad = [x for x in [*add, *remove] if x not in self._state.labels]
        if bad:
            return _error(400, "invalidArgument", f"Invalid label: {bad[0]}")
        if len(body.get("ids", [])) > 1000:
            return _error(400, "invalidArgument", "Too many ids")
        for msg_id in body.get("ids", []):
            msg = self._state.messages.get(msg_id)
            if msg is not None:  # Gmail ignores ids it does not know (INF)
                self._change_labels(msg, add, remove)
        return 204, None

    def _history(self, query: dict[str, list[str]], one: dict[str, str]) -> tuple[int, Any]:
        if "startHistoryId" not in one:
            return _error(400, "invalidArgument", "startHistoryId is required")
        start = int(one["startHistoryId"])
        if start < self._state.history_floor or start > self._state.history_id:
            return _error(404, "notFound", "Requested entity was not found.")
        types = set(query.get("historyTypes", [])) or {"messageAdded", "labelAdded", "labelRemoved"}
        label = one.get("labelId")
        recs = [
            r
            for r in self._state.history
            if r.id > start
            and r.kind in types
            and (label is None or label in r.labels_after or label in r.changed)
        ]
        grouped: list[list[HistoryRecord]] = []  # one record (one id) may carry many messages
        for r in recs:
            if grouped and grouped[-1][0].id == r.id:
                grouped[-1].append(r)
            else:
                grouped.append([r])
        offset = int(one.get("pageToken", "0") or 0)
        size = min(int(one.get("maxResults", "100")), 500)
        page = grouped[offset : offset + size]
        out: dict[str, Any] = {"historyId": str(self._state.history_id)}
        if page:
            out["history"] = [_history_json(g) for g in page]
        if offset + size < len(grouped):
            out["nextPageToken"] = str(offset + size)
        return 200, out

    # ------------------------------------------------------------------ HTTP

    def _handle(self, method: str, path: str, auth: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        url = urlsplit(path)
        if self.on_request is not None:
            with contextlib.suppress(ValueError):
                self.on_request(method, url.path, json.loads(body) if body else None)
        with self._lock:
            self.requests.append((method, url.path))
            fault = next(
                (f for f in self.faults if f.path_contains in url.path and f.query_contains in url.query),
                None,
            )
            if fault is not None:
                self.faults.remove(fault)
                status, payload = _error(fault.status, fault.reason, fault.message)
                return status, payload, {"Retry-After": fault.retry_after} if fault.retry_after else {}
            token = auth[7:] if auth.startswith("Bearer ") else ""
            if token not in self.tokens:
                status, payload = _error(401, "authError", "Invalid Credentials", location="Authorization")
                return status, payload, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
            m = re.fullmatch(r"/gmail/v1/users/([^/]+)/(.+)", url.path)
            if not m or m.group(1) not in ("me", self.address):
                status, payload = _error(404, "notFound", "Not Found")
                return status, payload, {}
            try:
                data = json.loads(body) if body else {}
            except ValueError:
                status, payload = _error(400, "parseError", "Parse Error")
                return status, payload, {}
            parts = m.group(2).split("/")
            if parts == ["messages", "send"] and self.drops:
                if self.drops.popleft():
                    self._dispatch(method, parts, parse_qs(url.query), data)
                return DROP, None, {}
            status, payload = self._dispatch(method, parts, parse_qs(url.query), data)
            return status, payload, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, extra = emu._handle(
                    self.command, self.path, self.headers.get("Authorization", ""), body
                )
                if status == DROP:
                    self.close_connection = True
                    return
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _error(status: int, reason: str, message: str, *, location: str | None = None) -> tuple[int, Any]:
    item: dict[str, Any] = {"message": message, "domain": "global", "reason": reason}
    if reason in ("rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded"):
        item["domain"] = "usageLimits"
    if location:
        item |= {"location": location, "locationType": "header"}
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [item],
            "status": _STATUS_TEXT.get(status, "UNKNOWN"),
        }
    }
    return status, body


def _history_json(group: list[HistoryRecord]) -> dict[str, Any]:
    """One history record: every change that shares its id."""
    out: dict[str, Any] = {"id": str(group[0].id), "messages": []}
    for rec in group:
        message = {"id": rec.message_id, "threadId": rec.thread_id, "labelIds": sorted(rec.labels_after)}
        out["messages"].append({"id": rec.message_id, "threadId": rec.thread_id})
        if rec.kind == "messageAdded":
            out.setdefault("messagesAdded", []).append({"message": message})
        elif rec.kind == "labelAdded":
            out.setdefault("labelsAdded", []).append({"message": message, "labelIds": list(rec.changed)})
        else:
            out.setdefault("labelsRemoved", []).append({"message": message, "labelIds": list(rec.changed)})
    return out
