"""One attempt at one reply: look up the thread, compose, SMTP, Sent copy, record, report.

Crash safety (docs/replies.md): the row becomes `sending` (attempts + 1) before the SMTP
transaction, gets phase `data` right before the DATA command, and becomes `sent` only after the
server accepted the message and the Sent copy was filed. A row found `sending` at start-up
without phase `data` never reached DATA and is simply tried again; with phase `data` its fate
is unknown: the Sent folder is searched for our Message-ID, and if it is not there the reply is
`uncertain` (reported, never resent blindly unless `outbox.on_uncertain: resend`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import structlog

from connector.config import ConnectorSettings, MailboxSettings
from connector.errors import (
    AuthFailed,
    ConfigError,
    ConnectorError,
    IWDRejected,
    ProviderError,
    SendDeferred,
    SendError,
    SendRejected,
    SendUncertain,
)
from connector.faults import CrashPoints
from connector.iwd.client import IWDClient
from connector.models import RecipientResult, SendReceipt
from connector.outbox.compose import (
    OutgoingAttachment,
    ThreadInfo,
    compose,
    explicit_thread,
    sent_copy,
    thread_from_parent,
)
from connector.outbox.request import ReplyRequest, SettingsSource, current
from connector.outbox.schedule import next_attempt_at
from connector.status import sanitize
from connector.store.outbox import OutboxConflict
from connector.store.types import OutboxEntry, OutboxState, OutboxStore
from providers.base import OutboundSender, SentFolder

log = structlog.get_logger("connector.outbox")


SenderFactory = Callable[[MailboxSettings], OutboundSender]
SentFolderFactory = Callable[[MailboxSettings], SentFolder | None]


class PreparationFailed(ConnectorError):
    """The reply cannot be built (unknown item, missing attachment): permanent for this reply."""

    code = "reply_invalid"


@dataclass
class Outcome:
    entry: OutboxEntry
    error: BaseException | None = None


def result_json(results: tuple[RecipientResult, ...]) -> dict[str, dict[str, Any]]:
    return {
        r.address: {"accepted": r.accepted, "code": r.code, "message": sanitize(r.message, 300)}
        for r in results
    }


def pending_recipients(request: ReplyRequest, results: dict[str, dict[str, Any]]) -> list[str]:
    """Recipients not yet accepted and not refused for good (retries never resend to the accepted)."""
    out = []
    for address in request.recipients():
        known = results.get(address)
        if known is None:
            out.append(address)
            continue
        code = known.get("code")
        if not known.get("accepted") and (code is None or 400 <= int(code) < 500):
            out.append(address)
    return out


class Dispatcher:
    """Sends due replies; holds one sender (one SMTP connection) and one Sent folder per mailbox."""

    def __init__(
        self,
        settings: SettingsSource,
        outbox: OutboxStore,
        iwd: IWDClient,
        *,
        sender_factory: SenderFactory,
        sent_folder_factory: SentFolderFactory,
        clock: Callable[[], datetime],
        rand: Callable[[], float],
        crash: CrashPoints,
    ) -> None:
        self._settings = settings
        self.outbox = outbox
        self.iwd = iwd
        self.sender_factory = sender_factory
        self.sent_folder_factory = sent_folder_factory
        self.clock = clock
        self.rand = rand
        self.crash = crash
        self._senders: dict[str, OutboundSender] = {}
        self._sent: dict[str, SentFolder | None] = {}

    def sender(self, box: MailboxSettings) -> OutboundSender:
        if box.id not in self._senders:
            self._senders[box.id] = self.sender_factory(box)
        return self._senders[box.id]

    def sent_folder(self, box: MailboxSettings) -> SentFolder | None:
        if box.id not in self._sent:
            self._sent[box.id] = self.sent_folder_factory(box)
        return self._sent[box.id]

    async def close(self) -> None:
        for sender in self._senders.values():
            with contextlib.suppress(Exception):
                await sender.close()
        for folder in self._sent.values():
            if folder is not None:
                with contextlib.suppress(Exception):
                    await folder.close()
        self._senders.clear()
        self._sent.clear()

    # ------------------------------------------------------------------ preparation

    async def _thread(self, request: ReplyRequest) -> ThreadInfo:
        found = ThreadInfo()
        if request.inReplyToItemId:
            try:
                parent = await self.iwd.get_email(request.inReplyToItemId)
            except IWDRejected as exc:
                if exc.status == 404:
                    raise PreparationFailed(
                        "inReplyToItemId: IWD has no such item", item_id=request.inReplyToItemId
                    ) from None
                raise
            found = thread_from_parent(
                parent.get("messageId"),
                list(parent.get("references") or []),
                parent.get("inReplyTo"),
                parent.get("subject"),
            )
        return explicit_thread(request, found)

    async def _attachments(self, request: ReplyRequest) -> tuple[OutgoingAttachment, ...]:
        out = []
        for ref in request.attachments:
            try:
                got = await self.iwd.download_attachment(ref.attachmentId)
            except IWDRejected as exc:
                if exc.status == 404:
                    raise PreparationFailed(
                        "attachments: IWD has no such attachment", attachment_id=ref.attachmentId
                    ) from None
                raise
            out.append(
                OutgoingAttachment(
                    filename=ref.filename or got.filename or "attachment",
                    content_type=ref.contentType or got.content_type,
                    data=got.data,
                    content_id=ref.contentId,
                    inline=ref.inline,
                )
            )
        return tuple(out)

    # ------------------------------------------------------------------ one attempt

    async def attempt(self, entry: OutboxEntry) -> Outcome:
        """Never raises for the reply's own problems: they become its state."""
        now = self.clock()
        try:
            box = self.settings.mailbox(entry.mailbox_id)
        except KeyError:
            return Outcome(
                await self._finish(
                    entry,
                    OutboxState.FAILED,
                    "mailbox_unknown",
                    f"mailbox {entry.mailbox_id} is not configured",
                )
            )
        try:
            request = ReplyRequest.model_validate(entry.request)
            thread = await self._thread(request)
            attachments = await self._attachments(request)
            message = compose(
                request,
                mailbox=box,
                message_id=entry.message_id,
                thread=thread,
                date=entry.created_at or now,
                attachments=attachments,
                automatic=entry.origin == "auto",
            )
            raw = message.as_bytes(policy=policy.SMTP)
        except PreparationFailed as exc:
            return Outcome(await self._finish(entry, OutboxState.FAILED, exc.code, str(exc)), exc)
        except ConnectorError as exc:  # IWD unreachable: nothing was sent, try later
            return Outcome(await self._retry(entry, exc, now, count=False), exc)
        except ValueError as exc:  # a header the email package refuses (CR/LF, bad encoding)
            failed = PreparationFailed(f"the reply cannot be composed: {exc}", reply_id=entry.id)
            return Outcome(await self._finish(entry, OutboxState.FAILED, failed.code, str(failed)), failed)
        claimed = await self.outbox.outbox_claim(entry.id, self.clock())
        if claimed is None:
            return Outcome(entry)  # someone else moved it (a person re-queued or cancelled it)
        phase = ["before_data"]  # -> "data" at the DATA command -> "accepted" once the server said 250

        try:
            return await self._send(claimed, box, request, message, raw, phase)
        except Exception as exc:  # a bug or a broken store after the claim: settle by phase
            log.exception("reply_attempt_crashed", reply_id=entry.id, mailbox=box.id, phase=phase[0])
            if phase[0] == "accepted":  # the server has it: report, never resend (even by policy)
                why = f"the server accepted the reply but recording it failed: {exc!r}"
                return Outcome(
                    await self._finish(claimed, OutboxState.UNCERTAIN, "delivery_uncertain", why), exc
                )
            if phase[0] == "data":
                return Outcome(await self.uncertain(claimed, f"the attempt failed during DATA: {exc!r}"), exc)
            return Outcome(await self._retry(claimed, exc, self.clock()), exc)

    async def _send(
        self,
        claimed: OutboxEntry,
        box: MailboxSettings,
        request: ReplyRequest,
        message: EmailMessage,
        raw: bytes,
        phase: list[str],
    ) -> Outcome:
        """The claimed part of an attempt: SMTP, then recording the outcome; `phase[0]` tells the
        caller how far it got should anything unexpected be raised."""
        self.crash.reached("outbox_sending")
        recipients = pending_recipients(request, claimed.results)
        first_accept = not any(r.get("accepted") for r in claimed.results.values())

        async def before_data() -> None:
            phase[0] = "data"
            await self.outbox.outbox_set_phase(claimed.id, "data")

        try:
            receipt = await self.sender(box).send(message, box.address, recipients, before_data=before_data)
        except SendUncertain as exc:
            return Outcome(await self.uncertain(claimed, str(exc), result_json(exc.recipients)), exc)
        except SendRejected as exc:
            return Outcome(
                await self._finish(
                    claimed, OutboxState.FAILED, exc.code, str(exc), result_json(exc.recipients)
                ),
                exc,
            )
        except (SendDeferred, AuthFailed, ProviderError, ConfigError) as exc:
            results = result_json(exc.recipients) if isinstance(exc, SendError) else {}
            return Outcome(await self._retry(claimed, exc, self.clock(), results=results), exc)
        phase[0] = "accepted"
        self.crash.reached("smtp_data_sent")
        return Outcome(await self._accepted(claimed, box, request, raw, receipt, first_accept))

    async def _accepted(
        self,
        entry: OutboxEntry,
        box: MailboxSettings,
        request: ReplyRequest,
        raw: bytes,
        receipt: SendReceipt,
        first_accept: bool,
    ) -> OutboxEntry:
        now = self.clock()
        if first_accept:
            await self._file_sent_copy(box, sent_copy(raw, request), entry.id)
        self.crash.reached("sent_copied")
        results = {**entry.results, **result_json(receipt.recipients)}
        still = [a for a in pending_recipients(request, results) if a in results]
        if still:  # some recipients said 4xx: the accepted ones got it; retry only the others
            deferred = results[still[0]]
            exc = SendDeferred(f"{still[0]}: {deferred.get('code')} {deferred.get('message')}")
            return await self._retry(entry, exc, now, results=result_json(receipt.recipients), sent_at=now)
        refused = [
            f"{a}: {r.get('code')} {r.get('message')}" for a, r in results.items() if not r.get("accepted")
        ]
        done = await self._finish(
            entry,
            OutboxState.SENT,
            "recipients_refused" if refused else None,
            "; ".join(refused)[:500] if refused else None,
            result_json(receipt.recipients),
            sent_at=entry.sent_at or now,
        )
        self.crash.reached("outbox_sent")
        log.info(
            "reply_sent",
            reply_id=entry.id,
            mailbox=box.id,
            message_id=entry.message_id,
            attempts=entry.attempts,
            refused=len(refused),
        )
        return done

    async def _file_sent_copy(self, box: MailboxSettings, raw: bytes, reply_id: str) -> None:
        try:
            folder = self.sent_folder(box)
            if folder is None:
                return
            await folder.append(raw)
        except (ProviderError, ConnectorError) as exc:  # the customer has the reply; the copy is a nicety
            log.warning("sent_copy_failed", reply_id=reply_id, mailbox=box.id, error=str(exc))

    async def uncertain(
        self, entry: OutboxEntry, reason: str, results: dict[str, dict[str, Any]] | None = None
    ) -> OutboxEntry:
        """The server may have the message. Report it (default) or, by policy, send again."""
        log.warning(
            "reply_uncertain",
            reply_id=entry.id,
            mailbox=entry.mailbox_id,
            message_id=entry.message_id,
            reason=reason,
        )
        if self.settings.outbox.on_uncertain == "resend":
            return await self._finish(
                entry, OutboxState.RETRYING, "delivery_uncertain", reason, results, next_at=self.clock()
            )
        return await self._finish(entry, OutboxState.UNCERTAIN, "delivery_uncertain", reason, results)

    async def settle_interrupted(self, entry: OutboxEntry) -> OutboxEntry:
        """A row left `sending` by a crash: retry, mark sent (found in Sent), or uncertain."""
        if entry.phase != "data":
            return await self._finish(
                entry,
                OutboxState.RETRYING,
                "interrupted",
                "the connector stopped before the message was transferred; sending again",
                next_at=self.clock(),
            )
        # A copy in Sent proves this attempt only if no earlier attempt filed it: after a partial
        # acceptance the copy was filed then, and this attempt (for the others) proves nothing.
        earlier_accept = any(r.get("accepted") for r in entry.results.values())
        try:
            box = self.settings.mailbox(entry.mailbox_id)
            folder = None if earlier_accept else self.sent_folder(box)
            if folder is not None and await folder.contains(entry.message_id):
                log.info("reply_found_in_sent", reply_id=entry.id, message_id=entry.message_id)
                return await self._finish(
                    entry, OutboxState.SENT, None, None, sent_at=entry.sent_at or self.clock()
                )
        except (KeyError, ConnectorError, ValueError) as exc:
            log.warning("sent_folder_check_failed", reply_id=entry.id, error=str(exc))
        return await self.uncertain(
            entry,
            "the connector stopped during the SMTP DATA exchange; the server may have accepted the "
            "message (check the customer's thread before resending)",
        )

    # ------------------------------------------------------------------ outcomes

    async def _retry(
        self,
        entry: OutboxEntry,
        exc: BaseException,
        now: datetime,
        *,
        results: dict[str, dict[str, Any]] | None = None,
        count: bool = True,
        sent_at: datetime | None = None,
    ) -> OutboxEntry:
        attempts = entry.attempts if count else max(entry.attempts, 1)
        when = next_attempt_at(attempts, entry.first_attempt_at, now, self.settings.outbox, self.rand)
        code = getattr(exc, "code", "error")
        if when is None:
            horizon = self.settings.outbox.retry_horizon_seconds
            return await self._finish(
                entry,
                OutboxState.FAILED,
                str(code),
                f"gave up after {entry.attempts} attempt(s) over {horizon:g} s; last error: {exc}",
                results,
            )
        return await self._finish(
            entry, OutboxState.RETRYING, str(code), str(exc), results, next_at=when, sent_at=sent_at
        )

    async def _finish(
        self,
        entry: OutboxEntry,
        state: OutboxState,
        code: str | None,
        error: str | None,
        results: dict[str, dict[str, Any]] | None = None,
        *,
        next_at: datetime | None = None,
        sent_at: datetime | None = None,
    ) -> OutboxEntry:
        try:
            return await self.outbox.outbox_finish(
                entry.id,
                state,
                now=self.clock(),
                results=results,
                error_code=code,
                error=sanitize(error) if error else None,
                next_attempt_at=next_at,
                sent_at=sent_at,
                expected=entry.state,
            )
        except OutboxConflict as exc:  # another worker moved the row first: theirs stands
            log.warning(
                "reply_state_race_lost",
                reply_id=entry.id,
                wanted=state.value,
                found=exc.current.state.value,
            )
            return exc.current

    @property
    def settings(self) -> ConnectorSettings:
        return current(self._settings)
