"""End to end: agents' replies → OutboxWorker (default factories) → Graph sendMail (emulator) →
IWD told `sent`/`failed`, for a Graph mailbox with no `smtp:` block (so `sends_via` is graph)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from connector.config import ConnectorSettings
from connector.convert import convert
from connector.outbox.autoack import AutoAck
from connector.outbox.compose import ThreadInfo, compose
from connector.outbox.request import ReplyRequest
from connector.store.types import OutboxState
from providers.graph.send import GraphSender, GraphSentFolder
from tests.connector.outbox.conftest import Rig, make_rig  # noqa: F401  (the rig fixture)
from tests.connector.outbox.test_sending import reply
from tests.peers.graph_emulator import GraphEmulator
from tests.peers.sandbox import ASGI_URL

N = 20


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator(user="support@example.com") as emulator:
        yield emulator


def graph_settings(graph: GraphEmulator, **box_extra: Any) -> ConnectorSettings:
    box = {
        "id": "support",
        "address": "support@example.com",
        "display_name": "Example Support",
        "provider": "graph",
        "graph": {
            "user_id": graph.user,
            "oauth": {"kind": "static", "token": "graph-token"},
            "api_endpoint": graph.url,
        },
        **box_extra,
    }
    return ConnectorSettings.model_validate(
        {
            "iwd": {"url": ASGI_URL, "api_key": "k", "ccid": "c"},
            "mailboxes": [box],
            "outbox": {"retry_schedule_seconds": [60, 300], "retry_jitter": 0, "retry_horizon_seconds": 3600},
        }
    )


def queued(to: str, subject: str = "x", **extra: Any) -> dict[str, Any]:
    return {"mailboxId": "support", "to": [{"address": to}], "subject": subject, "textBody": "y", **extra}


async def test_replies_from_api_and_iwd_queue_are_sent_once_through_graph_threaded_and_reported_sent(
    make_rig: Any,  # noqa: F811
    graph: GraphEmulator,
) -> None:
    """20 API replies and 20 IWD-queued replies: Graph receives each once with In-Reply-To and
    References of its parent, From of the mailbox, no Auto-Submitted; Sent Items holds each; IWD
    items are `sent`; one attempt each; the mailbox's outbound status counts them."""
    rig: Rig = await make_rig(graph_settings(graph))
    assert rig.settings.mailboxes[0].sends_via == "graph"
    parents = [await rig.inbound_item(n) for n in range(N)]
    for n in range(N):
        await rig.worker.submit(
            f"api-{n}", reply(n, parents[n]["id"], bcc=[{"address": f"audit{n}@example.net"}])
        )
    iwd_ids = [
        await rig.queue_in_iwd(
            queued(f"c{n}@example.net", f"AW: Question {n}", inReplyToItemId=parents[n]["id"])
        )
        for n in range(N)
    ]
    await rig.drain()

    counts = Counter(str(s.message["Message-ID"]) for s in graph.sent)
    assert len(counts) == 2 * N and set(counts.values()) == {1}
    by_to = {str(s.message["To"]): s for s in graph.sent}
    for n in range(N):
        parent_id = f"<msg-{n}@example.net>"
        for to, extra in (
            (f"Customer {n} <customer{n}@example.net>", [f"audit{n}@example.net"]),
            (f"c{n}@example.net", []),
        ):
            got = by_to[to]
            assert got.message["In-Reply-To"] == parent_id and got.message["References"] == parent_id
            assert got.message["Subject"] == f"Re: Question {n}"
            assert got.message["From"] == "Example Support <support@example.com>"
            assert got.message["Auto-Submitted"] is None
            assert got.recipients[1:] == extra
            assert graph.message(got.sent_id or "")["folder"] == "sentitems"  # type: ignore[index]
    for item_id in iwd_ids:
        item = await rig.iwd.get_email(item_id)
        assert item["status"] == "sent" and item["sentAt"] and item["messageId"] in counts
    entry = await rig.outbox.outbox_get("api-7")
    assert entry is not None and entry.state is OutboxState.SENT and entry.attempts == 1
    assert entry.results["customer7@example.net"]["accepted"] is True
    assert rig.board.get("support").outbound.delivered_total == 2 * N


async def test_reply_graph_refuses_fails_in_iwd_with_graphs_code_and_text(
    make_rig: Any,  # noqa: F811
    graph: GraphEmulator,
) -> None:
    """400 ErrorMimeContentInvalidBase64String: IWD item `failed`, permanent, with Graph's words."""
    rig: Rig = await make_rig(graph_settings(graph))
    graph.fail_next(
        400,
        "ErrorMimeContentInvalidBase64String",
        message="Invalid base64 string for MIME content.",
        match="sendMail",
    )
    item_id = await rig.queue_in_iwd(queued("a@example.net"))
    await rig.worker.tick()
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "failed" and item["error"]["permanent"] is True
    assert item["error"]["code"] == "smtp_rejected"
    assert (
        "ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content."
        in item["error"]["message"]
    )
    rig.clock.advance(7200)
    await rig.worker.tick()
    assert graph.sent == [] and graph.count("POST", "/sendMail") == 1


