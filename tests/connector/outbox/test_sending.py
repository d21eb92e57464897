"""Replies through the outbox to a real SMTP server (aiosmtpd, STARTTLS + AUTH), Dovecot, sandbox IWD."""

from __future__ import annotations

import imaplib
import time

from prometheus_client.parser import text_string_to_metric_families

from connector.metrics import ConnectorMetrics
from connector.outbox.request import ReplyRequest
from connector.store.types import OutboxState
from tests.connector.outbox.conftest import settings_for
from tests.connector.outbox.smtp_peer import Rules, SmtpPeer
from tests.peers.dovecot import Dovecot

N = 200


def sent_folder_message_ids(dovecot: Dovecot, user: tuple[str, str]) -> list[str]:
    client = imaplib.IMAP4("127.0.0.1", dovecot.plain_port)
    client.login(*user)
    client.select("Sent")
    _, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    client.logout()
    ids = []
    for part in data:
        if isinstance(part, tuple):
            assert b"\\Seen" in part[0]
            ids.append(part[1].decode().split(":", 1)[1].strip())
    return ids


def reply(n: int, item_id: str | None = None, **extra: object) -> ReplyRequest:
    body: dict[str, object] = {
        "mailboxId": "support",
        "to": [{"address": f"customer{n}@example.net", "name": f"Customer {n}"}],
        "subject": f"RE: Question {n}",
        "textBody": f"Answer {n}",
        "htmlBody": f"<p>Answer {n}</p>",
        "inReplyToItemId": item_id,
    }
    body.update(extra)
    return ReplyRequest.model_validate(body)


async def test_replies_from_api_and_iwd_queue_are_sent_once_threaded_and_filed_in_sent(
    make_rig, smtp: SmtpPeer, dovecot: Dovecot
) -> None:
    """200 API replies and 200 IWD-queued replies: each received once, threaded, and in Sent (\\Seen)."""
    user = dovecot.add_user()
    rig = await make_rig(settings_for(smtp, dovecot=dovecot, user=user))
    parents = [await rig.inbound_item(n) for n in range(N)]
    for n in range(N):
        await rig.worker.submit(f"api-{n}", reply(n, parents[n]["id"]))
    iwd_ids = [
        await rig.queue_in_iwd(
            {
                "mailboxId": "support",
                "to": [{"address": f"c{n}@example.net"}],
                "subject": f"AW: Question {n}",
                "textBody": f"Queued answer {n}",
                "inReplyToItemId": parents[n]["id"],
            }
        )
        for n in range(N)
    ]
    started = time.monotonic()
    await rig.drain()
    elapsed = time.monotonic() - started

    counts = smtp.by_message_id()
    assert len(counts) == 2 * N and set(counts.values()) == {1}
    by_to = {str(r.message["To"]): r.message for r in smtp.received}
    for n in range(N):
        parent_id = f"<msg-{n}@example.net>"
        for to, subject in (
            (f"Customer {n} <customer{n}@example.net>", f"Re: Question {n}"),
            (f"c{n}@example.net", f"Re: Question {n}"),
        ):
            msg = by_to[to]
            assert msg["In-Reply-To"] == parent_id
            assert msg["References"] == parent_id
            assert msg["Subject"] == subject
            assert msg["From"] == "Example Support <support@example.com>"
            assert msg["Auto-Submitted"] is None
    for item_id in iwd_ids:
        item = await rig.iwd.get_email(item_id)
        assert item["status"] == "sent" and item["sentAt"] and item["messageId"] in counts
    api_entry = await rig.outbox.outbox_get("api-7")
    assert api_entry is not None and api_entry.state is OutboxState.SENT and api_entry.attempts == 1
    assert sorted(sent_folder_message_ids(dovecot, user)) == sorted(counts)
    assert rig.board.get("support").outbound.delivered_total == 2 * N
    assert rig.board.get("support").outbound.backlog == 0
    print(f"\n{2 * N} replies sent + filed in Sent in {elapsed:.2f} s")


