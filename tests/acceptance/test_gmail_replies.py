"""Replies end to end over the Gmail API: the real OutboxWorker with its default sender and Sent
folder (a Gmail mailbox without an `smtp:` block), the Gmail emulator, sandbox IWD, SQLite store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.config import ConnectorSettings
from connector.convert import convert
from connector.outbox.autoack import AutoAck
from connector.outbox.request import ReplyRequest
from connector.outbox.worker import OutboxWorker
from connector.sandbox import create_app
from connector.status import StatusBoard
from connector.store.outbox import SqlOutbox
from connector.store.sql import SqlStore
from connector.store.types import OutboxState
from tests.connector.outbox.conftest import Clock, Rig
from tests.mailfactory import make_message
from tests.peers.gmail_emulator import GmailEmulator
from tests.peers.sandbox import ASGI_URL, asgi_client

BOX = "gmail-support"
N = 20


@pytest.fixture
def emu() -> Iterator[GmailEmulator]:
    with GmailEmulator() as server:
        yield server


def gmail_settings(emu: GmailEmulator, **box_extra: Any) -> ConnectorSettings:
    box: dict[str, Any] = {
        "id": BOX,
        "address": emu.address,
        "display_name": "Example Support",
        "provider": "gmail",
        "gmail": {"oauth": {"kind": "static", "token": "test-token"}, "api_endpoint": emu.url},
    }
    return ConnectorSettings.model_validate(
        {
            "iwd": {"url": ASGI_URL, "api_key": "k", "ccid": "c"},
            "mailboxes": [box | box_extra],
            "outbox": {"retry_schedule_seconds": [60, 300], "retry_jitter": 0, "retry_horizon_seconds": 3600},
        }
    )


async def start_rig(settings: ConnectorSettings, tmp_path: Path) -> AsyncIterator[Rig]:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path}/store.db")
    app = create_app(":memory:")
    iwd = asgi_client(app)
    outbox = SqlOutbox(store)
    clock = Clock()
    board = StatusBoard()
    worker = OutboxWorker(settings, outbox, iwd, board, clock=clock, rand=lambda: 0.0)  # default factories
    try:
        yield Rig(settings, store, outbox, iwd, app, worker, clock, board)
    finally:
        await worker.dispatcher.close()
        await iwd.aclose()
        await store.close()


@pytest.fixture
async def rig(emu: GmailEmulator, tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in start_rig(gmail_settings(emu), tmp_path):
        yield r


def reply(n: int, item_id: str | None = None) -> ReplyRequest:
    return ReplyRequest.model_validate(
        {
            "mailboxId": BOX,
            "to": [{"address": f"customer{n}@example.net", "name": f"Customer {n}"}],
            "subject": f"RE: Question {n}",
            "textBody": f"Answer {n}",
            "inReplyToItemId": item_id,
        }
    )


async def queued(rig: Rig, n: int = 1) -> str:
    return await rig.queue_in_iwd(
        {"mailboxId": BOX, "to": [{"address": f"c{n}@example.net"}], "subject": "x", "textBody": "y"}
    )


async def test_replies_from_api_and_iwd_queue_go_out_through_gmail_once_in_the_customers_thread(
    rig: Rig, emu: GmailEmulator
) -> None:
    """Each reply is sent once through messages.send, with In-Reply-To/References as composed and
    in the customer's Gmail thread; IWD items become `sent` with the Message-ID Gmail received."""
    assert rig.settings.mailboxes[0].sends_via == "gmail"
    parents = []
    for n in range(N):
        emu.add_message(make_message(n), thread_id=f"thread-{n}")
        parents.append(await rig.inbound_item(n, mailbox=BOX))
    for n in range(N):
        await rig.worker.submit(f"api-{n}", reply(n, parents[n]["id"]))
    iwd_ids = [
        await rig.queue_in_iwd(
            {
                "mailboxId": BOX,
                "to": [{"address": f"c{n}@example.net"}],
                "subject": f"AW: Question {n}",
                "textBody": f"Queued answer {n}",
                "inReplyToItemId": parents[n]["id"],
            }
        )
        for n in range(N)
    ]
    await rig.drain()

    ids = [str(s.message["Message-ID"]) for s in emu.sent]
    assert len(ids) == 2 * N and len(set(ids)) == 2 * N
    assert emu.count("POST", "/messages/send") == 2 * N
    by_to = {str(s.message["To"]): s for s in emu.sent}
    for n in range(N):
        for to in (f"Customer {n} <customer{n}@example.net>", f"c{n}@example.net"):
            sent = by_to[to]
            assert sent.message["In-Reply-To"] == f"<msg-{n}@example.net>"
            assert sent.message["References"] == f"<msg-{n}@example.net>"
            assert sent.message["Subject"] == f"Re: Question {n}"
            assert sent.message["From"] == f"Example Support <{emu.address}>"
            assert sent.message["Auto-Submitted"] is None
            assert sent.thread_id == f"thread-{n}"
    for item_id in iwd_ids:
        item = await rig.iwd.get_email(item_id)
        assert item["status"] == "sent" and item["sentAt"] and item["messageId"] in ids
    entry = await rig.outbox.outbox_get("api-7")
    assert entry is not None and entry.state is OutboxState.SENT and entry.attempts == 1
    assert rig.board.get(BOX).outbound.delivered_total == 2 * N


