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
daemon never answers itself); a message gone meanwhile (404) is skipped. A batch is never cut
inside a history record (one bulk label change is one record): it may exceed `limit`, so the
cursor always moves past the start when anything came back.

A message whose lookup or download keeps failing for a reason about that message (anything but
auth, throttling, or the API being unreachable) is counted in `FetchFailures`: below the limit the
fetch fails (a retry next cycle); at the limit a stand-in takes its place, with the cursor it would
have had, so the label moves on. A full-sync message whose minimal lookup failed has no date: its
stand-in sorts after every other message (`LATE`). Should the process restart with the cursor
among those, the rebuilt plan starts over (the ledger dedupes): a lookup that works again after the
restart would put the message before the cursor, and it must not be skipped.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from connector.errors import AuthFailed, ProviderError, Throttled
from connector.models import FetchResult, RawMessage
from providers.fetch_failures import FetchFailures
from providers.gmail.api import GmailApi, NotFound, Unreachable, gather_all
from providers.gmail.cursor import GmailCursor, Key, full, incremental

SKIP_LABELS = frozenset({"SENT", "DRAFT", "SPAM", "TRASH"})
PAGE_SIZE = 500
LATE = 10**15  # an internalDate (ms) after every real one: where a message of unknown date sorts
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Meta:
    id: str
    thread_id: str | None
    internal_date: int | None
    size: int
    labels: frozenset[str]
    error: str | None = None  # its lookup kept failing: a stand-in goes in its place

    @property
    def key(self) -> Key:
        return (LATE if self.error is not None else self.internal_date or 0, self.id)

    @property
    def when(self) -> datetime | None:
        return None if self.internal_date is None else datetime.fromtimestamp(self.internal_date / 1000, UTC)

    def wanted_in(self, label: str) -> bool:
        return self.error is not None or wanted(self.labels, label)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Meta:
        date = data.get("internalDate")
        return cls(
            id=str(data["id"]),
            thread_id=str(data.get("threadId", data["id"])),
            internal_date=int(date) if date not in (None, "") else None,
            size=int(data.get("sizeEstimate", 0)),
            labels=frozenset(data.get("labelIds", [])),
        )

    @classmethod
    def failed(cls, msg_id: str, error: str) -> Meta:
        return cls(id=msg_id, thread_id=None, internal_date=None, size=0, labels=frozenset(), error=error)


def wanted(labels: frozenset[str], label: str) -> bool:
    return label in labels and not (labels & SKIP_LABELS)


def about_account(exc: ProviderError) -> bool:
    """Errors that say nothing about one message: they end the fetch and count against none."""
    return isinstance(exc, AuthFailed | Throttled | Unreachable)