async def test_greylisted_reply_is_retried_and_delivered_later(make_rig, smtp: SmtpPeer) -> None:
    """451 at RCPT: retrying with the next attempt a minute later; delivered once the greylist passes."""
    rig = await make_rig(settings_for(smtp))
    tries: list[str] = []

    def greylist(address: str) -> str | None:
        tries.append(address)
        return "451 4.7.1 Greylisted, try again later" if len(tries) == 1 else None

    smtp.rules = Rules(rcpt=greylist)
    await rig.worker.submit("grey-1", reply(1))
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("grey-1")
    assert entry is not None and entry.state is OutboxState.RETRYING
    assert entry.last_error is not None and "Greylisted" in entry.last_error
    assert (entry.next_attempt_at - rig.clock()).total_seconds() == 60  # type: ignore[operator]
    await rig.worker.tick()  # not due yet
    assert smtp.received == []
    rig.clock.advance(61)
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("grey-1")
    assert entry is not None and entry.state is OutboxState.SENT and entry.attempts == 2
    assert len(smtp.received) == 1


async def test_run_once_says_when_a_mailbox_could_not_send_and_keeps_the_reply_for_a_later_run(
    make_rig, smtp: SmtpPeer
) -> None:
    """A greylisted reply makes `run_once` False and stays retrying; a later run, once due, sends it."""
    rig = await make_rig(settings_for(smtp))
    smtp.rules = Rules(rcpt=lambda _address: "451 4.7.1 Greylisted, try again later")
    await rig.worker.submit("once-1", reply(1))
    assert await rig.worker.run_once() is False
    entry = await rig.outbox.outbox_get("once-1")
    assert entry is not None and entry.state is OutboxState.RETRYING and smtp.received == []
    smtp.rules = Rules()
    assert await rig.worker.run_once() is True  # not due yet: nothing tried, nothing failed
    assert smtp.received == []
    rig.clock.advance(61)
    assert await rig.worker.run_once() is True
    entry = await rig.outbox.outbox_get("once-1")
    assert entry is not None and entry.state is OutboxState.SENT and len(smtp.received) == 1


async def test_outbox_gauge_and_outbound_status_follow_the_replies_states(make_rig, smtp: SmtpPeer) -> None:
    """/metrics' iwd_email_outbox_items and the mailbox's outbound backlog show a greylisted reply
    as retrying, then as sent, from the worker's tick (one grouped count query)."""
    rig = await make_rig(settings_for(smtp))
    metrics = ConnectorMetrics(rig.board)
    metrics.outbox_counts = rig.worker.state_counts

    def gauge() -> dict[str, float]:
        families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
        return {s.labels["state"]: s.value for s in families["iwd_email_outbox_items"].samples if s.value}

    attempts: list[str] = []

    def first_is_greylisted(address: str) -> str | None:
        attempts.append(address)
        return "451 4.7.1 Later" if len(attempts) == 1 else None

    smtp.rules = Rules(rcpt=first_is_greylisted)
    await rig.worker.submit("gauge-1", reply(1))
    await rig.worker.submit("gauge-2", reply(2))
    await rig.worker.tick()
    assert gauge() == {"retrying": 1.0, "sent": 1.0}
    assert rig.board.get("support").outbound.backlog == 1
    assert rig.board.get("support").outbound.delivered_total == 1
    rig.clock.advance(61)
    await rig.worker.tick()
    assert gauge() == {"sent": 2.0}
    assert rig.board.get("support").outbound.backlog == 0


async def test_rejected_reply_fails_with_the_server_text_visible_in_iwd(make_rig, smtp: SmtpPeer) -> None:
    """550 at RCPT for the only recipient: failed at once, IWD item failed with the SMTP text, permanent."""
    rig = await make_rig(settings_for(smtp))
    smtp.rules = Rules(rcpt=lambda a: "550 5.1.1 <nobody@example.net>: No such user")
    item_id = await rig.queue_in_iwd(
        {"mailboxId": "support", "to": [{"address": "nobody@example.net"}], "subject": "x", "textBody": "y"}
    )
    await rig.worker.tick()
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "failed"
    assert item["error"]["permanent"] is True
    assert item["error"]["code"] == "smtp_rejected"
    assert "550 5.1.1 <nobody@example.net>: No such user" in item["error"]["message"]
    assert smtp.received == []