async def test_throttled_reply_is_retried_later_and_delivered_once(
    make_rig: Any,  # noqa: F811
    graph: GraphEmulator,
) -> None:
    """429 with Retry-After: `retrying` (IWD sees sending, not permanent), not sent again before
    the next attempt is due, then delivered exactly once."""
    rig: Rig = await make_rig(graph_settings(graph))
    graph.fail_next(429, "ApplicationThrottled", retry_after="30", match="sendMail")
    item_id = await rig.queue_in_iwd(queued("b@example.net"))
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert entry is not None and entry.state is OutboxState.RETRYING
    assert entry.last_error is not None and "retry after 30 s" in entry.last_error
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "sending" and item["error"]["permanent"] is False
    await rig.worker.tick()
    assert graph.count("POST", "/sendMail") == 1
    rig.clock.advance(61)
    await rig.worker.tick()
    assert (await rig.iwd.get_email(item_id))["status"] == "sent"
    assert len(graph.sent) == 1 and graph.count("POST", "/sendMail") == 2


async def test_reply_cut_off_after_the_request_is_uncertain_and_never_resent(
    make_rig: Any,  # noqa: F811
    graph: GraphEmulator,
) -> None:
    """Graph took it and the connection dropped before the answer: uncertain, IWD `failed` with
    delivery_uncertain, and no second sendMail however long we wait."""
    rig: Rig = await make_rig(graph_settings(graph))
    graph.drop_next("sendMail", accept=True)
    item_id = await rig.queue_in_iwd(queued("c@example.net"))
    await rig.worker.tick()
    rig.clock.advance(7200)
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert entry is not None and entry.state is OutboxState.UNCERTAIN
    item = await rig.iwd.get_email(item_id)
    assert item["status"] == "failed" and item["error"]["code"] == "delivery_uncertain"
    assert item["messageId"] == entry.message_id
    assert len(graph.sent) == 1 and graph.count("POST", "/sendMail") == 1


async def test_restart_settles_rows_left_sending_by_graphs_sent_items(
    make_rig: Any,  # noqa: F811
    graph: GraphEmulator,
) -> None:
    """Rows found `sending` after a crash: before the request → sent again (once); in phase
    `data` and really sent by Graph → `sent` from Sent Items, not resent; in `data` but not in
    Sent Items → uncertain."""
    rig: Rig = await make_rig(graph_settings(graph))
    box = rig.settings.mailboxes[0]
    for name in ("before-data", "in-sent", "unknown"):
        await rig.worker.submit(name, reply(1))
        await rig.outbox.outbox_claim(name, rig.clock())
    for name in ("in-sent", "unknown"):
        await rig.outbox.outbox_set_phase(name, "data")
    crashed = await rig.outbox.outbox_get("in-sent")
    assert crashed is not None
    request = ReplyRequest.model_validate(crashed.request)
    message = compose(
        request, mailbox=box, message_id=crashed.message_id, thread=ThreadInfo(), date=rig.clock()
    )
    sender = GraphSender(box)  # the send the crash interrupted, which Graph did carry out
    try:
        await sender.send(message, box.address, ["customer1@example.net"])
    finally:
        await sender.close()

    await rig.worker.recover()
    states = {n: (await rig.outbox.outbox_get(n)).state for n in ("before-data", "in-sent", "unknown")}  # type: ignore[union-attr]
    assert states == {
        "before-data": OutboxState.RETRYING,
        "in-sent": OutboxState.SENT,
        "unknown": OutboxState.UNCERTAIN,
    }
    await rig.worker.tick()
    ids = Counter(str(s.message["Message-ID"]) for s in graph.sent)
    before = await rig.outbox.outbox_get("before-data")
    assert before is not None and before.state is OutboxState.SENT
    assert ids == {crashed.message_id: 1, before.message_id: 1}
    lookups = [p for m, p, _ in graph.requests if m == "GET" and "sentitems/messages" in p]
    assert len(lookups) == 2  # one per row in phase data
    assert isinstance(rig.worker.dispatcher.sent_folder(box), GraphSentFolder)


def customer_mail(subject: str, in_reply_to: str | None = None) -> bytes:
    headers = [
        "From: Customer <cust@example.net>",
        "To: support@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{uuid.uuid4().hex}@example.net>",
        "Date: Mon, 02 Mar 2026 09:00:00 +0000",
        "Auto-Submitted: auto-replied" if in_reply_to else "X-Note: first",
    ]
    if in_reply_to:
        headers += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    return ("\r\n".join(headers) + "\r\n\r\nHello\r\n").encode()


async def test_auto_acknowledgement_through_graph_does_not_loop_with_an_auto_responder(
    make_rig: Any,  # noqa: F811
    graph: GraphEmulator,
) -> None:
    """A responder answering every mail (marked Auto-Submitted, threaded) gets one acknowledgement
    in a simulated minute; the acknowledgement Graph sent is marked automatic."""
    settings = graph_settings(graph, auto_ack={"enabled": True, "text": "Got it"})
    rig: Rig = await make_rig(settings)
    ack = AutoAck(settings, rig.outbox, rig.worker.enqueue, clock=rig.clock)
    first = customer_mail("Where is my order?")
    await ack.on_delivered("support", convert(first), first)
    for _second in range(30):
        seen = len(graph.sent)
        await rig.worker.tick()
        for got in graph.sent[seen:]:
            answer = customer_mail(
                f"Automatic reply: {got.message['Subject']}", str(got.message["Message-ID"])
            )
            await ack.on_delivered("support", convert(answer), answer)
        rig.clock.advance(2)
    assert len(graph.sent) == 1
    assert graph.sent[0].message["Auto-Submitted"] == "auto-replied"