async def test_gmail_refusal_fails_the_iwd_item_with_googles_text(rig: Rig, emu: GmailEmulator) -> None:
    emu.fail_next(400, reason="invalidArgument", message="Invalid To header", path_contains="/messages/send")
    item_id = await queued(rig)
    await rig.worker.tick()
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "failed" and item["error"]["permanent"] is True
    assert item["error"]["code"] == "smtp_rejected"
    assert "400 invalidArgument: Invalid To header" in item["error"]["message"]
    assert "test-token" not in str(item)
    rig.clock.advance(7200)
    await rig.worker.tick()
    assert emu.sent == []


async def test_sending_limit_429_is_retried_later_and_delivered_once(rig: Rig, emu: GmailEmulator) -> None:
    emu.fail_next(429, retry_after="30", message="User-rate limit exceeded", path_contains="/messages/send")
    item_id = await queued(rig)
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert entry is not None and entry.state is OutboxState.RETRYING
    assert entry.last_error is not None and "Retry-After: 30 s" in entry.last_error
    await rig.worker.tick()  # not due yet
    assert emu.count("POST", "/messages/send") == 1 and emu.sent == []
    rig.clock.advance(61)
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert entry is not None and entry.state is OutboxState.SENT and entry.attempts == 2
    assert len(emu.sent) == 1 and emu.count("POST", "/messages/send") == 2
    assert (await rig.iwd.get_email(item_id))["status"] == "sent"


async def test_send_cut_off_after_the_request_is_uncertain_and_never_resent(
    rig: Rig, emu: GmailEmulator
) -> None:
    """Gmail took the reply but the answer never arrived: uncertain, reported, not sent again."""
    emu.drop_next_send(keep=True)
    item_id = await queued(rig)
    await rig.worker.tick()
    rig.clock.advance(7200)
    await rig.worker.tick()
    assert len(emu.sent) == 1 and emu.count("POST", "/messages/send") == 1
    entry = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert entry is not None and entry.state is OutboxState.UNCERTAIN
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "failed"
    assert item["error"]["code"] == "delivery_uncertain" and item["error"]["permanent"] is True
    assert item["messageId"] == entry.message_id == str(emu.sent[0].message["Message-ID"])


async def test_restart_after_a_crash_in_the_send_finds_the_reply_in_gmails_sent_mail(
    rig: Rig, emu: GmailEmulator
) -> None:
    """Rows left `sending` in phase `data`: the one Gmail has under SENT becomes `sent` (and IWD is
    told); the one it does not have is `uncertain`; neither is sent again."""
    in_sent = await queued(rig, 1)
    unknown = await queued(rig, 2)
    await rig.worker.pull_iwd_queue()
    for item_id in (in_sent, unknown):
        assert await rig.outbox.outbox_claim(f"iwd-{item_id}", rig.clock()) is not None
        await rig.outbox.outbox_set_phase(f"iwd-{item_id}", "data")
    rows = {i: await rig.outbox.outbox_get(f"iwd-{i}") for i in (in_sent, unknown)}
    ids = {i: row.message_id for i, row in rows.items() if row is not None}
    emu.add_message(  # what Gmail filed before the connector died
        f"Message-ID: {ids[in_sent]}\r\nTo: c1@example.net\r\nSubject: x\r\n\r\ny\r\n".encode(),
        labels=("SENT",),
    )
    # a received (not sent) message with the other's id proves nothing
    emu.add_message(f"Message-ID: {ids[unknown]}\r\nSubject: x\r\n\r\nx\r\n".encode())

    await rig.worker.recover()
    await rig.worker.tick()
    after = {i: await rig.outbox.outbox_get(f"iwd-{i}") for i in (in_sent, unknown)}
    states = {i: row.state if row else None for i, row in after.items()}
    assert states == {in_sent: OutboxState.SENT, unknown: OutboxState.UNCERTAIN}
    assert (await rig.iwd.get_email(in_sent))["status"] == "sent"
    assert (await rig.iwd.get_email(unknown))["error"]["code"] == "delivery_uncertain"
    assert emu.count("POST", "/messages/send") == 0


async def test_auto_acknowledgement_through_gmail_does_not_loop(emu: GmailEmulator, tmp_path: Path) -> None:
    """An auto-responder answering every mail (marked Auto-Submitted) gets one acknowledgement."""
    settings = gmail_settings(emu, auto_ack={"enabled": True, "text": "Got it"})
    async for rig in start_rig(settings, tmp_path):
        ack = AutoAck(settings, rig.outbox, rig.worker.enqueue, clock=rig.clock)

        def customer(subject: str, in_reply_to: str | None = None) -> bytes:
            lines = [
                "From: Customer <cust@example.net>",
                f"To: {emu.address}",
                f"Subject: {subject}",
                f"Message-ID: <{uuid.uuid4().hex}@example.net>",
            ]
            if in_reply_to:
                lines += [f"In-Reply-To: {in_reply_to}", "Auto-Submitted: auto-replied"]
            return ("\r\n".join(lines) + "\r\n\r\nHello\r\n").encode()

        first = customer("Where is my order?")
        await ack.on_delivered(BOX, convert(first), first)
        for _second in range(20):
            seen = len(emu.sent)
            await rig.worker.tick()
            for got in emu.sent[seen:]:
                answer = customer(
                    f"Automatic reply: {got.message['Subject']}", str(got.message["Message-ID"])
                )
                await ack.on_delivered(BOX, convert(answer), answer)
            rig.clock.advance(1)
        assert len(emu.sent) == 1
        assert emu.sent[0].message["Auto-Submitted"] == "auto-replied"
        assert emu.sent[0].recipients == ["cust@example.net"]
