"""One label's fetch: full sync (listing) or incremental (history), in internalDate order.

Full sync: the historyId is read from users.getProfile *before* listing, so a message that
arrives during the listing is in the history after it. The listing gives ids only (newest
first); `format=minimal` of each gives internalDate, size and labels, and the plan, sorted by
(internalDate, id), is kept in memory until the sync is done (rebuilt after a restart from the
cursor's key, so a restart costs one more listing, never a skipped message).

Incremental: history.list(messageAdded, labelAdded) after the cursor's id. The first `limit`
new messages in history order are taken, then sorted by internalDate; each message's cursor is
the history id just below the earliest record still unhandled after it, so a batch cut short
never moves the cursor past undelivered mail. Sent mail, drafts, spam and trash are skipped (the
daemon never answers itself); a message gone meanwhile (404) is skipped.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.models import FetchResult, RawMessage
from providers.gmail.api import GmailApi, NotFound, gather_all
from providers.gmail.cursor import GmailCursor, Key, full, incremental

SKIP_LABELS = frozenset({"SENT", "DRAFT", "SPAM", "TRASH"})
PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Meta:
    id: str
    thread_id: str
    internal_date: int
    size: int
    labels: frozenset[str]

    @property
    def key(self) -> Key:
        return (self.internal_date, self.id)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Meta:
        return cls(
            id=str(data["id"]),
            thread_id=str(data.get("threadId", data["id"])),
            internal_date=int(data.get("internalDate", 0)),
            size=int(data.get("sizeEstimate", 0)),
            labels=frozenset(data.get("labelIds", [])),
        )


def wanted(labels: frozenset[str], label: str) -> bool:
    return label in labels and not (labels & SKIP_LABELS)


def header_bytes(data: dict[str, Any]) -> bytes:
    """The header block rebuilt from `format=metadata` (Gmail gives headers, not their bytes)."""
    headers = data.get("payload", {}).get("headers", [])
    lines = [f"{h.get('name', '')}: {h.get('value', '')}\r\n" for h in headers if h.get("name")]
    return ("".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def _list_request(users: Any, *, user_id: str, label: str, page_token: str | None) -> Any:
    return users.messages().list(userId=user_id, labelIds=[label], maxResults=PAGE_SIZE, pageToken=page_token)


def _history_request(users: Any, *, user_id: str, start: int, label: str, page_token: str | None) -> Any:
    return users.history().list(
        userId=user_id,
        startHistoryId=str(start),
        historyTypes=["messageAdded", "labelAdded"],
        labelId=label,
        maxResults=PAGE_SIZE,
        pageToken=page_token,
    )


class LabelSync:
    """Fetches for one provider; remembers the full-sync plan per label between calls."""

    def __init__(self, api: GmailApi, *, max_bytes: int) -> None:
        self.api = api
        self.max_bytes = max_bytes
        self._plans: dict[str, tuple[int, list[Meta]]] = {}

    async def fetch(self, folder: str, label: str, cursor: str | None, limit: int) -> FetchResult:
        try:
            position = GmailCursor.parse(cursor)
        except ValueError:
            return await self._full(folder, label, None, limit, resync=True)
        if position is None or position.full:
            return await self._full(folder, label, position, limit, resync=False)
        try:
            return await self._incremental(folder, label, position.history_id, limit)
        except NotFound:  # history too old (or never valid): start over, the ledger dedupes
            self._plans.pop(label, None)
            return await self._full(folder, label, None, limit, resync=True)

    # ------------------------------------------------------------------ full sync

    async def _full(
        self, folder: str, label: str, position: GmailCursor | None, limit: int, *, resync: bool
    ) -> FetchResult:
        if position is None:
            profile = await self.api.call("users.getProfile", lambda u: u.getProfile(userId=self.api.user_id))
            start, after = int(profile["historyId"]), None
        else:
            start, after = position.history_id, position.full_after
        plan = await self._plan(folder, label, start)
        todo = [m for m in plan if after is None or m.key > after]
        take = todo[:limit]
        messages = await self._bodies(folder, label, take, lambda i: full(start, take[i].key))
        if len(todo) > limit:
            return FetchResult(messages, full(start, take[-1].key), more=True, resync=resync)
        self._plans.pop(label, None)
        return FetchResult(messages, incremental(start), more=False, resync=resync)

    async def _plan(self, folder: str, label: str, start: int) -> list[Meta]:
        cached = self._plans.get(label)
        if cached is not None and cached[0] == start:
            return cached[1]
        ids: list[str] = []
        token: str | None = None
        while True:
            page = await self.api.call(
                "messages.list",
                functools.partial(_list_request, user_id=self.api.user_id, label=label, page_token=token),
                folder=folder,
            )
            ids += [str(m["id"]) for m in page.get("messages", [])]
            token = page.get("nextPageToken")
            if not token:
                break
        metas = await gather_all(self._meta(folder, i) for i in dict.fromkeys(ids))
        plan = sorted((m for m in metas if m is not None and wanted(m.labels, label)), key=lambda m: m.key)
        self._plans[label] = (start, plan)
        return plan

    # ------------------------------------------------------------------ incremental

    async def _incremental(self, folder: str, label: str, start: int, limit: int) -> FetchResult:
        added, top = await self._history(folder, label, start, limit)
        take, rest = added[:limit], added[limit:]
        boundary = rest[0][0] - 1 if rest else top
        record_of = {msg_id: rec for rec, msg_id in take}
        metas = await gather_all((self._meta(folder, msg_id) for _, msg_id in take))
        keep = sorted((m for m in metas if m is not None and wanted(m.labels, label)), key=lambda m: m.key)
        # a message's cursor: everything before the earliest record still to come after it
        cursors: list[int] = []
        floor = boundary
        for meta in reversed(keep):
            cursors.append(floor)
            floor = min(floor, record_of[meta.id] - 1)
        cursors.reverse()
        messages = await self._bodies(folder, label, keep, lambda i: incremental(cursors[i]))
        return FetchResult(messages, incremental(max(boundary, start)), more=bool(rest))

    async def _history(
        self, folder: str, label: str, start: int, limit: int
    ) -> tuple[list[tuple[int, str]], int]:
        """(record id, message id) of new messages in history order, at most limit+1; and the
        mailbox's historyId when the whole history was read (else the start)."""
        added: dict[str, int] = {}
        token: str | None = None
        top = start
        while len(added) <= limit:
            page = await self.api.call(
                "history.list",
                functools.partial(
                    _history_request, user_id=self.api.user_id, start=start, label=label, page_token=token
                ),
                folder=folder,
            )
            for record in page.get("history", []):
                rec = int(record["id"])
                for entry in record.get("messagesAdded", []):
                    added.setdefault(str(entry["message"]["id"]), rec)
                for entry in record.get("labelsAdded", []):
                    if label in entry.get("labelIds", []):
                        added.setdefault(str(entry["message"]["id"]), rec)
            token = page.get("nextPageToken")
            if not token:
                top = int(page.get("historyId", start))
                break
        return sorted((rec, msg_id) for msg_id, rec in added.items()), top

    # ------------------------------------------------------------------ messages

    async def _meta(self, folder: str, msg_id: str) -> Meta | None:
        try:
            data = await self.api.call(
                "messages.get",
                lambda u: u.messages().get(userId=self.api.user_id, id=msg_id, format="minimal"),
                folder=folder,
                provider_id=msg_id,
            )
        except NotFound:
            return None
        return Meta.of(data)

    async def _bodies(
        self, folder: str, label: str, metas: list[Meta], cursor_of: Callable[[int], str]
    ) -> list[RawMessage]:
        got = await gather_all((self._body(folder, label, m, cursor_of(i)) for i, m in enumerate(metas)))
        return [m for m in got if m is not None]

    async def _body(self, folder: str, label: str, meta: Meta, cursor: str) -> RawMessage | None:
        oversize = meta.size > self.max_bytes
        fmt = "metadata" if oversize else "raw"
        try:
            data = await self.api.call(
                "messages.get",
                lambda u: u.messages().get(userId=self.api.user_id, id=meta.id, format=fmt),
                folder=folder,
                provider_id=meta.id,
            )
        except NotFound:
            return None  # deleted since it was listed
        now = Meta.of(data)
        if not wanted(now.labels, label):
            return None  # moved out of the folder, trashed or spam since it was listed
        raw = header_bytes(data) if oversize else base64.urlsafe_b64decode(str(data.get("raw", "")))
        return RawMessage(
            folder=folder,
            provider_id=now.id,
            raw=raw,
            size=now.size if oversize else len(raw),
            internal_date=datetime.fromtimestamp(now.internal_date / 1000, UTC),
            flags=now.labels,
            cursor=cursor,
            headers_only=oversize,
            thread_hint=now.thread_id,
        )
