"""`GmailInboundProvider`: one mailbox through the Gmail API (polling; push is not used).

A folder is a label: a label id (`INBOX`, `Label_12`) or a label name, resolved through
labels.list (cached; looked up again once before a name is declared missing). Post-actions:
mark_read removes UNREAD, `move:<label>` adds that label and removes the folder's label (the
target must exist: it is resolved, never created), delete moves to the trash (`messages.trash`,
never a permanent delete). All are idempotent: a message already changed or gone is no error.
When batchModify refuses a batch for a reason that is not about the account (a 4xx other than
auth or rate limits: one bad id), the batch is done one message at a time, so the others still
get their post-action. A stand-in (providers.fetch_failures) gets none: the original stays as is.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

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
from providers.gmail.api import NotFound, RetryPolicy, gather_all, gmail_api
from providers.gmail.sync import LabelSync
from providers.oauth import TokenProvider

BATCH_MODIFY_MAX_IDS = 1000


def _batch_modify(users: Any, *, user_id: str, body: dict[str, Any]) -> Any:
    return users.messages().batchModify(userId=user_id, body=body)


class GmailInboundProvider:
    """InboundProvider + BatchPostActions + Checkable for one configured Gmail mailbox."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if mailbox.gmail is None:
            raise ConfigError([f"mailboxes[{mailbox.id}]: provider gmail needs a 'gmail:' block"])
        self.mailbox = mailbox
        self.settings = mailbox.gmail
        self.api = gmail_api(mailbox, tokens, retry)
        self.failures = FetchFailures()
        self._sync = LabelSync(
            self.api, max_bytes=mailbox.max_message_bytes, failures=self.failures, address=mailbox.address
        )
        self._labels: dict[str, str] | None = None  # id, name and casefolded name -> id

    def __repr__(self) -> str:
        return f"GmailInboundProvider(mailbox={self.mailbox.id!r}, user={self.settings.user_id!r})"

    # ------------------------------------------------------------------ labels

    async def _load_labels(self) -> dict[str, str]:
        data = await self.api.call("labels.list", lambda u: u.labels().list(userId=self.api.user_id))
        table: dict[str, str] = {}
        for label in data.get("labels", []):
            label_id, name = str(label["id"]), str(label.get("name", label["id"]))
            table.setdefault(f"name:{name.casefold()}", label_id)
            table[f"name:{name}"] = label_id
            table[f"id:{label_id}"] = label_id
        self._labels = table
        return table

    async def label_id(self, folder: str) -> str:
        """The id of label `folder` (an id or a name); FolderMissing if Gmail has none."""
        for fresh in (False, True):
            table = self._labels if self._labels is not None and not fresh else await self._load_labels()
            for key in (f"id:{folder}", f"name:{folder}", f"name:{folder.casefold()}"):
                if key in table:
                    return table[key]
        raise FolderMissing(f"Gmail label {folder!r} does not exist", mailbox=self.mailbox.id, folder=folder)

    # ------------------------------------------------------------------ InboundProvider

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        label = await self.label_id(folder)
        try:
            return await self._sync.fetch(folder, label, cursor, max(1, limit))
        except NotFound:
            self._labels = None  # the label may be gone: look it up afresh next time
            raise

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        await self.apply_post_actions([message], action)

    async def apply_post_actions(self, messages: Sequence[RawMessage], action: PostAction) -> None:
        messages = [m for m in messages if not m.stand_in]
        if action.kind is PostActionKind.NONE or not messages:
            return
        if action.kind is PostActionKind.DELETE:
            await gather_all(self._trash(m) for m in messages)
            return
        if action.kind is PostActionKind.MARK_READ:
            await self._modify([m.provider_id for m in messages], add=[], remove=["UNREAD"])
            return
        assert action.target is not None
        target = await self.label_id(action.target)
        by_folder: dict[str, list[str]] = {}
        for message in messages:
            by_folder.setdefault(message.folder, []).append(message.provider_id)
        for folder, ids in by_folder.items():
            source = await self.label_id(folder)
            await self._modify(ids, add=[target], remove=[] if source == target else [source])

    async def _trash(self, message: RawMessage) -> None:
        try:
            await self.api.call(
                "messages.trash",
                lambda u: u.messages().trash(userId=self.api.user_id, id=message.provider_id),
                folder=message.folder,
                provider_id=message.provider_id,
            )
        except NotFound:
            return  # gone already: nothing left to delete

    async def _modify(self, ids: list[str], *, add: list[str], remove: list[str]) -> None:
        body: dict[str, Any] = {"addLabelIds": add, "removeLabelIds": remove}
        for start in range(0, len(ids), BATCH_MODIFY_MAX_IDS):
            chunk = ids[start : start + BATCH_MODIFY_MAX_IDS]
            request = {**body, "ids": chunk}
            try:
                await self.api.call(
                    "messages.batchModify",
                    functools.partial(_batch_modify, user_id=self.api.user_id, body=request),
                )
            except ProviderError as exc:  # one id gone or refused: do the rest one by one
                if isinstance(exc, AuthFailed | Throttled | ProviderUnavailable | FolderMissing):
                    raise
                await self._modify_each(chunk, body)

    async def _modify_each(self, ids: list[str], body: dict[str, Any]) -> None:
        """Every message gets its try; the first failure is raised after all were tried."""
        done = await asyncio.gather(*(self._modify_one(i, body) for i in ids), return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _modify_one(self, msg_id: str, body: dict[str, Any]) -> None:
        try:
            await self.api.call(
                "messages.modify",
                lambda u: u.messages().modify(userId=self.api.user_id, id=msg_id, body=body),
                provider_id=msg_id,
            )
        except NotFound:
            return

    async def close(self) -> None:
        await asyncio.to_thread(self.api.close)

    # ------------------------------------------------------------------ Checkable

    async def check(self) -> dict[str, str]:
        """The account's address and history id, and that every folder and the move target exist."""
        profile = await self.api.call("users.getProfile", lambda u: u.getProfile(userId=self.api.user_id))
        facts = {
            "api": self.settings.api_endpoint or "https://gmail.googleapis.com/",
            "account": f"{profile.get('emailAddress', '?')} ({profile.get('messagesTotal', '?')} messages, "
            f"history id {profile.get('historyId', '?')})",
        }
        await self._load_labels()
        for folder in self.mailbox.folders:
            facts[f"folder {folder}"] = f"label {await self.label_id(folder)} exists"
        action = self.mailbox.action
        if action.kind is PostActionKind.MOVE and action.target:
            facts["move target"] = f"label {await self.label_id(action.target)} exists"
        return facts
