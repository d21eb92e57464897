"""`GraphInboundProvider`: one Microsoft 365 mailbox over Graph delta queries (polling only).

Cursor design. The folder cursor is the delta link to resume from (`cursor.DeltaCursor`). A fetch
follows `@odata.nextLink` pages (empty pages included) until it holds `limit` messages or reaches
the `@odata.deltaLink`; pages are never split, so one batch may hold a little more than `limit`.
Each message carries as its cursor the link of the page it came on (re-reading that page is
harmless: the ledger skips what is delivered), and the last message of a page carries the page's
next link. The pipeline commits the cursor of the last delivered message, so a batch cut short
resumes at the first page that still holds an undelivered message, and nothing is skipped for good.

What is not handed over: `@removed` entries (nothing to create), drafts, and messages that are gone
by the time their MIME is fetched (deleted, or moved: then seen in the folder they went to). Graph
can answer 404 for an item that exists, so "gone" needs a second 404 for the item itself.

A message whose download keeps failing for its own reasons (a 404 for an item that exists, 403, a
5xx other than 503, an answer that cannot be read) fails the fetch a few times, then is handed over
as a stand-in (`providers.fetch_failures`) so the folder moves on; its original gets no post-action.
The token, throttling and an unreachable Graph still end the cycle without counting anything.
Messages this provider already marked or moved are skipped without download when a later delta
round lists them again as updated; they are delivered, since a post-action only runs after that.

Lost sync state (410 Gone, syncStateNotFound, resyncRequired), a cursor written for another user,
a stored link outside the configured endpoint (the endpoint setting changed), or a stored link for
a folder that no longer exists restart the folder from the initial delta request with
`resync=True`; the ledger keeps that from creating duplicates. A link Graph returns outside the
configured endpoint (the endpoint spelled another way than Graph spells itself) is never stored or
followed: EndpointMismatch names both, so no folder restarts forever. A 410's `Location` is
not followed: the restart is built from the configured endpoint, so the token goes nowhere else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from connector.config import MailboxSettings
from connector.errors import (
    AuthFailed,
    ConfigError,
    FolderMissing,
    ProviderError,
    ProviderUnavailable,
    Throttled,
)
from connector.models import FetchResult, PostAction, PostActionKind, RawMessage
from providers.fetch_failures import FetchFailures
from providers.graph.api import (
    AccessDenied,
    EndpointMismatch,
    GraphNotFound,
    RetryPolicy,
    ServerFailed,
    SyncStateLost,
    graph_api,
    origin,
    user_url,
)
from providers.graph.cursor import DeltaCursor
from providers.graph.folders import FolderResolver
from providers.graph.mime import Mime, header_block, headers_from_graph, mime_reader
from providers.oauth import TokenProvider

DELTA_SELECT = "id,receivedDateTime,internetMessageId,conversationId,isRead,isDraft"
MAX_PAGES_PER_FETCH = 50  # bounds one fetch over a long run of empty pages; `more` says go on
MAX_PAGE_SIZE = 200
REMEMBERED_ACTED = 50_000

log = logging.getLogger("providers.graph")


class MessageFailed(ProviderError):
    """Downloading one message failed for a reason about that message, not the mailbox."""


def _about_the_message(exc: ProviderError) -> bool:
    """Errors that may be the one item's doing. Not: the token (401), throttling, an unreachable
    or unavailable (503) Graph, lost sync state. A 403 or 5xx on one item's download may be."""
    if isinstance(exc, (Throttled, SyncStateLost, EndpointMismatch)):
        return False
    if isinstance(exc, AuthFailed):
        return isinstance(exc, AccessDenied)
    if isinstance(exc, ProviderUnavailable):
        return isinstance(exc, ServerFailed)
    return True


def _conversation(item: dict[str, Any]) -> str | None:
    value = item.get("conversationId")
    return value if isinstance(value, str) else None


