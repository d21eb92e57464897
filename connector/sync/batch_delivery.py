"""One fetched batch on its way into IWD: intents → creation → commit with the cursor → post-actions.

Each step is one store transaction or one call for the whole batch; the rules that make this
lose and duplicate nothing, message by message, are in `connector/sync/delivery.py`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from structlog.typing import FilteringBoundLogger

from connector.activity import Delivery
from connector.config import MailboxSettings
from connector.errors import ConnectorError, IWDRejected, MessageError, ProviderError
from connector.faults import CrashPoints
from connector.iwd.client import IWDClient, is_payload_fault
from connector.iwd.profile import attachment_idempotency_key, build_email_payload
from connector.models import EmailItem, PostAction, PostActionKind, RawMessage
from connector.store.fence import Fenced
from connector.store.types import LedgerEntry, LedgerState, QuarantineEntry, Store
from connector.sync import delivery
from connector.sync.cycle import CycleReport, OnDelivered, SyncEvents
from providers.base import BatchPostActions, InboundProvider

DELIVERY_CONCURRENCY = 4  # attachment uploads in flight per mailbox; item creation is one call per batch


class Outcome(enum.Enum):
    CONVERTED = "converted"  # ready for intent and POST
    QUARANTINED = "quarantined"
    ALREADY = "already"  # IWD holds it already (ledger delivered/acted)
    DUPLICATE = "duplicate"  # same bytes twice in one batch, before the first is recorded
    TWIN = "twin"  # a duplicate whose first copy is being delivered in this batch
    DELIVERED = "delivered"


HANDLED = frozenset({Outcome.QUARANTINED, Outcome.ALREADY, Outcome.DELIVERED})


@dataclass
class Work:
    """One message's way through a batch."""

    message: RawMessage
    entry: LedgerEntry | None = None
    item: EmailItem | None = None
    outcome: Outcome = Outcome.CONVERTED
    external_id: str = ""
    iwd_id: str | None = None
    replay: bool = False
    request_id: str | None = None
    twin: Work | None = None

    def __post_init__(self) -> None:
        if self.entry is not None:
            self.external_id = self.entry.external_id

    @property
    def sha(self) -> str:
        if self.item is not None and self.item.raw_sha256:
            return self.item.raw_sha256
        return delivery.raw_sha256(self.message.raw)


def state_of(work: Work) -> LedgerState | None:
    return work.entry.state if work.entry is not None else None