async def settled(call: Awaitable[T]) -> T | ProviderError:
    """The call's result, or its per-message error as a value (account errors still raise, so
    gather_all cancels the rest of the batch at once)."""
    try:
        return await call
    except ProviderError as exc:
        if about_account(exc):
            raise
        return exc


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

    def __init__(self, api: GmailApi, *, max_bytes: int, failures: FetchFailures, address: str) -> None:
        self.api = api
        self.max_bytes = max_bytes
        self.failures = failures
        self.address = address
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
        except NotFound as exc:  # history too old (or never valid): start over, the ledger dedupes
            if exc.call != "history.list":
                raise
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
        cached = self._plans.get(label)
        rebuilt = cached is None or cached[0] != start
        plan = await self._plan(folder, label, start)
        if rebuilt and after is not None and after[0] >= LATE:
            after = None  # see the module docstring: restarted among the stand-ins
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
        metas = await self._metas(folder, list(dict.fromkeys(ids)))
        plan = sorted((m for m in metas if m.wanted_in(label)), key=lambda m: m.key)
        self._plans[label] = (start, plan)
        return plan

    # ------------------------------------------------------------------ incremental

    async def _incremental(self, folder: str, label: str, start: int, limit: int) -> FetchResult:
        added, top = await self._history(folder, label, start, limit)
        cut = min(limit, len(added))
        while 0 < cut < len(added) and added[cut][0] == added[cut - 1][0]:
            cut += 1  # never inside a record: its messages come together, past the limit if need be
        take, rest = added[:cut], added[cut:]
        if rest:
            boundary = rest[0][0] - 1
        elif top is not None:
            boundary = top
        else:  # history read up to (and past) the last record taken, not to its end
            boundary = take[-1][0]
        record_of = {msg_id: rec for rec, msg_id in take}
        metas = await self._metas(folder, [msg_id for _, msg_id in take])
        keep = sorted((m for m in metas if m.wanted_in(label)), key=lambda m: m.key)
        # a message's cursor: everything before the earliest record still to come after it
        cursors: list[int] = []
        floor = boundary
        for meta in reversed(keep):
            cursors.append(floor)
            floor = min(floor, record_of[meta.id] - 1)
        cursors.reverse()
        messages = await self._bodies(folder, label, keep, lambda i: incremental(cursors[i]))
        return FetchResult(messages, incremental(max(boundary, start)), more=bool(rest) or top is None)

    async def _history(
        self, folder: str, label: str, start: int, limit: int
    ) -> tuple[list[tuple[int, str]], int | None]:
        """(record id, message id) of new messages in history order: more than `limit` of them,
        with every record up to the limit's complete; and the mailbox's historyId when the whole
        history was read (else None)."""
        added: dict[str, int] = {}
        token: str | None = None
        last = start  # the last record read
        while True:
            page = await self.api.call(
                "history.list",
                functools.partial(
                    _history_request, user_id=self.api.user_id, start=start, label=label, page_token=token
                ),
                folder=folder,
            )
            for record in page.get("history", []):
                rec = int(record["id"])
                last = max(last, rec)
                for entry in record.get("messagesAdded", []):
                    added.setdefault(str(entry["message"]["id"]), rec)
                for entry in record.get("labelsAdded", []):
                    if label in entry.get("labelIds", []):
                        added.setdefault(str(entry["message"]["id"]), rec)
            token = page.get("nextPageToken")
            found = sorted((rec, msg_id) for msg_id, rec in added.items())
            if not token:
                return found, int(page.get("historyId", last))
            if len(found) > limit and last > found[limit - 1][0]:  # that record is complete
                return found, None

    # ------------------------------------------------------------------ messages

    async def _metas(self, folder: str, ids: list[str]) -> list[Meta]:
        """Minimal lookups of `ids`, gone ones left out; one that keeps failing becomes the Meta
        of a stand-in, one that failed fewer times fails the fetch."""
        got = await gather_all(settled(self._meta(folder, i)) for i in ids)
        due = self.failures.triage(folder, list(zip(ids, got, strict=True)))
        metas: list[Meta] = []
        for i, meta in enumerate(got):
            if i in due:
                metas.append(Meta.failed(ids[i], str(due[i])))
            elif isinstance(meta, Meta):
                metas.append(meta)
        return metas

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
        got = await gather_all(
            settled(self._body(folder, label, m, cursor_of(i))) for i, m in enumerate(metas)
        )
        due = self.failures.triage(folder, [(m.id, body) for m, body in zip(metas, got, strict=True)])
        out: list[RawMessage] = []
        for i, body in enumerate(got):
            if i in due:
                out.append(self._stand_in(folder, metas[i], str(due[i]), cursor_of(i)))
            elif isinstance(body, RawMessage):
                out.append(body)
        return out

    def _stand_in(self, folder: str, meta: Meta, error: str, cursor: str) -> RawMessage:
        return self.failures.stand_in(
            mailbox_address=self.address,
            folder=folder,
            message_id=meta.id,
            error=error,
            cursor=cursor,
            internal_date=meta.when,
            thread_hint=meta.thread_id,
        )

    async def _body(self, folder: str, label: str, meta: Meta, cursor: str) -> RawMessage | None:
        if meta.error is not None:
            return self._stand_in(folder, meta, meta.error, cursor)
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
            self.failures.succeeded(folder, meta.id)
            return None  # deleted since it was listed
        self.failures.succeeded(folder, meta.id)
        now = Meta.of(data)
        if not wanted(now.labels, label):
            return None  # moved out of the folder, trashed or spam since it was listed
        raw = header_bytes(data) if oversize else base64.urlsafe_b64decode(str(data.get("raw", "")))
        return RawMessage(
            folder=folder,
            provider_id=now.id,
            raw=raw,
            size=now.size if oversize else len(raw),
            internal_date=now.when,
            flags=now.labels,
            cursor=cursor,
            headers_only=oversize,
            thread_hint=now.thread_id,
        )