def _received(item: dict[str, Any]) -> datetime | None:
    text = item.get("receivedDateTime")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class GraphInboundProvider:
    """InboundProvider + BatchPostActions + Checkable for one configured Graph mailbox."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        policy: RetryPolicy | None = None,
        failures: FetchFailures | None = None,
    ) -> None:
        if mailbox.graph is None:
            raise ConfigError([f"mailboxes[{mailbox.id}]: provider graph needs a 'graph:' block"])
        self.mailbox = mailbox
        self.settings = mailbox.graph
        self.api = graph_api(mailbox, tokens, policy=policy)
        self.user_url = user_url(self.api, self.settings.user_id)
        self.folders = FolderResolver(self.api, self.user_url)
        self._acted: dict[tuple[str, str], None] = {}  # (folder, id) whose post-action we applied
        self.failures = failures or FetchFailures()

    def __repr__(self) -> str:
        return f"GraphInboundProvider(mailbox={self.mailbox.id!r}, user={self.settings.user_id!r})"

    # ------------------------------------------------------------------ fetch

    async def _initial_link(self, folder: str) -> str:
        folder_id = await self.folders.resolve(folder)
        return (
            f"{self.user_url}/mailFolders/{quote(folder_id, safe='')}/messages/delta?$select={DELTA_SELECT}"
        )

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        limit = max(1, limit)
        stored = DeltaCursor.parse(cursor)
        usable = stored is not None and stored.user == self.settings.user_id and self.api.owns(stored.link)
        if stored is None or not usable:
            return await self._restart(folder, limit, resync=cursor is not None)
        try:
            return await self._walk(folder, stored.link, limit, resync=False)
        except (SyncStateLost, GraphNotFound) as exc:
            if isinstance(exc, GraphNotFound):  # the stored link's folder is gone: is it back?
                self.folders.forget(folder)
            log.warning("graph delta restart for %s/%s: %s", self.mailbox.id, folder, exc)
            return await self._restart(folder, limit, resync=True)

    async def _restart(self, folder: str, limit: int, *, resync: bool) -> FetchResult:
        """The folder from its initial delta request; a 404 there means the folder is gone."""
        try:
            return await self._walk(folder, await self._initial_link(folder), limit, resync=resync)
        except GraphNotFound as exc:
            if str(exc.context.get("graph_code", "")).lower() == "errorinvaliduser":
                raise ProviderError(
                    f"Graph has no mailbox for user {self.settings.user_id!r}: {exc.message}", **exc.context
                ) from None
            self.folders.forget(folder)
            raise FolderMissing(f"Graph folder not found: {exc.message}", **exc.context) from None

    async def _walk(self, folder: str, link: str, limit: int, *, resync: bool) -> FetchResult:
        prefer = f"odata.maxpagesize={min(limit, MAX_PAGE_SIZE)}"
        user = self.settings.user_id
        messages: list[RawMessage] = []
        done = False
        for _ in range(MAX_PAGES_PER_FETCH):
            page = await self.api.json("GET", link, prefer=prefer, folder=folder)
            delta_link = page.get("@odata.deltaLink")
            after = page.get("@odata.nextLink") or delta_link
            if not isinstance(after, str):
                raise ProviderError(
                    "Graph delta page has no nextLink or deltaLink", mailbox=self.mailbox.id, folder=folder
                )
            if not self.api.owns(after):
                raise EndpointMismatch(
                    f"Graph's delta links point at {origin(after)}, outside the configured "
                    f"graph.api_endpoint {self.api.base}; set api_endpoint to the address Graph uses "
                    "(the access token is only sent to the configured endpoint)",
                    mailbox=self.mailbox.id,
                    folder=folder,
                )
            got = await self._download_page(folder, page.get("value") or [])
            here, there = str(DeltaCursor(user, link)), str(DeltaCursor(user, after))
            last = len(got) - 1
            messages += [
                dataclasses.replace(m, cursor=there if i == last else here) for i, m in enumerate(got)
            ]
            link, done = after, after == delta_link
            if done or len(messages) >= limit:
                break
        return FetchResult(
            messages=messages, cursor=str(DeltaCursor(user, link)), more=not done, resync=resync
        )

    async def _download_page(self, folder: str, items: Sequence[Any]) -> list[RawMessage]:
        """The page's messages; a message failing for its own reasons fails the fetch until it has
        failed often enough, then its stand-in is handed over (see `providers.fetch_failures`)."""
        wanted = [
            item
            for item in items
            if isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and "@removed" not in item
            and not item.get("isDraft")
            and (folder, item["id"]) not in self._acted
        ]
        got = await asyncio.gather(*(self._download(folder, item) for item in wanted), return_exceptions=True)
        for result in got:
            if isinstance(result, BaseException) and not isinstance(result, MessageFailed):
                raise result  # about the account or the service: the cycle ends, nobody is counted
        for item, result in zip(wanted, got, strict=True):
            if not isinstance(result, MessageFailed):
                self.failures.succeeded(folder, item["id"])
        due = self.failures.triage(folder, [(item["id"], r) for item, r in zip(wanted, got, strict=True)])
        handed: list[RawMessage] = []
        for i, result in enumerate(got):
            if i in due:
                handed.append(self._stand_in(folder, wanted[i], due[i]))
            elif isinstance(result, RawMessage):
                handed.append(result)
        return handed

    def _stand_in(self, folder: str, item: dict[str, Any], exc: ProviderError) -> RawMessage:
        log.warning(
            "graph message %s (%s/%s) handed over as a stand-in: %s",
            item["id"],
            self.mailbox.id,
            folder,
            exc.message,
        )
        return self.failures.stand_in(
            mailbox_address=self.mailbox.address,
            folder=folder,
            message_id=str(item["id"]),
            error=exc.message,
            cursor=None,  # `_walk` gives it the cursor of its place on the page, as any message
            internal_date=_received(item),
            thread_hint=_conversation(item),
        )

    async def _download(self, folder: str, item: dict[str, Any]) -> RawMessage | None:
        """None when the message is gone; MessageFailed when downloading it failed for a reason
        about this message (anything but the token, throttling or an unreachable/unavailable Graph)."""
        message_id = str(item["id"])
        try:
            return await self._read(folder, item)
        except MessageFailed:
            raise
        except ProviderError as exc:
            if not _about_the_message(exc):
                raise
            raise MessageFailed(
                f"message {message_id} could not be downloaded: {exc.message}", **exc.context
            ) from None

    async def _read(self, folder: str, item: dict[str, Any]) -> RawMessage | None:
        message_id = str(item["id"])
        url = f"{self.user_url}/messages/{quote(message_id, safe='')}"
        where = {"folder": folder, "provider_id": message_id}
        try:
            mime: Mime = await self.api.call(
                "GET", url + "/$value", mime_reader(self.mailbox.max_message_bytes), **where
            )
            raw = mime.data
            if mime.truncated:
                raw = header_block(mime) or headers_from_graph(
                    await self.api.json("GET", url + "?$select=internetMessageHeaders", **where)
                )
        except GraphNotFound as exc:
            if not await self._is_gone(url, where):
                raise MessageFailed(
                    f"message {message_id} could not be downloaded: {exc.message}, "
                    "yet the message still exists",
                    **exc.context,
                ) from None
            log.info(
                "graph message %s gone before it was fetched (%s/%s)", message_id, self.mailbox.id, folder
            )
            return None
        return RawMessage(
            folder=folder,
            provider_id=message_id,
            raw=raw,
            size=mime.size,
            internal_date=_received(item),
            flags=frozenset({"\\Seen"}) if item.get("isRead") else frozenset(),
            headers_only=mime.truncated,
            thread_hint=_conversation(item),
        )

    async def _is_gone(self, url: str, where: dict[str, Any]) -> bool:
        """Graph can answer 404 for an item that exists; only a 404 for the item itself too is "gone"."""
        try:
            await self.api.json("GET", url + "?$select=id", **where)
        except GraphNotFound:
            return True
        return False

    # ------------------------------------------------------------------ post-actions

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        if action.kind is PostActionKind.NONE:
            return
        if message.stand_in:
            return  # a stand-in's original stays as it is, for a person to open
        url = f"{self.user_url}/messages/{quote(message.provider_id, safe='')}"
        where = {"folder": message.folder, "provider_id": message.provider_id}
        try:
            if action.kind is PostActionKind.MARK_READ:
                await self.api.json("PATCH", url, body={"isRead": True}, **where)
            else:
                target = "deleteditems" if action.kind is PostActionKind.DELETE else action.target or ""
                destination = await self.folders.resolve(target)
                await self.api.json("POST", url + "/move", body={"destinationId": destination}, **where)
        except GraphNotFound:
            await self._confirm_gone(url, message, action, where)
        self._remember(message)

    async def _confirm_gone(
        self, url: str, message: RawMessage, action: PostAction, where: dict[str, Any]
    ) -> None:
        """A 404 is "done" only when the message itself is gone (deleted or moved by someone);
        if it is still there, the 404 was about the move target, which must not pass silently."""
        try:
            await self.api.json("GET", url + "?$select=id", **where)
        except GraphNotFound:
            return
        if action.kind is PostActionKind.MOVE and action.target:
            self.folders.forget(action.target)
        raise FolderMissing(
            f"post-action {action} failed: Graph says not found, but the message still exists",
            mailbox=self.mailbox.id,
            **where,
        )

    def _remember(self, message: RawMessage) -> None:
        self._acted[(message.folder, message.provider_id)] = None
        if len(self._acted) > REMEMBERED_ACTED:
            del self._acted[next(iter(self._acted))]

    async def apply_post_actions(self, messages: Sequence[RawMessage], action: PostAction) -> None:
        """Up to four at once (the request cap); the first error is raised after all have run."""
        results = await asyncio.gather(
            *(self.apply_post_action(m, action) for m in messages), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        await self.api.aclose()

    # ------------------------------------------------------------------ Checkable

    async def check(self) -> dict[str, str]:
        """The mailbox is reachable with this app's token, and every folder and the move target resolve."""
        try:
            inbox = await self.api.json("GET", f"{self.user_url}/mailFolders/inbox?$select=id,totalItemCount")
        except GraphNotFound as exc:
            raise ProviderError(
                f"Graph has no mailbox for user {self.settings.user_id!r} ({exc.message})", **exc.context
            ) from None
        facts = {
            "endpoint": self.api.base,
            "mailbox": f"{self.settings.user_id} reachable ({inbox.get('totalItemCount', '?')} in inbox)",
        }
        for folder in self.mailbox.folders:
            folder_id = await self.folders.resolve(folder)
            info = await self.api.json(
                "GET",
                f"{self.user_url}/mailFolders/{quote(folder_id, safe='')}?$select=id,totalItemCount",
                folder=folder,
            )
            facts[f"folder {folder}"] = f"exists, {info.get('totalItemCount', '?')} messages"
        action = self.mailbox.action
        if action.kind is PostActionKind.MOVE and action.target:
            facts["move target"] = f"{action.target} ({await self.folders.resolve(action.target)})"
        return facts
