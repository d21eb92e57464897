"""`ImapInboundProvider`: one mailbox over one IMAP connection kept open between cycles while the
daemon's `ConnectionBudget` allows (providers/imap/budget.py: another mailbox may need the slot,
then this one reconnects on its next call).

All calls share the connection and are serialized by an asyncio.Lock, so IDLE only runs while
no fetch or post-action does (the pipeline fetches after `wait_for_change` returns). A lost
connection is reopened at the start of the next call; a call whose connection the server closed
midway (Dovecot's `BYE ... inconsistent` after a UIDVALIDITY change, a restart) is retried once on
a fresh connection, which is safe because fetches are read-only and post-actions idempotent. After
a failed connect, new attempts wait a backoff (1 s, then 2 s) and fail fast meanwhile; short, so a
server back from an outage is seen within seconds (a refused connect costs nothing).

A UID the server lists but never returns (an unreadable file behind it, a server bug) would hold
the folder: the cursor cannot pass it. Such a UID is asked for again on each fetch and counted
(`providers.fetch_failures`), and the fetch fails naming it while it is first in line; once it
has failed often enough, over long enough, a stand-in note takes its place and the folder moves
on. A UID that is simply gone (expunged between SEARCH and FETCH) is no longer listed and costs
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from connector.config import MailboxSettings
from connector.errors import ConfigError, ProviderError, ProviderUnavailable
from connector.models import FetchResult, PostAction, PostActionKind, RawMessage
from providers.fetch_failures import FetchFailures
from providers.imap.actions import apply_action, apply_actions, resolve_folder
from providers.imap.budget import ConnectionBudget
from providers.imap.connection import ImapSession, refuse_insecure
from providers.imap.cursor import UidCursor, message_id
from providers.imap.fetch import fetch_messages
from providers.imap.idle import idle_until_change
from providers.imap.listing import Listings
from providers.oauth import IMAP_SCOPE_MICROSOFT, TokenProvider, build_token_provider

T = TypeVar("T")
log = logging.getLogger("providers.imap")
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 2.0
POLL_SECONDS_WITHOUT_IDLE = 30.0


class ImapInboundProvider:
    """InboundProvider + PushCapable + Checkable + Queued for one configured IMAP mailbox."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        *,
        tokens: TokenProvider | None = None,
        failures: FetchFailures | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        if mailbox.imap is None:
            raise ConfigError([f"mailboxes[{mailbox.id}]: provider imap needs an 'imap:' block"])
        self.mailbox = mailbox
        self.settings = mailbox.imap
        refuse_insecure(self.settings, mailbox.id)
        if tokens is None and self.settings.auth == "xoauth2":
            assert self.settings.oauth is not None
            tokens = build_token_provider(self.settings.oauth, default_scope=IMAP_SCOPE_MICROSOFT)
        self._tokens = tokens
        self._lock = asyncio.Lock()
        self._session: ImapSession | None = None
        budget = budget or ConnectionBudget()  # alone: no bounds, like before budgets existed
        self._ticket = budget.ticket(self.settings.host, idle=self.settings.idle, detach=self._evicted)
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error = ""
        self._highest: dict[str, tuple[int, int]] = {}  # folder -> (uidvalidity, highest UID seen)
        self._listings = Listings()
        self._caught_up: ImapSession | None = None  # the session a fetch last ran on
        self.failures = failures or FetchFailures()

    @property
    def queued(self) -> bool:
        """Waiting for a slot in the connection budget or a login turn (providers.base.Queued)."""
        return self._ticket.queued

    def __repr__(self) -> str:
        return f"ImapInboundProvider(mailbox={self.mailbox.id!r}, host={self.settings.host!r})"

    # ------------------------------------------------------------------ connection handling

    async def _connect(self) -> ImapSession:
        """The live session, or a new one in a slot of the budget (this mailbox's own slot when it
        still holds one: it never waits for itself)."""
        if self._session is not None and self._session.alive:
            return self._session
        self._session = None
        loop = asyncio.get_running_loop()
        wait = self._next_attempt - loop.time()
        if wait > 0:
            self._ticket.release()  # an outage holds no slot
            raise ProviderUnavailable(
                f"reconnect backoff: next attempt in {wait:.0f} s after: {self._last_error}",
                mailbox=self.mailbox.id,
            )
        await self._ticket.acquire()
        try:
            await self._ticket.pause_for_login()
            self._session = await ImapSession.open(self.settings, self.mailbox.id, self._tokens)
        except ProviderUnavailable as exc:
            self._ticket.release()
            self._failures += 1
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (self._failures - 1))
            self._next_attempt = loop.time() + delay
            self._last_error = exc.message
            raise
        except BaseException:
            self._ticket.release()
            raise
        self._failures = 0
        self._next_attempt = 0.0
        return self._session

    async def _call(self, op: Callable[[ImapSession], Awaitable[T]]) -> T:
        """Runs `op` on a live session; retries once on a fresh one if the server dropped it midway."""
        async with self._lock:
            with self._ticket.in_use():
                session = await self._connect()
                try:
                    return await op(session)
                except ProviderUnavailable:
                    if session.alive or not session.closed_by_server:
                        raise  # a timeout or protocol error: do not double the wait
                    self._session = None
                    session = await self._connect()
                    return await op(session)

    def _evicted(self) -> Awaitable[None] | None:
        """The budget took this mailbox's parked slot: the session is let go at once (the next
        call reconnects) and the returned close logs it out."""
        session, self._session = self._session, None
        return session.close() if session is not None else None

    # ------------------------------------------------------------------ InboundProvider

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        """Messages after `cursor` (UIDVALIDITY:UID); a changed UIDVALIDITY replays the folder."""
        return await self._call(lambda s: self._fetch(s, folder, cursor, max(1, limit)))

    async def _fetch(self, session: ImapSession, folder: str, cursor: str | None, limit: int) -> FetchResult:
        await session.sync(folder)
        selected = await session.select(folder)
        validity = selected.uidvalidity
        position = UidCursor.parse(cursor)
        resync = (cursor is not None and position is None) or (
            position is not None and position.validity != validity
        )
        after = position.uid if position is not None and not resync else 0
        self._caught_up = session
        uids = self._listings.rest(folder, validity, after)
        if uids is None:
            uids = await self._search(session, folder, validity, after)
        take = uids[:limit]
        fetched = await fetch_messages(session, folder, take, validity, self.mailbox.max_message_bytes)
        messages, held = await self._fill_gaps(session, folder, validity, after, take, fetched)
        last = held - 1 if held is not None else (take[-1] if take else after)
        more = held is None and len(uids) > len(take)
        self._listings.keep(folder, validity, last, uids[len(take) :] if more else [])
        return FetchResult(messages=messages, cursor=str(UidCursor(validity, last)), more=more, resync=resync)

    async def _search(self, session: ImapSession, folder: str, validity: int, after: int) -> list[int]:
        uids = await session.search_after(after, folder)
        self._highest[folder] = (validity, max([after, *uids[-1:]]))
        return uids

    async def _fill_gaps(
        self,
        session: ImapSession,
        folder: str,
        validity: int,
        after: int,
        take: list[int],
        fetched: list[RawMessage],
    ) -> tuple[list[RawMessage], int | None]:
        """The messages for `take` in order, and the UID the folder is held at (None: not held).

        A UID listed but not returned is looked up again: gone means expunged meanwhile (left
        out, nothing lost); still listed means the server will not hand it over. That is
        counted, and the cursor stops before it until it is due a stand-in.
        """
        by_uid = {int(m.provider_id.rpartition(":")[2]): m for m in fetched}  # "V:UID"
        for m in fetched:
            self.failures.succeeded(folder, m.provider_id)
        if len(by_uid) == len(take):
            return fetched, None
        listed = set(await self._search(session, folder, validity, after))
        out: list[RawMessage] = []
        for uid in take:
            if uid in by_uid:
                out.append(by_uid[uid])
                continue
            if uid not in listed:
                continue
            mid = message_id(validity, uid)
            error = f"the server lists UID {uid} but FETCH returns no message for it"
            if not self.failures.failed(folder, mid):
                if not out:  # first in line: the mailbox shows what holds it
                    raise ProviderError(error, mailbox=self.mailbox.id, folder=folder, uid=uid)
                return out, uid
            log.warning(
                "imap UID %s (%s/%s) handed over as a stand-in: %s", uid, self.mailbox.id, folder, error
            )
            out.append(
                self.failures.stand_in(
                    mailbox_address=self.mailbox.address,
                    folder=folder,
                    message_id=mid,
                    error=error,
                    cursor=mid,
                )
            )
        return out, None

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        if action.kind is PostActionKind.NONE:
            return
        await self._call(lambda s: apply_action(s, message, action))

    async def apply_post_actions(self, messages: Sequence[RawMessage], action: PostAction) -> None:
        if action.kind is PostActionKind.NONE:
            return
        by_folder: dict[str, list[RawMessage]] = {}
        for message in messages:
            by_folder.setdefault(message.folder, []).append(message)
        for folder, group in by_folder.items():
            await self._call(functools.partial(apply_actions, folder=folder, messages=group, action=action))

    async def close(self) -> None:
        self._listings.forget()
        async with self._lock:
            with self._ticket.in_use():  # not evicted (closed twice) while it logs out
                try:
                    if self._session is not None:
                        await self._session.close()
                        self._session = None
                finally:
                    self._ticket.release()

    # ------------------------------------------------------------------ PushCapable

    async def wait_for_change(
        self, folder: str, timeout_seconds: float, wake: asyncio.Event | None = None
    ) -> bool:
        """IDLE on `folder` until something changes (True), the timeout passes or `wake` is set (False).

        New mail that arrived since the last fetch counts as a change at once (aioimaplib drops
        EXISTS responses outside IDLE, so the UIDs are checked before idling). So does a
        connection no fetch has used yet: what arrived while there was none (before start-up,
        during an outage) would not be announced by IDLE.
        """
        return await self._call(lambda s: self._wait(s, folder, timeout_seconds, wake))

    async def _wait(
        self, session: ImapSession, folder: str, timeout_seconds: float, wake: asyncio.Event | None
    ) -> bool:
        if session is not self._caught_up:
            self._caught_up = session  # once per connection, even if the caller's cycle then fails
            return True
        await session.sync(folder)
        selected = await session.select(folder)
        known = self._highest.get(folder)
        if known is not None:
            if known[0] != selected.uidvalidity:
                return True
            if await session.search_after(known[1], folder):
                return True
        if wake is not None and wake.is_set():
            return False
        if self.settings.idle and "IDLE" in session.capabilities:
            return await idle_until_change(session, folder, timeout_seconds, wake)
        return await self._poll(session, folder, timeout_seconds, wake)

    async def _poll(
        self, session: ImapSession, folder: str, timeout_seconds: float, wake: asyncio.Event | None
    ) -> bool:
        """Fallback without IDLE: STATUS every POLL_SECONDS_WITHOUT_IDLE until UIDNEXT/MESSAGES move."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        first = await session.status(folder)
        woken = wake or asyncio.Event()
        while (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(remaining, POLL_SECONDS_WITHOUT_IDLE))
                return False
            if await session.status(folder) != first:
                return True
        return False

    # ------------------------------------------------------------------ Checkable

    async def check(self) -> dict[str, str]:
        """Connects, logs in, looks at every folder and the move target; returns printable facts."""

        async def run(session: ImapSession) -> dict[str, str]:
            s = self.settings
            facts = {
                "server": f"{s.host}:{s.port} ({s.security})",
                "tls": session.tls_description(),
                "login": f"ok ({s.auth} as {s.username})",
                "idle": "yes" if "IDLE" in session.capabilities else "no (polling)",
                "capabilities": " ".join(sorted(session.capabilities)),
            }
            for folder in self.mailbox.folders:
                status = await session.status(folder)
                messages, validity = status.get("MESSAGES", 0), status.get("UIDVALIDITY", "?")
                facts[f"folder {folder}"] = f"exists, {messages} messages, uidvalidity {validity}"
            action = self.mailbox.action
            if action.kind is PostActionKind.MOVE and action.target:
                facts["move target"] = await resolve_folder(session, action.target)
            return facts

        return await self._call(run)
