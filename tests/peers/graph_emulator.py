"""A Microsoft Graph mail emulator on http://127.0.0.1 (stdlib only; imports nothing under test).

Serves under `/v1.0/users/{user}`: `mailFolders` (list, `$filter=displayName eq '…'`, get by id or
well-known name, `childFolders`), `mailFolders/{f}/messages/delta` (`Prefer: odata.maxpagesize`,
opaque `$skiptoken` / `$deltatoken` links, `@removed` for mail that left the folder, optional empty
pages), `messages/{id}` (GET with `$select`, PATCH isRead), `messages/{id}/$value` and
`messages/{id}/move` (201), `sendMail` in MIME form (`text/plain`, base64; 202 with an empty body,
the message filed in Sent Items unless `save_sent = False`) and `mailFolders/{f}/messages` with
`$filter=internetMessageId eq '…'`. Ids are immutable when the request says `Prefer: IdType="ImmutableId"`;
otherwise a message's id changes on every move, as in Exchange.

Errors use Graph's body `{"error": {"code", "message", "innerError": {"request-id", "date"}}}`.
Control surface for tests: `add_message`, `add_folder`, `move_by_user`, `delete_by_user`, `message`,
`fail_next` (status, code, Retry-After, for the next N matching requests), `drop_next` (read the
request, optionally act on it, then close the connection without answering), `garble_next` (answer
200 with a body that claims gzip but is not, which the client cannot decode), `link_base` (how
delta links spell the endpoint; `url` unless set), `sent` (every message
sendMail accepted: raw MIME, parsed headers, recipients), `expire_sync_state`
(410 Gone with Location, or 400 syncStateNotFound / resyncRequired), `tokens` (accepted bearer
tokens, or `accept_token` as a predicate), `max_in_flight` (concurrency the client reached).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.message
import email.utils
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.peers.threaded import ThreadedPeer

WELL_KNOWN = ("inbox", "archive", "deleteditems", "junkemail", "sentitems", "drafts")
DISPLAY = {
    "inbox": "Inbox",
    "archive": "Archive",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
}
DEFAULT_PAGE_SIZE = 10
NOT_FOUND = ("ErrorItemNotFound", "The specified object was not found in the store.")


def _new_id(prefix: str) -> str:
    return f"AAMk{prefix}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}="


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None = None
    well_known: str | None = None


@dataclass
class Message:
    immutable_id: str
    rest_id: str
    folder: str
    raw: bytes
    received: datetime
    is_read: bool = False
    is_draft: bool = False
    conversation_id: str = field(default_factory=lambda: _new_id("CONV"))

    def header(self, name: str) -> str:
        value = email.message_from_bytes(self.raw).get(name)
        return str(value) if value is not None else ""


@dataclass
class Fault:
    status: int
    code: str
    times: int = 1
    retry_after: str | None = None
    match: str | None = None  # substring of "METHOD path"
    message: str | None = None  # Graph's error text; "Injected <code>." when None


@dataclass
class Drop:
    """Close the connection without an answer; `accept` first acts on the request (sendMail: sent)."""

    match: str
    accept: bool = True
    times: int = 1


@dataclass
class SentMail:
    """One message sendMail accepted, as Graph received it."""

    raw: bytes
    message: email.message.Message
    recipients: list[str]  # To, Cc and Bcc addresses, in that order
    content_type: str
    sent_id: str | None  # its id in Sent Items, if filed


@dataclass
class DeltaSession:
    folder: str
    entries: list[tuple[str, bool]]  # (immutable id, removed)
    end_seq: int
    select: list[str] | None


class GraphEmulator(ThreadedPeer):
    """Use as a context manager: `with GraphEmulator() as graph:`; `graph.url` is the api_endpoint."""

    peer_name = "graph emulator"

    def __init__(self, *, user: str = "support@example.test", token: str = "graph-token") -> None:
        self.user = user
        self.tokens = {token}
        self.accept_token: Callable[[str], bool] | None = None
        self.denied = False  # answer 403 ErrorAccessDenied (missing Mail.ReadWrite)
        self.empty_pages = False  # serve an empty page (with a nextLink) before every page
        self.default_page_size = DEFAULT_PAGE_SIZE
        self.delay_seconds = 0.0  # per request, so concurrency can be observed
        self.faults: list[Fault] = []
        self.drops: list[Drop] = []
        self.garbles: list[Drop] = []  # `match` and `times` as for drops; `accept` unused
        self.link_base: str | None = None
        self.sent: list[SentMail] = []
        self.save_sent = True  # file what sendMail accepted in Sent Items (False: the copy lags)
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path+query, headers)
        self.in_flight = 0
        self.max_in_flight = 0
        self.expired_mode = "syncStateNotFound"
        self.folders: dict[str, Folder] = {}
        self.messages: dict[str, Message] = {}
        self.changes: list[tuple[int, str, str]] = []  # (seq, folder id, immutable id)
        self.seq = 0
        self.sessions: dict[
            str, tuple[DeltaSession, int, bool]
        ] = {}  # skiptoken → (session, offset, shown_empty)
        self.delta_tokens: dict[str, tuple[str, int, list[str] | None]] = {}  # → (folder, seq, select)
        self.lock = threading.RLock()
        for name in WELL_KNOWN:
            fid = _new_id("FLD")
            self.folders[fid] = Folder(fid, DISPLAY[name], well_known=name)
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), self._handler()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    # ------------------------------------------------------------------ control surface

    def add_folder(self, name: str, parent: str | None = None) -> str:
        with self.lock:
            fid = _new_id("FLD")
            self.folders[fid] = Folder(fid, name, parent=self._folder(parent) if parent else None)
            return fid

    def add_message(
        self, raw: bytes, folder: str = "inbox", *, is_draft: bool = False, is_read: bool = False
    ) -> str:
        """Delivers `raw` into `folder` (well-known name, display name or id); returns the immutable id."""
        with self.lock:
            fid = self._folder(folder)
            assert fid is not None, folder
            mid = _new_id("MSG")
            received = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=len(self.messages))
            self.messages[mid] = Message(mid, _new_id("REST"), fid, raw, received, is_read, is_draft)
            self._changed(fid, mid)
            return mid

    def move_by_user(self, message_id: str, folder: str) -> None:
        with self.lock:
            msg = self.messages[message_id]
            target = self._folder(folder)
            assert target is not None, folder
            self._move(msg, target)

    def delete_by_user(self, message_id: str) -> None:
        """A hard delete (Shift+Del): the message is gone for good."""
        with self.lock:
            msg = self.messages.pop(message_id)
            self._changed(msg.folder, message_id)

    def message(self, message_id: str) -> dict[str, Any] | None:
        """The message's state as a test sees it: folder (well-known or display name), isRead."""
        with self.lock:
            msg = self.messages.get(message_id)
            if msg is None:
                return None
            folder = self.folders[msg.folder]
            return {"folder": folder.well_known or folder.name, "isRead": msg.is_read, "raw": msg.raw}

    def fail_next(
        self,
        status: int,
        code: str,
        *,
        times: int = 1,
        retry_after: str | None = None,
        match: str | None = None,
        message: str | None = None,
    ) -> None:
        with self.lock:
            self.faults.append(Fault(status, code, times, retry_after, match, message))

    def drop_next(self, match: str = "sendMail", *, accept: bool = True, times: int = 1) -> None:
        """The next `times` requests matching `match` ("METHOD path" substring) are read, acted on
        when `accept` (a sendMail is then sent and filed), and answered by closing the connection."""
        with self.lock:
            self.drops.append(Drop(match, accept, times))

    def garble_next(self, match: str, *, times: int = 1) -> None:
        """The next `times` requests matching `match` get a 200 whose gzip body is not gzip."""
        with self.lock:
            self.garbles.append(Drop(match, False, times))

    def expire_sync_state(self, mode: str = "gone") -> None:
        """Forget every delta and skip token; `mode` is `gone` (410), `syncStateNotFound` or
        `resyncRequired` (400), which is how requests with an old token are then answered."""
        with self.lock:
            self.sessions.clear()
            self.delta_tokens.clear()
            self.expired_mode = mode

    def count(self, method: str, path_part: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and path_part in p)

    # ------------------------------------------------------------------ model

    def _folder(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        for folder in self.folders.values():
            if ref == folder.id or ref.lower() == (folder.well_known or "\0"):
                return folder.id
        for folder in self.folders.values():
            if ref.lower() == folder.name.lower():
                return folder.id
        return None

    def _changed(self, folder: str, mid: str) -> None:
        self.seq += 1
        self.changes.append((self.seq, folder, mid))

    def _move(self, msg: Message, target: str) -> None:
        old = msg.folder
        msg.folder = target
        msg.rest_id = _new_id("REST")
        self._changed(old, msg.immutable_id)
        self._changed(target, msg.immutable_id)

    def _find(self, ident: str) -> Message | None:
        msg = self.messages.get(ident)
        if msg is not None:
            return msg
        return next((m for m in self.messages.values() if m.rest_id == ident), None)

    def _render(self, msg: Message, immutable: bool, select: list[str] | None) -> dict[str, Any]:
        full: dict[str, Any] = {
            "@odata.etag": f'W/"{uuid.uuid4().hex[:12]}"',
            "id": msg.immutable_id if immutable else msg.rest_id,
            "receivedDateTime": msg.received.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "internetMessageId": msg.header("Message-ID"),
            "conversationId": msg.conversation_id,
            "subject": msg.header("Subject"),
            "isRead": msg.is_read,
            "isDraft": msg.is_draft,
            "parentFolderId": msg.folder,
        }
        if select and "internetMessageHeaders" in select:
            parsed = email.message_from_bytes(msg.raw)
            full["internetMessageHeaders"] = [{"name": k, "value": str(v)} for k, v in parsed.items()]
        if not select:
            return full
        return {k: v for k, v in full.items() if k in select or k in ("id", "@odata.etag")}

    def _folder_json(self, folder: Folder) -> dict[str, Any]:
        inside = [m for m in self.messages.values() if m.folder == folder.id]
        return {
            "id": folder.id,
            "displayName": folder.name,
            "parentFolderId": folder.parent or "AAMkROOT",
            "childFolderCount": sum(1 for f in self.folders.values() if f.parent == folder.id),
            "totalItemCount": len(inside),
            "unreadItemCount": sum(1 for m in inside if not m.is_read),
        }

    # ------------------------------------------------------------------ delta

    def _delta(self, fid: str, query: dict[str, str], page_size: int, immutable: bool) -> tuple[int, Any]:
        folder = quote(fid, safe="")
        base = f"{self.link_base or self.url}/users/{quote(self.user)}/mailFolders/{folder}/messages/delta"
        if "$skiptoken" in query:
            state = self.sessions.get(query["$skiptoken"])
            if state is None:
                return self._expired(base)
            session, offset, shown_empty = state
        elif "$deltatoken" in query:
            known = self.delta_tokens.get(query["$deltatoken"])
            if known is None or known[0] != fid:
                return self._expired(base)
            since = known[1]
            latest: dict[str, None] = {}
            for seq, folder, mid in self.changes:
                if seq > since and folder == fid:
                    latest.pop(mid, None)
                    latest[mid] = None
            entries = [(mid, mid not in self.messages or self.messages[mid].folder != fid) for mid in latest]
            session, offset, shown_empty = DeltaSession(fid, entries, self.seq, known[2]), 0, False
        else:
            select = query["$select"].split(",") if "$select" in query else None
            inside = sorted((m for m in self.messages.values() if m.folder == fid), key=lambda m: m.received)
            entries = [(m.immutable_id, False) for m in inside]
            session, offset, shown_empty = DeltaSession(fid, entries, self.seq, select), 0, False
        if self.empty_pages and not shown_empty and offset < len(session.entries):
            token = uuid.uuid4().hex
            self.sessions[token] = (session, offset, True)
            return 200, {"value": [], "@odata.nextLink": f"{base}?$skiptoken={token}"}
        chunk = session.entries[offset : offset + page_size]
        value: list[dict[str, Any]] = []
        for mid, removed in chunk:
            msg = self.messages.get(mid)
            if removed or msg is None or msg.folder != fid:
                value.append(
                    {
                        "id": mid if immutable or msg is None else msg.rest_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
            else:
                value.append(self._render(msg, immutable, session.select))
        body: dict[str, Any] = {"value": value}
        if offset + page_size < len(session.entries):
            token = uuid.uuid4().hex
            self.sessions[token] = (session, offset + page_size, False)
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            token = uuid.uuid4().hex
            self.delta_tokens[token] = (fid, session.end_seq, session.select)
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return 200, body

    def _expired(self, base: str) -> tuple[int, Any]:
        if self.expired_mode == "gone":
            return 410, (
                "resyncRequired",
                "The sync state is no longer valid.",
                {"Location": f"{base}?$deltatoken="},
            )
        return 400, (self.expired_mode, "The sync state generation is not found. Synchronize again.")

    # ------------------------------------------------------------------ routing

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Any:
        """Returns (status, json body | bytes | error tuple (code, message[, extra headers]))."""
        segments = [unquote(p) for p in path.split("/") if p]
        if segments[:2] != ["v1.0", "users"] or len(segments) < 3:
            return 400, ("BadRequest", f"Unsupported request {method} {path}")
        if segments[2].lower() != self.user.lower():
            return 404, ("ErrorInvalidUser", f"The requested user '{segments[2]}' is invalid.")
        parts = segments[3:]
        prefer = headers.get("prefer", "")
        immutable = 'idtype="immutableid"' in prefer.lower()
        size = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        page_size = int(size.group(1)) if size else self.default_page_size
        select = query["$select"].split(",") if "$select" in query else None
        if parts == ["sendMail"] and method == "POST":
            return self._send_mail(headers, body)
        if parts[:1] == ["mailFolders"]:
            return self._route_folders(parts[1:], query, page_size, immutable)
        if parts[:1] == ["messages"] and len(parts) >= 2:
            msg = self._find(parts[1])
            if msg is None:
                return 404, NOT_FOUND
            if len(parts) == 2 and method == "GET":
                return 200, self._render(msg, immutable, select)
            if len(parts) == 2 and method == "PATCH":
                if isinstance(body, dict) and "isRead" in body and msg.is_read != bool(body["isRead"]):
                    msg.is_read = bool(body["isRead"])
                    self._changed(msg.folder, msg.immutable_id)
                return 200, self._render(msg, immutable, None)
            if parts[2:] == ["$value"] and method == "GET":
                return 200, msg.raw
            if parts[2:] == ["move"] and method == "POST":
                target = self._folder(str((body or {}).get("destinationId", "")))
                if target is None:
                    return 404, NOT_FOUND
                self._move(msg, target)
                return 201, self._render(msg, immutable, None)
        return 400, ("BadRequest", f"Unsupported request {method} {path}")

    def _route_folders(self, parts: list[str], query: dict[str, str], page_size: int, immutable: bool) -> Any:
        if not parts or (len(parts) == 2 and parts[1] == "childFolders"):
            parent = None if not parts else self._folder(parts[0])
            if parts and parent is None:
                return 404, NOT_FOUND
            found = [f for f in self.folders.values() if f.parent == parent]
            wanted = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", query.get("$filter", ""))
            if wanted:
                name = wanted.group(1).replace("''", "'").lower()
                found = [f for f in found if f.name.lower() == name]
            return 200, {"value": [self._folder_json(f) for f in found]}
        fid = self._folder(parts[0])
        if fid is None or (parts[0] != fid and parts[0].lower() not in WELL_KNOWN):
            return 404, NOT_FOUND
        if len(parts) == 1:
            return 200, self._folder_json(self.folders[fid])
        if parts[1:] == ["messages", "delta"]:
            return self._delta(fid, query, page_size, immutable)
        if parts[1:] == ["messages"]:
            return self._list_messages(fid, query, immutable)
        return 400, ("BadRequest", "Unsupported folder request")

    def _list_messages(self, fid: str, query: dict[str, str], immutable: bool) -> Any:
        """A folder's messages; the only `$filter` understood is `internetMessageId eq '…'`."""
        found = sorted((m for m in self.messages.values() if m.folder == fid), key=lambda m: m.received)
        if "$filter" in query:
            wanted = re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", query["$filter"])
            if wanted is None:
                return 400, ("BadRequest", f"Invalid filter clause: {query['$filter']}")
            value = wanted.group(1).replace("''", "'")
            found = [m for m in found if m.header("Message-ID") == value]
        top = int(query.get("$top", str(self.default_page_size)))
        select = query["$select"].split(",") if "$select" in query else None
        return 200, {"value": [self._render(m, immutable, select) for m in found[:top]]}

    # ------------------------------------------------------------------ sendMail

    def _send_mail(self, headers: dict[str, str], body: Any) -> Any:
        """The MIME form of sendMail: base64 MIME in a text/plain body → 202, filed in Sent Items."""
        content_type = headers.get("content-type", "")
        if not content_type.startswith("text/plain") or not isinstance(body, bytes):
            return 400, ("BadRequest", "Only the MIME form of sendMail is emulated (text/plain).")
        try:
            raw = base64.b64decode(body.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not raw:
            return 400, ("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
        parsed = email.message_from_bytes(raw)
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in parsed.get_all(name, [])]
        recipients = [a for _, a in email.utils.getaddresses(fields) if a]
        if not recipients:
            return 400, ("ErrorInvalidRecipients", "At least one recipient is not valid.")
        sent_id = self.add_message(raw, "sentitems", is_read=True) if self.save_sent else None
        self.sent.append(SentMail(raw, parsed, recipients, content_type, sent_id))
        return 202, None

    def _drop(self, method: str, path: str, drops: list[Drop] | None = None) -> Drop | None:
        for drop in self.drops if drops is None else drops:
            if drop.times > 0 and drop.match in f"{method} {path}":
                drop.times -= 1
                return drop
        return None

    def _gate(self, method: str, path: str, headers: dict[str, str]) -> Any:
        """Bearer check, access check and injected faults; None lets the request through."""
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        accepted = self.accept_token(token) if self.accept_token else token in self.tokens
        for fault in self.faults:
            if fault.times > 0 and (fault.match is None or fault.match in f"{method} {path}"):
                fault.times -= 1
                extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                return fault.status, (fault.code, fault.message or f"Injected {fault.code}.", extra)
        if not accepted:
            return 401, ("InvalidAuthenticationToken", "Access token is empty or invalid.")
        if self.denied:
            return 403, ("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return None

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                length = int(headers.get("content-length", "0") or 0)
                data = self.rfile.read(length) if length else b""
                json_body = headers.get("content-type", "application/json").startswith("application/json")
                body = (json.loads(data) if json_body else data) if data else None
                with emu.lock:
                    emu.requests.append((self.command, self.path, headers))
                    emu.in_flight += 1
                    emu.max_in_flight = max(emu.max_in_flight, emu.in_flight)
                try:
                    if emu.delay_seconds:
                        time.sleep(emu.delay_seconds)
                    with emu.lock:
                        result: Any = emu._gate(self.command, parts.path, headers)
                        drop = emu._drop(self.command, parts.path) if result is None else None
                        garble = emu._drop(self.command, parts.path, emu.garbles) if result is None else None
                        garbled = garble is not None
                        if result is None and (drop is None or drop.accept):
                            result = emu.route(self.command, parts.path, query, headers, body)
                finally:
                    with emu.lock:
                        emu.in_flight -= 1
                if drop is not None:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                with contextlib.suppress(ConnectionError):  # the client gave up waiting (a timeout test)
                    if garbled:
                        self._reply_garbled()
                    else:
                        self._reply(*result)

            def _reply_garbled(self) -> None:
                data = b"this is not gzip"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, status: int, payload: Any) -> None:
                extra: dict[str, str] = {}
                if payload is None:
                    data, kind = b"", "text/plain"
                elif isinstance(payload, bytes):
                    data, kind = payload, "message/rfc822"
                elif isinstance(payload, tuple):
                    code, message, *rest = payload
                    extra = rest[0] if rest else {}
                    request_id = str(uuid.uuid4())
                    error = {
                        "code": code,
                        "message": message,
                        "innerError": {"request-id": request_id, "date": datetime.now(UTC).isoformat()},
                    }
                    extra = {**extra, "request-id": request_id}
                    data, kind = json.dumps({"error": error}).encode(), "application/json"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


@contextlib.contextmanager
def running_graph(**kwargs: Any) -> Iterator[GraphEmulator]:
    with GraphEmulator(**kwargs) as graph:
        yield graph
