"""Auto-acknowledgement against an auto-responder that answers every mail: it never loops."""

from __future__ import annotations

import uuid

from connector.convert import convert
from connector.outbox.autoack import AutoAck
from tests.connector.outbox.conftest import settings_for
from tests.connector.outbox.smtp_peer import SmtpPeer


def customer_mail(
    *, subject: str, in_reply_to: str | None = None, marked: bool = False, extra: str = ""
) -> bytes:
    headers = [
        "From: Customer <cust@example.net>",
        "To: support@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{uuid.uuid4().hex}@example.net>",
        "Date: Mon, 02 Mar 2026 09:00:00 +0000",
    ]
    if in_reply_to:
        headers += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    if marked:
        headers.append("Auto-Submitted: auto-replied")
    return ("\r\n".join(headers) + extra + "\r\n\r\nHello\r\n").encode()


async def simulate(make_rig, smtp: SmtpPeer, *, marked: bool, threaded: bool, period: float) -> int:
    settings = settings_for(
        smtp, box_extra={"auto_ack": {"enabled": True, "text": "Got it", "period_seconds": period}}
    )
    rig = await make_rig(settings)
    ack = AutoAck(settings, rig.outbox, rig.worker.enqueue, clock=rig.clock)
    raw = customer_mail(subject="Where is my order?")
    await ack.on_delivered("support", convert(raw), raw)
    for _second in range(60):  # one simulated minute: the responder answers whatever arrived
        seen = len(smtp.received)
        await rig.worker.tick()
        for got in smtp.received[seen:]:
            answer = customer_mail(
                subject=f"Automatic reply: {got.message['Subject']}",
                in_reply_to=str(got.message["Message-ID"]) if threaded else None,
                marked=marked,
            )
            await ack.on_delivered("support", convert(answer), answer)
        rig.clock.advance(1)
    return len(smtp.received)


async def test_marked_auto_responder_gets_one_acknowledgement_and_no_loop(make_rig, smtp: SmtpPeer) -> None:
    """A responder that marks its answers (Auto-Submitted) gets exactly one acknowledgement in a minute."""
    assert await simulate(make_rig, smtp, marked=True, threaded=True, period=86400) == 1
    assert smtp.received[0].message["Auto-Submitted"] == "auto-replied"
    assert smtp.received[0].message["Subject"] == "Re: Where is my order?"


async def test_unmarked_unthreaded_responder_is_bounded_by_the_per_sender_period(
    make_rig, smtp: SmtpPeer
) -> None:
    """Worst case (no markers, no threading headers): at most one per sender per period (10 s → ≤ 7/min)."""
    assert await simulate(make_rig, smtp, marked=False, threaded=False, period=86400) == 1
    smtp.received.clear()
    assert await simulate(make_rig, smtp, marked=False, threaded=False, period=10) <= 7


async def test_no_acknowledgement_to_null_return_path_lists_or_suppressing_senders(
    make_rig, smtp: SmtpPeer
) -> None:
    """Null Return-Path, List-Id and X-Auto-Response-Suppress: All are never acknowledged."""
    settings = settings_for(smtp, box_extra={"auto_ack": {"enabled": True}})
    rig = await make_rig(settings)
    ack = AutoAck(settings, rig.outbox, rig.worker.enqueue, clock=rig.clock)
    for raw in (
        customer_mail(subject="a", extra="\r\nReturn-Path: <>"),
        customer_mail(subject="b", extra="\r\nList-Id: <news.example.net>"),
        customer_mail(subject="c", extra="\r\nX-Auto-Response-Suppress: All"),
    ):
        await ack.on_delivered("support", convert(raw), raw)
    assert ack.sent == 0
