"""One mailbox's sync cycle: fetch → convert → upload attachments → create item → commit → post-action.

The order of steps, and why it loses and duplicates nothing, is in `connector/sync/delivery.py`; what
happens to one fetched batch once converted is in `connector/sync/batch_delivery.py`.
This module imports no concrete provider: it sees only `providers.base.InboundProvider`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from datetime import datetime

import structlog

from connector.config import MailboxSettings
from connector.convert import convert, unparseable_item
from connector.errors import MessageError
from connector.faults import CrashPoints
from connector.iwd.client import IWDClient
from connector.models import EmailItem, RawMessage, is_stand_in_message_id
from connector.store.types import LedgerState, QuarantineEntry, Store
from connector.sync.batch_delivery import HANDLED, BatchDelivery, Outcome, Work
from connector.sync.cycle import CycleReport, OnDelivered, SyncEvents, cycle_summary, utcnow
from providers.base import InboundProvider

__all__ = ["CycleReport", "MailboxSync", "OnDelivered", "SyncEvents", "cycle_summary"]

FETCH_LIMIT = 200
CONVERT_IN_THREAD_BYTES = 256 * 1024

log = structlog.get_logger("connector.sync.pipeline")


class MailboxSync:
    """Moves new mail of one mailbox into IWD. Holds no state between cycles but the store's."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        provider: InboundProvider,
        store: Store,
        iwd: IWDClient,
        *,
        quarantine_max_attempts: int = 3,
        clock: Callable[[], datetime] = utcnow,
        stop: asyncio.Event | None = None,
        crash: CrashPoints | None = None,
        events: SyncEvents | None = None,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.store = store
        self.iwd = iwd
        self.quarantine_max_attempts = quarantine_max_attempts
        self.clock = clock
        self.stop = stop or asyncio.Event()
        self.crash = crash or CrashPoints(None)
        self.log = log.bind(mailbox=mailbox.id)
        self.wind_down: asyncio.Event | None = None  # set by the daemon when the lease is handed over
        self.delivery = BatchDelivery(
            mailbox,
            provider,
            store,
            iwd,
            clock=clock,
            stop=self.stop,
            crash=self.crash,
            log=self.log,
            events=events,
            on_delivered=on_delivered,
        )

    def _winding_down(self) -> bool:
        """Stopping, or handing the mailbox to another replica: no new batch (the current one,
        unlike on `stop`, is delivered and committed in full first)."""
        return self.stop.is_set() or (self.wind_down is not None and self.wind_down.is_set())

    # the daemon swaps these on a live sync (watchdog restart, status wiring): keep one copy
    @property
    def provider(self) -> InboundProvider:
        return self.delivery.provider

    @provider.setter
    def provider(self, value: InboundProvider) -> None:
        self.delivery.provider = value

    @property
    def events(self) -> SyncEvents | None:
        return self.delivery.events

    @events.setter
    def events(self, value: SyncEvents | None) -> None:
        self.delivery.events = value

    async def run_cycle(self) -> CycleReport:
        """Raises ProviderError / IWDUnavailable / StoreError when the cycle cannot go on;
        everything delivered before that is committed."""
        report = CycleReport(self.mailbox.id)
        await self._finish_post_actions(report)
        held = await self._retry_quarantine(report)
        for folder in self.mailbox.folders:
            if self._winding_down():
                break
            await self._sync_folder(folder, report, held)
        return report

    # ----------------------------------------------------------------- folder walk

    async def _sync_folder(self, folder: str, report: CycleReport, held: Collection[tuple[str, str]]) -> None:
        cursor = await self.store.get_cursor(self.mailbox.id, folder)
        while not self._winding_down():
            result = await self.provider.fetch(folder, cursor, FETCH_LIMIT)
            if result.resync and folder not in report.resynced_folders:
                report.resynced_folders.append(folder)
                self.log.warning("folder_resync", folder=folder, reason="cursor no longer valid")
            report.fetched += len(result.messages)
            if self.events is not None:
                self.events.fetched(self.mailbox.id, len(result.messages))
            handled_all = await self._process_batch(result.messages, report, held)
            if not handled_all:
                return
            if result.cursor is not None:
                last = result.messages[-1].cursor if result.messages else cursor
                if result.cursor != last:
                    await self.store.set_cursor(self.mailbox.id, folder, result.cursor)
                cursor = result.cursor
            elif result.messages and result.messages[-1].cursor is not None:
                cursor = result.messages[-1].cursor
            if not result.more:
                return

    async def _process_batch(
        self,
        messages: list[RawMessage],
        report: CycleReport,
        held: Collection[tuple[str, str]] = (),
    ) -> bool:
        """Delivers one fetched batch (messages of one folder, in server order).

        Returns False when the batch was cut short (stop event) or a message in it is left for the
        next cycle: the folder cursor must then stay where the ledger put it. Raises after
        committing what was delivered when IWD or the store cannot go on.
        """
        if not messages:
            return True
        known = await self.store.ledger_lookup(
            self.mailbox.id, messages[0].folder, [m.provider_id for m in messages]
        )
        works: list[Work] = []
        for message in messages:
            if self.stop.is_set():
                break
            self.crash.reached("fetched")
            entry = known.get(message.provider_id)
            work = Work(message, entry=entry)
            works.append(work)
            if entry is not None and entry.state is not LedgerState.PENDING:
                work.outcome = Outcome.ALREADY
                continue
            if (message.folder, message.provider_id) in held:
                work.outcome = Outcome.QUARANTINED  # retried from its kept copy this cycle already
                continue
            try:
                work.item = await self._convert(message)
            except MessageError as exc:
                await self.delivery.quarantine(message, str(exc), report)
                work.outcome = Outcome.QUARANTINED
                continue
            self.crash.reached("converted")
        try:
            handled = await self.delivery.deliver(works, report, advance=True)
        finally:  # also when IWD gives up: what it took is out of the backlog, the rest waits
            if self.events is not None:
                self.events.settled(self.mailbox.id, sum(w.outcome in HANDLED for w in works))
        return handled and len(works) == len(messages) and not self.stop.is_set()

    async def _convert(self, message: RawMessage) -> EmailItem:
        def run() -> EmailItem:
            return convert(
                message.raw,
                size=message.size,
                headers_only=message.headers_only,
                thread_hint=message.thread_hint,
            )

        try:
            if len(message.raw) > CONVERT_IN_THREAD_BYTES:
                return await asyncio.to_thread(run)
            return run()
        except MessageError:
            raise
        except Exception as exc:  # a converter bug must not block the folder: quarantine it
            raise MessageError(f"converter failed: {type(exc).__name__}: {exc}") from exc

    # ----------------------------------------------------------------- delivery

    async def _finish_post_actions(self, report: CycleReport) -> None:
        entries = await self.store.ledger_pending_actions(self.mailbox.id)
        if entries and not self.stop.is_set():
            stubs = [
                (
                    RawMessage(
                        folder=e.folder,
                        provider_id=e.provider_id,
                        raw=b"",
                        size=0,
                        stand_in=is_stand_in_message_id(e.message_id),
                    ),
                    e.external_id,
                )
                for e in entries
            ]
            await self.delivery.post_actions(stubs, report)

    # ----------------------------------------------------------------- quarantine

    async def _retry_quarantine(self, report: CycleReport) -> set[tuple[str, str]]:
        """Every cycle retries quarantined mail from its kept raw bytes; after the last attempt the
        message still reaches a person as an item flagged unparseable with the raw .eml attached.
        Returns the (folder, provider id) still held, which the folder walk then leaves alone."""
        held: set[tuple[str, str]] = set()
        for entry in await self.store.quarantine_list(self.mailbox.id):
            if self.stop.is_set() or not await self.retry_quarantined(entry, report):
                held.add((entry.folder, entry.provider_id))
        return held

    async def retry_quarantined(
        self, entry: QuarantineEntry, report: CycleReport | None = None, *, as_unparseable: bool = False
    ) -> bool:
        """Converts the kept message again, with the metadata it was fetched with (so receivedAt,
        size and the oversize flag are the server's, not the retry's); True once IWD holds it.
        `as_unparseable`: a person chose to deliver it now, flagged, with the raw .eml attached."""
        report = report or CycleReport(self.mailbox.id)
        message = entry.message

        def last_resort(error: str) -> EmailItem:
            return unparseable_item(entry.raw, error, size=message.size, headers_only=message.headers_only)

        if as_unparseable or entry.attempts >= self.quarantine_max_attempts:
            # out of attempts, whether conversion failed or IWD kept refusing the item: a person
            # still gets the mail, flagged unparseable with the raw .eml attached
            item = last_resort(entry.error)
        else:
            try:
                item = await self._convert(message)
            except MessageError as exc:
                if entry.attempts + 1 < self.quarantine_max_attempts:
                    await self.delivery.quarantine(message, str(exc), report)
                    return False
                item = last_resort(str(exc))
        known = await self.store.ledger_lookup(self.mailbox.id, entry.folder, [entry.provider_id])
        work = Work(message, entry=known.get(entry.provider_id), item=item)
        if work.entry is not None and work.entry.state is not LedgerState.PENDING:
            work.outcome = Outcome.ALREADY
            work.external_id = work.entry.external_id
        await self.delivery.deliver([work], report, advance=False)
        if work.outcome not in (Outcome.DELIVERED, Outcome.ALREADY):
            return False
        await self.store.quarantine_resolve(entry.id, work.external_id)
        return True