class BatchDelivery:
    """Delivers the converted messages of one batch for one mailbox."""

    def __init__(
        self,
        mailbox: MailboxSettings,
        provider: InboundProvider,
        store: Store,
        iwd: IWDClient,
        *,
        clock: Callable[[], datetime],
        stop: asyncio.Event,
        crash: CrashPoints,
        log: FilteringBoundLogger,
        events: SyncEvents | None = None,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.provider = provider
        self.store = store
        self.iwd = iwd
        self.clock = clock
        self.stop = stop
        self.crash = crash
        self.log = log
        self.events = events
        self.on_delivered = on_delivered
        self.action: PostAction = mailbox.action

    async def deliver(self, works: list[Work], report: CycleReport, *, advance: bool) -> bool:
        """intent (one transaction) → creation (one call) → commit + cursor (one transaction) →
        post-actions (one server round trip) → acted (one transaction). Returns True when every
        message of the batch is handled, so the caller may move the folder cursor past them all."""
        box = self.mailbox.id
        todo = [w for w in works if w.outcome is Outcome.CONVERTED]
        await self._record_intents(todo, report)
        failure = await self._post_all([w for w in todo if w.outcome is Outcome.CONVERTED], report)
        twins = [w for w in todo if w.twin is not None]  # same bytes twice in this batch
        for work in twins:  # a twin is handled once its first copy is in IWD
            assert work.twin is not None
            if work.outcome is Outcome.TWIN and work.twin.outcome in (Outcome.DELIVERED, Outcome.ALREADY):
                work.outcome = Outcome.ALREADY
        delivered = [w for w in works if w.outcome is Outcome.DELIVERED]
        report.already_delivered += sum(1 for w in works if w.outcome is Outcome.ALREADY)
        no_action = self.action.kind is PostActionKind.NONE
        cursor = None
        if advance:
            for work in works:  # the cursor moves over the handled prefix only
                if work.outcome not in HANDLED:
                    break
                if work.message.cursor is not None:
                    cursor = (box, work.message.folder, work.message.cursor)
        commits = [(w.external_id, w.iwd_id or "") for w in delivered]
        await self.store.ledger_commit_many(commits, acted=no_action, cursor=cursor)
        for work in delivered:
            self.crash.reached("committed")
            await self._announce(work, report)
        to_act = [] if no_action else delivered + [w for w in twins if w.outcome is Outcome.ALREADY]
        to_act += [
            w
            for w in works
            if w.outcome is Outcome.ALREADY and w.twin is None and state_of(w) is LedgerState.DELIVERED
        ]
        await self.post_actions([(w.message, w.external_id) for w in to_act], report)
        if failure is not None:
            raise failure
        return all(w.outcome in HANDLED for w in works)

    async def _record_intents(self, todo: list[Work], report: CycleReport) -> None:
        """Chooses each externalId (a pending one again, or the same email's under an older
        identity) and writes all intents in one transaction."""
        if not todo:
            return
        box = self.mailbox.id
        contents = await self.store.ledger_find_contents(
            box, [(w.sha, w.item.message_id) for w in todo if w.item is not None]
        )
        seen_in_batch: dict[tuple[str, str | None], str] = {}
        entries: list[LedgerEntry] = []
        aliases: list[LedgerEntry] = []
        for work in todo:
            assert work.item is not None
            key = (work.sha, work.item.message_id)
            own = delivery.external_id(box, work.message.folder, work.message.provider_id)
            same = contents.get(key)
            if work.entry is not None:  # a pending intent from an interrupted attempt
                work.external_id = work.entry.external_id
            elif same is not None and same.state is not LedgerState.PENDING:
                # IWD holds this email already: this identity gets its own row pointing at that item,
                # so its post-action runs once and later cycles skip it without converting
                alias = LedgerEntry(
                    external_id=own,
                    mailbox_id=box,
                    folder=work.message.folder,
                    provider_id=work.message.provider_id,
                    raw_sha256=work.sha,
                    message_id=work.item.message_id,
                    state=LedgerState.DELIVERED,
                    iwd_id=same.iwd_id,
                )
                aliases.append(alias)
                work.entry, work.external_id, work.outcome = alias, own, Outcome.ALREADY
                continue
            else:  # a pending intent under an older identity is reused: IWD dedupes the retry
                work.external_id = same.external_id if same is not None else own
            if key in seen_in_batch:  # the very same bytes twice in one batch: one item
                work.external_id = seen_in_batch[key]
                work.outcome = Outcome.DUPLICATE
                continue
            seen_in_batch[key] = work.external_id
            entries.append(
                LedgerEntry(
                    external_id=work.external_id,
                    mailbox_id=box,
                    folder=work.message.folder,
                    provider_id=work.message.provider_id,
                    raw_sha256=work.sha,
                    message_id=work.item.message_id,
                )
            )
        await self.store.ledger_record_aliases(aliases)
        recorded = {e.external_id: e for e in await self.store.ledger_record_intents(entries)}
        for work in todo:
            if work.outcome in (Outcome.DUPLICATE, Outcome.ALREADY):
                continue
            self.crash.reached("intent")
            entry = recorded[work.external_id]
            work.entry = entry
            if entry.state is not LedgerState.PENDING:  # same email, already in IWD
                work.outcome = Outcome.ALREADY
        for work in todo:
            if work.outcome is Outcome.DUPLICATE:  # follows the first copy's fate
                first = next(w for w in todo if w.external_id == work.external_id and w is not work)
                work.entry = first.entry
                work.outcome = Outcome.ALREADY if first.outcome is Outcome.ALREADY else Outcome.TWIN
                work.twin = first

    async def _post_all(self, todo: list[Work], report: CycleReport) -> ConnectorError | None:
        """Attachments first (bounded concurrency), then every item of the batch in one
        `create_emails` call (IWD's batch create, or per-item POSTs where IWD lacks it).
        Returns the error that must stop the cycle, if any; what IWD accepted before it is still
        committed by the caller, and whatever it may have created is replayed (200) next time."""
        slots = asyncio.Semaphore(DELIVERY_CONCURRENCY)
        failure: list[ConnectorError] = []
        payloads: dict[int, dict[str, Any]] = {}

        async def prepare(index: int, work: Work) -> None:
            async with slots:
                if failure or self.stop.is_set():
                    return
                try:
                    payloads[index] = await self._payload(work)
                except (IWDRejected, MessageError) as exc:
                    await self._reject(work, exc, report, failure)
                except ConnectorError as exc:
                    failure.append(exc)
                except Exception as exc:  # a bug building this payload must not block the folder
                    bug = MessageError(f"payload could not be built: {type(exc).__name__}: {exc}")
                    await self._reject(work, bug, report, failure)

        await asyncio.gather(*(prepare(i, w) for i, w in enumerate(todo)))
        ready = [(todo[i], payloads[i]) for i in sorted(payloads)]
        if not ready or failure or self.stop.is_set():
            return failure[0] if failure else None
        try:
            results = await self.iwd.create_emails([payload for _, payload in ready])
        except ConnectorError as exc:
            return exc
        for (work, _), result in zip(ready, results, strict=True):
            if isinstance(result, IWDRejected):
                await self._reject(work, result, report, failure)
                continue
            self.crash.reached("posted")
            work.iwd_id = result.id
            work.replay = not result.created
            work.request_id = result.request_id
            work.outcome = Outcome.DELIVERED
        return failure[0] if failure else None

    async def _reject(
        self, work: Work, exc: IWDRejected | MessageError, report: CycleReport, failure: list[ConnectorError]
    ) -> None:
        """Permanent for this payload: the raw mail goes where a person can see and retry it.
        A rejection that is not about the payload (key, ccid, URL) stops the cycle instead."""
        if isinstance(exc, IWDRejected) and not is_payload_fault(exc):
            failure.append(exc)
            return
        await self.quarantine(work.message, str(exc), report)
        work.outcome = Outcome.QUARANTINED

    async def _payload(self, work: Work) -> dict[str, Any]:
        item = work.item
        assert item is not None
        attachment_ids = [
            await self.iwd.upload_attachment(
                a.data,
                filename=a.filename,
                content_type=a.content_type,
                idempotency_key=attachment_idempotency_key(work.external_id, i, a.sha256),
            )
            for i, a in enumerate(item.attachments)
        ]
        self.crash.reached("uploaded")
        return build_email_payload(
            item,
            external_id=work.external_id,
            mailbox_id=self.mailbox.id,
            provider=self.mailbox.provider,
            received_at=work.message.internal_date or self.clock(),
            attachment_ids=attachment_ids,
        )

    async def _announce(self, work: Work, report: CycleReport) -> None:
        """Counts, logs (one event per item) and tells the hooks; only for committed items."""
        message = work.message
        report.delivered += 1
        lag = (self.clock() - message.internal_date).total_seconds() if message.internal_date else None
        if lag is not None:
            report.max_lag_seconds = max(lag, report.max_lag_seconds or 0.0)
        if self.events is not None:
            detail = Delivery(
                at=self.clock(),
                folder=message.folder,
                subject=work.item.subject if work.item is not None else "",
                external_id=work.external_id,
                iwd_id=work.iwd_id,
                lag_seconds=lag,
            )
            self.events.delivered(self.mailbox.id, lag, detail)
        self.log.info(
            "item_delivered",
            folder=message.folder,
            provider_id=message.provider_id,
            external_id=work.external_id,
            iwd_id=work.iwd_id,
            replay=work.replay,
            request_id=work.request_id,
        )
        if self.on_delivered is not None and work.item is not None:
            try:
                await self.on_delivered(self.mailbox.id, work.item, message.raw)
            except Exception:  # the item is in IWD and committed: a hook must not change that
                self.log.exception("on_delivered_failed", external_id=work.external_id)

    async def post_actions(self, targets: list[tuple[RawMessage, str]], report: CycleReport) -> None:
        """Runs only for delivered entries. A failure leaves them `delivered`: retried next cycle."""
        # settled without touching the server: no action configured, or a stand-in's original
        untouched = self.action.kind is PostActionKind.NONE
        if kept := [ext for m, ext in targets if untouched or m.stand_in]:
            await self.store.ledger_mark_acted_many(kept)
            targets = [(m, ext) for m, ext in targets if not (untouched or m.stand_in)]
        if not targets:
            return
        externals = [ext for _, ext in targets]
        done: list[str] = []
        if isinstance(self.store, Fenced):  # several replicas: only under a live lease (LeaseLost)
            await self.store.fence_check("post_action")
        if isinstance(self.provider, BatchPostActions):
            try:
                await self.provider.apply_post_actions([m for m, _ in targets], self.action)
                done = externals
            except ProviderError as exc:
                self._post_action_failed(targets[0][0], len(targets), exc, report)
        else:
            for message, ext in targets:
                try:
                    await self.provider.apply_post_action(message, self.action)
                    done.append(ext)
                except ProviderError as exc:
                    self._post_action_failed(message, 1, exc, report)
        for _ in done:
            self.crash.reached("acted")
        await self.store.ledger_mark_acted_many(done)
        report.acted += len(done)

    def _post_action_failed(
        self, message: RawMessage, count: int, exc: ProviderError, report: CycleReport
    ) -> None:
        report.post_action_failures += count
        self.log.warning(
            "post_action_failed",
            folder=message.folder,
            provider_id=message.provider_id,
            messages=count,
            action=str(self.action),
            error=str(exc),
        )

    async def quarantine(self, message: RawMessage, error: str, report: CycleReport) -> QuarantineEntry:
        """Keeps the message with its server metadata, so a retry makes the item it would have been."""
        entry = await self.store.quarantine_put(self.mailbox.id, message, error)
        report.quarantined += 1
        if self.events is not None:
            self.events.quarantined(self.mailbox.id)
        self.log.warning(
            "message_quarantined",
            folder=message.folder,
            provider_id=message.provider_id,
            attempts=entry.attempts,
            error=error,
        )
        return entry
