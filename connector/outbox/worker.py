"""The outbox worker: a daemon Service that takes replies in and sends those that are due.

Each tick: pull IWD's queued outbound items into the outbox (claiming each with PATCH
`sending`), send the due rows (mailboxes in parallel, one at a time within a mailbox: one SMTP
connection each), report new states to IWD, refresh the outbound status. The local API calls
`submit()`, which writes the row durably before it answers, then wakes the loop.
`run --once` runs the same start-up recovery and one tick through `run_once()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from connector.config import ConnectorSettings, MailboxSettings
from connector.errors import ConnectorError, SendRejected, StoreError
from connector.faults import CrashPoints
from connector.iwd.client import IWDClient
from connector.outbox.compose import new_message_id
from connector.outbox.dispatch import (
    Dispatcher,
    PreparationFailed,
    SenderFactory,
    SentFolderFactory,
)
from connector.outbox.report import report_to_iwd, update_board
from connector.outbox.request import ReplyRequest, SettingsSource, choose_mailbox, current
from connector.status import StatusBoard
from connector.store.types import OutboxEntry, OutboxState, OutboxStore
from providers.base import SentFolder

log = structlog.get_logger("connector.outbox")

DUE_BATCH = 200
IWD_PAGE = 100
STOP_GRACE_SECONDS = 30.0
_REQUEST_FIELDS = frozenset(ReplyRequest.model_fields) | {"from"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_sender(box: MailboxSettings) -> Any:
    from providers.registry import build_sender

    return build_sender(box)


def default_sent_folder(box: MailboxSettings) -> SentFolder | None:
    from providers.registry import build_sent_folder

    return build_sent_folder(box)


class NoOutboundMailbox(ConnectorError):
    code = "no_outbound_mailbox"


class OutboxWorker:
    name = "outbox"

    def __init__(
        self,
        settings: SettingsSource,
        outbox: OutboxStore,
        iwd: IWDClient,
        board: StatusBoard,
        *,
        sender_factory: SenderFactory = default_sender,
        sent_folder_factory: SentFolderFactory = default_sent_folder,
        clock: Callable[[], datetime] = utcnow,
        rand: Callable[[], float] = random.random,
        crash: CrashPoints | None = None,
    ) -> None:
        self._settings = settings
        self.outbox = outbox
        self.iwd = iwd
        self.board = board
        self.clock = clock
        self.dispatcher = Dispatcher(
            settings,
            outbox,
            iwd,
            sender_factory=sender_factory,
            sent_folder_factory=sent_folder_factory,
            clock=clock,
            rand=rand,
            crash=crash or CrashPoints.from_env(),
        )
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counts: dict[str, int] = {}  # replies per state at the last tick (the gauge)
        self.troubles: list[str] = []  # what failed in the last tick: IWD's queue, sending mailboxes

    # ------------------------------------------------------------------ intake

    async def submit(self, reply_id: str, request: ReplyRequest) -> tuple[OutboxEntry, bool]:
        """Durably queues a reply from the local API; (stored entry, created). Raises
        NoOutboundMailbox when no mailbox can send it; ValueError when `reply_id` was used for a
        different reply."""
        box = choose_mailbox(self.settings, request)
        if box is None:
            raise NoOutboundMailbox(
                "no mailbox can send this reply: name a mailboxId with an smtp block, use a From of a "
                "configured mailbox, or set default_outbound_mailbox"
            )
        entry, created = await self.enqueue(reply_id, box, request, origin="api")
        if not created and entry.request_sha256 != request.fingerprint():
            raise ValueError(f"reply id {reply_id} was already used for a different reply")
        self.wake()
        return entry, created

    async def enqueue(
        self,
        reply_id: str,
        box: MailboxSettings,
        request: ReplyRequest,
        *,
        origin: str,
        iwd_item_id: str | None = None,
    ) -> tuple[OutboxEntry, bool]:
        now = self.clock()
        self.wake()
        return await self.outbox.outbox_enqueue(
            OutboxEntry(
                id=reply_id,
                mailbox_id=box.id,
                origin=origin,
                iwd_item_id=iwd_item_id,
                request=request.to_json(),
                request_sha256=request.fingerprint(),
                message_id=new_message_id(box.address),
                created_at=now,
                next_attempt_at=now,
            )
        )

    async def requeue(self, reply_id: str) -> OutboxEntry | None:
        """A person decided: send an uncertain or failed reply (again)."""
        entry = await self.outbox.outbox_requeue(reply_id, self.clock())
        if entry is not None:
            log.info("reply_requeued", reply_id=reply_id)
            self.wake()
        return entry

    async def mark_sent(self, reply_id: str) -> OutboxEntry | None:
        """A person found an uncertain reply at the customer's end: `sent`, never sent again."""
        now = self.clock()
        try:
            entry = await self.outbox.outbox_finish(
                reply_id, OutboxState.SENT, now=now, sent_at=now, expected=OutboxState.UNCERTAIN
            )
        except StoreError:  # no such reply, or it is not uncertain (OutboxConflict)
            return None
        log.info("reply_marked_sent", reply_id=reply_id)
        self.wake()  # reports the new state to IWD
        return entry

    async def pull_iwd_queue(self) -> int:
        """Takes IWD's queued outbound items into the outbox and claims them (PATCH sending)."""
        taken = 0
        for item in await self.iwd.list_outbound("queued", IWD_PAGE):
            item_id = str(item["id"])
            try:
                request = ReplyRequest.model_validate({k: v for k, v in item.items() if k in _REQUEST_FIELDS})
            except ValueError as exc:
                await self._refuse(item_id, "reply_invalid", f"the outbound item cannot be sent: {exc}")
                continue
            box = choose_mailbox(self.settings, request)
            if box is None:
                why = (
                    f"mailbox {request.mailboxId} cannot send (no smtp block, or outbound_enabled is "
                    "false) and no default_outbound_mailbox is set"
                )
                await self._refuse(item_id, "no_outbound_mailbox", why)
                continue
            entry, _ = await self.enqueue(f"iwd-{item_id}", box, request, origin="iwd", iwd_item_id=item_id)
            if entry.origin != "iwd" or entry.iwd_item_id != item_id:
                # the id is taken by a reply from elsewhere: never let either take over the other
                log.error("iwd_reply_id_taken", item_id=item_id, reply_id=entry.id, origin=entry.origin)
                continue
            if entry.state is OutboxState.QUEUED:
                await self.iwd.patch_email(item_id, {"status": "sending", "messageId": entry.message_id})
                taken += 1
            elif entry.reported_state == entry.state.value:
                # IWD lost our earlier report (restored backup?): tell it again
                await self.outbox.outbox_mark_reported(entry.id, OutboxState.QUEUED)
        return taken

    async def _refuse(self, item_id: str, code: str, message: str) -> None:
        log.warning("iwd_reply_refused", item_id=item_id, code=code, error=message)
        await self.iwd.patch_email(
            item_id,
            {"status": "failed", "error": {"code": code, "message": message[:500], "permanent": True}},
        )

    # ------------------------------------------------------------------ sending

    async def recover(self) -> None:
        """Rows left `sending` by a crash: retried, found in Sent, or uncertain (never resent blindly)."""
        for entry in await self.outbox.outbox_in_state(OutboxState.SENDING):
            settled = await self.dispatcher.settle_interrupted(entry)
            log.info("reply_recovered", reply_id=entry.id, state=settled.state.value, phase=entry.phase)

    async def tick(self) -> int:
        """One round; returns how many replies reached `sent` (`troubles` says what failed)."""
        self.troubles = []
        if self.settings.outbox.iwd_queue_enabled:
            try:
                await self.pull_iwd_queue()
            except ConnectorError as exc:
                log.info("iwd_queue_unavailable", error=str(exc))
                self.troubles.append(f"IWD outbound queue: {exc}")
        due = await self.outbox.outbox_due(self.clock(), DUE_BATCH)
        by_box: dict[str, list[OutboxEntry]] = {}
        for entry in due:
            by_box.setdefault(entry.mailbox_id, []).append(entry)
        outcomes = await asyncio.gather(
            *(self._send_box(box_id, rows) for box_id, rows in by_box.items()), return_exceptions=True
        )
        sent = 0
        tried: dict[str, BaseException | None] = {}
        for box_id, outcome in zip(by_box, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # one mailbox's trouble never stops the others
                log.error("outbox_mailbox_failed", mailbox=box_id, error=repr(outcome), exc_info=outcome)
                self.troubles.append(f"mailbox {box_id}: {outcome!r}")
            else:
                sent += outcome[0]
                tried[box_id] = outcome[1]
                if outcome[1] is not None:
                    self.troubles.append(f"mailbox {box_id}: {outcome[1]}")
        for entry in await self.outbox.outbox_unreported():
            if not await report_to_iwd(self.iwd, self.outbox, entry):
                break
        await self._refresh_counts(tried)
        return sent

    async def _refresh_counts(self, tried: dict[str, BaseException | None]) -> None:
        """Outbound status of every sending mailbox and the totals behind the outbox gauge, from
        one grouped query."""
        counts = await self.outbox.outbox_counts_by_mailbox()
        totals = dict.fromkeys(OutboxState, 0)
        for per_box in counts.values():
            for state, count in per_box.items():
                totals[state] += count
        self.counts = {state.value: count for state, count in totals.items()}
        now = self.clock()
        for box in self.settings.mailboxes:
            if box.id in tried:
                update_board(self.board, counts.get(box.id, {}), box.id, now, tried[box.id])
            elif box.sends_via is not None:
                update_board(self.board, counts.get(box.id, {}), box.id, now, None, counts_only=True)

    def state_counts(self) -> dict[str, int]:
        """Replies per state at the last tick, for the `iwd_email_outbox_items` gauge."""
        return dict(self.counts)

    async def _send_box(self, mailbox_id: str, rows: list[OutboxEntry]) -> tuple[int, BaseException | None]:
        """Sends one mailbox's due replies in order; (sent, the mailbox's own trouble if any)."""
        sent = 0
        error: BaseException | None = None
        for entry in rows:
            if self._stop.is_set():
                break
            outcome = await self.dispatcher.attempt(entry)
            if outcome.entry.state is OutboxState.SENT:
                sent += 1
                error = None
            elif outcome.error is not None and not isinstance(
                outcome.error, SendRejected | PreparationFailed
            ):
                error = outcome.error  # the mailbox's trouble (connection, auth), not this reply's
            if outcome.entry.iwd_item_id is not None and outcome.entry.state is not OutboxState.SENDING:
                await report_to_iwd(self.iwd, self.outbox, outcome.entry)
        return sent, error

    async def run_once(self) -> bool:
        """`run --once`: the daemon's start-up recovery and one tick, then the connections close.

        Sends what is due now (IWD's queued replies and the local outbox); replies keep whatever
        state their attempt gave them (retrying, uncertain, failed), to be taken up by a later
        run. False, with the reason logged, when IWD's queue or a sending mailbox failed.
        """
        try:
            await self.recover()
            sent = await self.tick()
        except ConnectorError as exc:
            log.warning("outbox_tick_failed", error=str(exc), code=exc.code)
            return False
        finally:
            await self.dispatcher.close()
        log.info("outbox_flushed", sent=sent, troubles=self.troubles)
        return not self.troubles

    # ------------------------------------------------------------------ Service

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self.recover()
        self._task = asyncio.create_task(self._loop(), name="outbox")

    async def _loop(self) -> None:
        interval = self.settings.outbox.poll_interval_seconds
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.tick()
            except ConnectorError as exc:
                log.warning("outbox_tick_failed", error=str(exc), code=exc.code)
            except Exception:  # a bug must not end the worker: log it, try again next tick
                log.exception("outbox_tick_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def stop(self) -> None:
        """The reply being sent finishes (its row is then durable); nothing new starts."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_SECONDS)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        await self.dispatcher.close()

    @property
    def settings(self) -> ConnectorSettings:
        return current(self._settings)