async def test_mixed_recipients_get_a_result_each_and_only_the_deferred_one_is_retried(
    make_rig, smtp: SmtpPeer
) -> None:
    """One accepted, one 550, one 451: sent to the first, the 550 recorded, the 451 retried alone."""
    rig = await make_rig(settings_for(smtp))
    calls: dict[str, int] = {}

    def rule(address: str) -> str | None:
        calls[address] = calls.get(address, 0) + 1
        if address.startswith("gone"):
            return "550 5.1.1 No such user"
        if address.startswith("later") and calls[address] == 1:
            return "451 4.3.0 Try later"
        return None

    smtp.rules = Rules(rcpt=rule)
    request = reply(1, cc=[{"address": "gone@example.net"}], bcc=[{"address": "later@example.net"}])
    await rig.worker.submit("mixed-1", request)
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("mixed-1")
    assert entry is not None and entry.state is OutboxState.RETRYING
    assert entry.results["customer1@example.net"]["accepted"] is True
    assert entry.results["gone@example.net"] == {
        "accepted": False,
        "code": 550,
        "message": "5.1.1 No such user",
    }
    assert entry.results["later@example.net"]["code"] == 451
    rig.clock.advance(61)
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("mixed-1")
    assert entry is not None and entry.state is OutboxState.SENT
    assert entry.last_error_code == "recipients_refused"
    assert [r.recipients for r in smtp.received] == [["customer1@example.net"], ["later@example.net"]]
    assert "Bcc" not in smtp.received[0].message


async def test_connection_lost_after_the_data_dot_is_uncertain_and_never_resent(
    make_rig, smtp: SmtpPeer
) -> None:
    """The server took the message but the 250 never arrived: uncertain, reported, not sent again."""
    rig = await make_rig(settings_for(smtp))
    smtp.rules = Rules(drop_after_data=lambda msg: True)
    item_id = await rig.queue_in_iwd(
        {"mailboxId": "support", "to": [{"address": "a@example.net"}], "subject": "x", "textBody": "y"}
    )
    await rig.worker.tick()
    smtp.rules = Rules()
    rig.clock.advance(7200)
    await rig.worker.tick()
    assert len(smtp.received) == 1
    entry = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert entry is not None and entry.state is OutboxState.UNCERTAIN
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "failed"
    assert item["error"]["code"] == "delivery_uncertain" and item["error"]["permanent"] is True
    assert item["messageId"] == entry.message_id


async def test_restart_settles_interrupted_rows_by_phase_and_sent_folder(
    make_rig, smtp: SmtpPeer, dovecot: Dovecot
) -> None:
    """Found `sending` at start: before DATA → retried; in DATA and in Sent → sent; else uncertain."""
    user = dovecot.add_user()
    rig = await make_rig(settings_for(smtp, dovecot=dovecot, user=user))
    for name in ("before-data", "in-sent", "unknown"):
        await rig.worker.submit(name, reply(1))
        await rig.outbox.outbox_claim(name, rig.clock())
    for name in ("in-sent", "unknown"):
        await rig.outbox.outbox_set_phase(name, "data")
    filed = await rig.outbox.outbox_get("in-sent")
    box = rig.settings.mailboxes[0]
    folder = rig.worker.dispatcher.sent_folder(box)
    assert folder is not None and filed is not None
    await folder.append(f"Message-ID: {filed.message_id}\r\nSubject: x\r\n\r\nbody\r\n".encode())

    await rig.worker.recover()
    states = {n: (await rig.outbox.outbox_get(n)).state for n in ("before-data", "in-sent", "unknown")}  # type: ignore[union-attr]
    assert states == {
        "before-data": OutboxState.RETRYING,
        "in-sent": OutboxState.SENT,
        "unknown": OutboxState.UNCERTAIN,
    }
    await rig.worker.tick()
    assert len(smtp.received) == 1  # only the one that never reached DATA
