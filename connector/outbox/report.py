"""Tells IWD what happened to an agent's reply (PATCH /emails/{id}), and the status board too.

IWD's `error.permanent` says whether the connector will try again by itself:
- retrying  -> status `sending`, error {code, message, permanent: false}
- failed    -> status `failed`,  error {code, message (the SMTP server's text), permanent: true}
- uncertain -> status `failed`,  error {code `delivery_uncertain`, permanent: true}: the connector
  will not resend on its own; the customer may already have it (docs/replies.md)
- sent      -> status `sent`, sentAt, messageId (+ error `recipients_refused` if some refused)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from connector.errors import ConnectorError, IWDRejected
from connector.iwd.client import IWDClient
from connector.status import LastError, MailboxState, StatusBoard, sanitize, state_for
from connector.store.types import OutboxEntry, OutboxState, OutboxStore

log = structlog.get_logger("connector.outbox")

_STATUS = {
    OutboxState.SENT: "sent",
    OutboxState.FAILED: "failed",
    OutboxState.UNCERTAIN: "failed",
    OutboxState.RETRYING: "sending",
}


def iwd_patch(entry: OutboxEntry) -> dict[str, Any] | None:
    """The PATCH body for the reply's current state; None for states IWD need not hear about."""
    status = _STATUS.get(entry.state)
    if status is None:
        return None
    body: dict[str, Any] = {"status": status, "messageId": entry.message_id}
    if entry.state is OutboxState.SENT:
        body["sentAt"] = entry.sent_at or entry.updated_at
    if entry.last_error_code:
        body["error"] = {
            "code": entry.last_error_code,
            "message": sanitize(entry.last_error or entry.last_error_code),
            "permanent": entry.state is not OutboxState.RETRYING,
        }
    return body


async def report_to_iwd(iwd: IWDClient, outbox: OutboxStore, entry: OutboxEntry) -> bool:
    """PATCHes the IWD item once per state; False (and retried next tick) when IWD is unreachable."""
    if entry.iwd_item_id is None:
        return True
    body = iwd_patch(entry)
    if body is None:
        return True
    try:
        await iwd.patch_email(entry.iwd_item_id, body)
    except IWDRejected as exc:
        # e.g. the item was deleted in IWD: nothing more we can tell it; keep the fact in our row
        log.warning("iwd_report_rejected", reply_id=entry.id, item_id=entry.iwd_item_id, error=str(exc))
    except ConnectorError as exc:
        log.info("iwd_report_deferred", reply_id=entry.id, item_id=entry.iwd_item_id, error=str(exc))
        return False
    await outbox.outbox_mark_reported(entry.id, entry.state)
    return True


def update_board(
    board: StatusBoard,
    counts: Mapping[OutboxState, int],
    mailbox_id: str,
    at: datetime,
    error: BaseException | None,
    *,
    counts_only: bool = False,
) -> None:
    """Outbound status for the status reporter: backlog = replies not yet sent, deliveredTotal = sent.
    `counts_only` (nothing was tried) keeps the state and last error as they are."""
    counts = {**dict.fromkeys(OutboxState, 0), **counts}
    box = board.get(mailbox_id).outbound
    box.last_poll_at = at
    box.backlog = counts[OutboxState.QUEUED] + counts[OutboxState.RETRYING] + counts[OutboxState.SENDING]
    box.delivered_total = counts[OutboxState.SENT]
    if counts_only:
        pass
    elif error is None:
        box.state = MailboxState.OK
        box.last_success_at = at
    else:
        box.state = state_for(error)
        if box.state is MailboxState.ERROR and getattr(error, "code", "") == "smtp_deferred":
            box.state = MailboxState.DEGRADED
        box.last_error = LastError(
            code=str(getattr(error, "code", "error")), message=sanitize(str(error)), at=at
        )
    board.touch(mailbox_id)  # the box was changed in place: the status reporter sends it
