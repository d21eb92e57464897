"""Auto-acknowledgement: one template reply to a customer who starts a new thread.

Loop-proof by construction (peers.md §2 class 11): never to auto-replies, bounces, lists or bulk
mail (the converter's flags), never to a null Return-Path, robots (mailer-daemon, postmaster,
owner-*, *-request, no-reply) or senders asking for no auto-responses (X-Auto-Response-Suppress);
never to a reply in a thread we already wrote in; and at most one per sender per period,
recorded in the store, whatever the other side does. Our acknowledgement is marked
`Auto-Submitted: auto-replied`, so well-behaved responders do not answer it either.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

import structlog

from connector.config import ConnectorSettings
from connector.models import EmailItem
from connector.outbox.compose import thread_from_parent
from connector.outbox.request import ReplyAddress, ReplyRequest, SettingsSource, current
from connector.store.types import OutboxStore

log = structlog.get_logger("connector.outbox")

_ROBOT = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon|no-?reply|do-?not-?reply|owner-.*|.*-request|.*-bounces?)$",
    re.IGNORECASE,
)
_SUPPRESS = frozenset({"all", "autoreply", "oof"})


def skip_reason(item: EmailItem, raw: bytes, own_addresses: set[str]) -> str | None:
    """Why this message must not be acknowledged, or None when it may be."""
    if item.flags.auto_reply:
        return "auto_reply"
    if item.flags.bounce or item.bounce is not None:
        return "bounce"
    if item.flags.unparseable:
        return "unparseable"
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw.split(b"\r\n\r\n", 1)[0][:65536])
    return_path = " ".join(str(v) for v in headers.get_all("Return-Path", []))
    if return_path.replace(" ", "") in ("<>", "<<>>"):
        return "null_return_path"
    suppress = {
        p.strip().lower() for v in headers.get_all("X-Auto-Response-Suppress", []) for p in str(v).split(",")
    }
    if suppress & _SUPPRESS:
        return "auto_response_suppressed"
    target = reply_target(item)
    if target is None:
        return "no_sender"
    if target.address.lower() in own_addresses:
        return "own_address"
    if _ROBOT.match(target.address.rsplit("@", 1)[0]):
        return "robot_sender"
    return None


def reply_target(item: EmailItem) -> ReplyAddress | None:
    """Whom to acknowledge; None when there is nobody we could send to (e.g. a non-ASCII address)."""
    who = item.reply_to[0] if item.reply_to else item.sender
    if who is None or "@" not in who.address:
        return None
    try:
        return ReplyAddress(address=who.address, name=who.name)
    except ValueError:
        return None


class AutoAck:
    """The pipeline's `on_delivered` hook for mailboxes with `auto_ack.enabled`."""

    def __init__(
        self,
        settings: SettingsSource,
        outbox: OutboxStore,
        enqueue: Callable[..., Awaitable[object]],
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self.outbox = outbox
        self.enqueue = enqueue  # OutboxWorker.enqueue
        self.clock = clock
        self.sent = 0

    async def on_delivered(self, mailbox_id: str, item: EmailItem, raw: bytes) -> None:
        """Queues an acknowledgement when one is due. Raises nothing the pipeline must handle."""
        try:
            box = self.settings.mailbox(mailbox_id)
        except KeyError:
            return
        cfg = box.auto_ack
        if cfg is None or not cfg.enabled or box.sends_via is None:
            return
        own = {b.address.lower() for b in self.settings.mailboxes}
        reason = skip_reason(item, raw, own)
        thread_ids = [i for i in (item.in_reply_to, *item.references) if i]
        if reason is None and thread_ids and await self.outbox.outbox_known_message_ids(thread_ids):
            reason = "reply_in_our_thread"
        target = reply_target(item)
        if (
            reason is None
            and target is not None
            and not await self.outbox.auto_ack_claim(box.id, target.address, self.clock(), cfg.period_seconds)
        ):
            reason = "already_acknowledged_in_period"
        if reason is not None or target is None:
            log.debug("auto_ack_skipped", mailbox=box.id, message_id=item.message_id, reason=reason)
            return
        thread = thread_from_parent(item.message_id, item.references, item.in_reply_to, item.subject)
        request = ReplyRequest(
            mailboxId=box.id,
            to=[target],
            subject=cfg.subject or item.subject,
            textBody=cfg.text,
            htmlBody=cfg.html,
            inReplyTo=thread.in_reply_to,
            references=list(thread.references),
        )
        key = hashlib.sha256(f"{box.id}\0{item.message_id}".encode()).hexdigest()[:32]
        await self.enqueue(f"auto-{key}", box, request, origin="auto")
        self.sent += 1
        log.info("auto_ack_queued", mailbox=box.id, to=target.address, message_id=item.message_id)

    @property
    def settings(self) -> ConnectorSettings:
        return current(self._settings)
