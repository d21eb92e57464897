"""Configured folder names → Graph folder ids (or well-known names, which Graph takes in place of ids).

`INBOX`, `Inbox`, `deleteditems`... map to Graph's well-known names case-insensitively. Any other
name is looked up by display name among the top-level folders; `Parent/Child` walks child folders.
Results are cached for the provider's life; `forget` drops them when Graph says a folder is gone.
Concurrent resolutions of one name share a single lookup (a batch of moves asks once, not per message).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from connector.errors import FolderMissing
from providers.graph.api import GraphApi

WELL_KNOWN = frozenset({"inbox", "archive", "deleteditems", "junkemail", "sentitems", "drafts"})


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


class FolderResolver:
    def __init__(self, api: GraphApi, user_url: str) -> None:
        self._api = api
        self._user_url = user_url
        self._cache: dict[str, str] = {}
        self._pending: dict[str, asyncio.Task[str]] = {}

    async def resolve(self, name: str) -> str:
        """The id (or well-known name) for a configured folder; FolderMissing when there is none."""
        if name.lower() in WELL_KNOWN:
            return name.lower()
        if name in self._cache:
            return self._cache[name]
        task = self._pending.get(name)
        if task is None:
            task = asyncio.ensure_future(self._lookup(name))
            self._pending[name] = task
            task.add_done_callback(lambda done: self._settled(name, done))
        return await asyncio.shield(task)  # one waiter cancelled does not cancel the others' lookup

    def _settled(self, name: str, task: asyncio.Task[str]) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]
        if not task.cancelled():
            task.exception()  # retrieved here too, so a lookup nobody awaits any more logs no warning

    async def _lookup(self, name: str) -> str:
        parent: str | None = None
        for part in [p for p in name.split("/") if p]:
            if parent is None and part.lower() in WELL_KNOWN:
                parent = part.lower()
                continue
            parent = await self._child(parent, part, name)
        if parent is None:
            raise FolderMissing("empty Graph folder name", mailbox=self._api.mailbox_id, folder=name)
        self._cache[name] = parent
        return parent

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)
        self._pending.pop(name, None)

    async def _child(self, parent: str | None, display_name: str, full: str) -> str:
        where = "mailFolders" if parent is None else f"mailFolders/{quote(parent, safe='')}/childFolders"
        query = quote(f"displayName eq {odata_string(display_name)}", safe="")
        page = await self._api.json(
            "GET", f"{self._user_url}/{where}?$filter={query}&$select=id,displayName", folder=full
        )
        found: list[Any] = [
            f
            for f in page.get("value", [])
            if isinstance(f, dict) and str(f.get("displayName", "")).lower() == display_name.lower()
        ]
        if not found or not isinstance(found[0].get("id"), str):
            raise FolderMissing(
                f"Graph folder {display_name!r} not found", mailbox=self._api.mailbox_id, folder=full
            )
        return str(found[0]["id"])
