"""GraphSender and GraphSentFolder against the Graph emulator (real HTTP on 127.0.0.1, real httpx)."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest

from connector.config import MailboxSettings
from connector.errors import AuthFailed, ProviderError, SendDeferred, SendRejected, SendUncertain
from connector.outbox.compose import OutgoingAttachment, ThreadInfo, compose
from connector.outbox.request import ReplyRequest
from providers.graph.api import RetryPolicy
from providers.graph.send import MAX_REQUEST_BYTES, GraphSender, GraphSentFolder
from providers.oauth import StaticTokenProvider
from providers.registry import build_sender, build_sent_folder
from tests.peers.graph_emulator import GraphEmulator
from tests.providers.test_graph import graph_mailbox

FAST = RetryPolicy(attempts=2, backoff_seconds=0.01, max_retry_after_seconds=1.0)
PARENT = "<question-1@customer.example>"
ROOT = "<root-0@customer.example>"


class CountingTokens(StaticTokenProvider):
    """The emulator's token, counting how often a refresh was asked for."""

    def __init__(self) -> None:
        super().__init__("graph-token")
        self.invalidated = 0

    def invalidate(self) -> None:
        self.invalidated += 1


def reply_message(
    box: MailboxSettings,
    message_id: str = "<reply.1@example.test>",
    *,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    attachment: bytes | None = None,
) -> EmailMessage:
    request = ReplyRequest.model_validate(
        {
            "to": [{"address": "customer@example.net", "name": "Customer"}],
            "cc": [{"address": a} for a in cc or []],
            "bcc": [{"address": a} for a in bcc or []],
            "subject": "AW: Where is my order?",
            "textBody": "It ships today.",
            "htmlBody": "<p>It ships today.</p>",
        }
    )
    files = (OutgoingAttachment("big.bin", "application/octet-stream", attachment),) if attachment else ()
    return compose(
        request,
        mailbox=box,
        message_id=message_id,
        thread=ThreadInfo(in_reply_to=PARENT, references=(ROOT, PARENT)),
        date=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        attachments=files,
    )


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emulator:
        yield emulator


@pytest.fixture
def box(graph: GraphEmulator) -> MailboxSettings:
    return graph_mailbox(graph)


@pytest.fixture
async def sender(box: MailboxSettings) -> AsyncIterator[GraphSender]:
    s = GraphSender(box, policy=FAST)
    yield s
    await s.close()


@pytest.fixture
async def sent_folder(box: MailboxSettings) -> AsyncIterator[GraphSentFolder]:
    f = GraphSentFolder(box, policy=FAST)
    yield f
    await f.close()


def posts(graph: GraphEmulator) -> int:
    return graph.count("POST", "/sendMail")


class Hook:
    """A before_data callback that records how many sendMail requests Graph had seen when it ran."""

    def __init__(self, graph: GraphEmulator) -> None:
        self.graph = graph
        self.seen: list[int] = []

    async def __call__(self) -> None:
        self.seen.append(posts(self.graph))


async def test_reply_goes_out_as_base64_mime_with_its_threading_headers_and_lands_in_sent_items(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender, sent_folder: GraphSentFolder
) -> None:
    """One POST sendMail (text/plain, base64 of the exact MIME); Graph receives In-Reply-To,
    References, Message-ID and From as composed; every recipient is accepted; before_data ran
    right before the request; Sent Items then holds it and `contains` finds it by Message-ID."""
    message = reply_message(box, cc=["boss@example.net"])
    hook = Hook(graph)
    receipt = await sender.send(
        message, box.address, ["customer@example.net", "boss@example.net"], before_data=hook
    )
    assert hook.seen == [0] and posts(graph) == 1
    assert [r.accepted for r in receipt.recipients] == [True, True]
    assert receipt.data_response.startswith("202 Accepted")
    (got,) = graph.sent
    assert got.content_type.startswith("text/plain")
    assert got.raw == message.as_bytes(policy=policy.SMTP)
    assert got.message["In-Reply-To"] == PARENT
    assert got.message["References"] == f"{ROOT} {PARENT}"
    assert got.message["Message-ID"] == "<reply.1@example.test>"
    assert got.message["From"] == "support@example.test"
    assert got.recipients == ["customer@example.net", "boss@example.net"]
    _, _, headers = next(r for r in graph.requests if r[0] == "POST")
    assert headers["prefer"] == 'IdType="ImmutableId"' and headers["authorization"] == "Bearer graph-token"
    assert graph.message(got.sent_id or "")["folder"] == "sentitems"  # type: ignore[index]
    assert await sent_folder.contains("<reply.1@example.test>")
    assert await sent_folder.contains("reply.1@example.test")  # brackets are optional
    assert not await sent_folder.contains("<reply.2@example.test>")
    assert await sent_folder.append(b"ignored") == "" and len(graph.sent) == 1


async def test_bcc_recipients_reach_graph_in_a_bcc_header_and_the_message_is_not_changed(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    """Envelope-only recipients are sent as a Bcc header (Exchange keeps it to Sent Items); the
    caller's message stays without one."""
    message = reply_message(box, bcc=["audit@example.net"])
    await sender.send(message, box.address, ["customer@example.net", "audit@example.net"])
    (got,) = graph.sent
    assert got.recipients == ["customer@example.net", "audit@example.net"]
    assert got.message["Bcc"] == "audit@example.net" and got.message["In-Reply-To"] == PARENT
    assert message["Bcc"] is None
    filed = graph.message(got.sent_id or "")
    assert filed is not None and b"Bcc: audit@example.net" in filed["raw"]


async def test_recipient_who_already_has_the_reply_is_refused_rather_than_sent_twice(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    """Graph sends to everyone in To/Cc; a retry meant only for the Cc is refused, nothing posted."""
    message = reply_message(box, cc=["boss@example.net"])
    with pytest.raises(SendRejected) as caught:
        await sender.send(message, box.address, ["boss@example.net"])
    assert "customer@example.net already received this reply" in caught.value.message
    assert posts(graph) == 0


async def test_message_over_graphs_4_mb_request_limit_is_refused_before_anything_is_sent(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    """A 3.5 MB attachment is over 4 MB once base64-encoded: SendRejected naming the limit,
    before_data never ran, no request was made."""
    message = reply_message(box, attachment=b"\x00" * (3 * 1024 * 1024 + 512 * 1024))
    hook = Hook(graph)
    with pytest.raises(SendRejected) as caught:
        await sender.send(message, box.address, ["customer@example.net"], before_data=hook)
    assert "4 MB limit" in caught.value.message and hook.seen == [] and posts(graph) == 0
    assert len(base64.b64encode(message.as_bytes())) > MAX_REQUEST_BYTES


async def test_invalid_mime_is_rejected_with_graphs_code_and_text(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    """400 ErrorMimeContentInvalidBase64String: SendRejected carrying Graph's code and message."""
    graph.fail_next(
        400,
        "ErrorMimeContentInvalidBase64String",
        message="Invalid base64 string for MIME content.",
        match="sendMail",
    )
    with pytest.raises(SendRejected) as caught:
        await sender.send(reply_message(box), box.address, ["customer@example.net"])
    text = str(caught.value)
    assert "ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content." in text
    assert "status=400" in text and "request_id=" in text and "graph-token" not in text
    assert posts(graph) == 1 and graph.sent == []


async def test_emulator_refuses_bad_base64_and_mail_without_recipients_as_graph_does(
    graph: GraphEmulator, sender: GraphSender
) -> None:
    """The emulator's own checks of the MIME form, which the refusal tests stand on."""
    garbage = await sender.api.once("POST", sender.url, content=b"%%not base64%%", content_type="text/plain")
    assert garbage.status == 400 and garbage.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    nobody = base64.b64encode(b"Subject: x\r\n\r\nbody\r\n")
    empty = await sender.api.once("POST", sender.url, content=nobody, content_type="text/plain")
    assert empty.status == 400 and empty.json()["error"]["code"] == "ErrorInvalidRecipients"
    assert graph.sent == []


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "kind"),
    [
        (429, "ApplicationThrottled", "30", SendDeferred),
        (429, "ApplicationThrottled", None, SendDeferred),
        (503, "serviceNotAvailable", "30", SendDeferred),
        (503, "serviceNotAvailable", None, SendUncertain),
        (500, "generalException", "30", SendUncertain),
        (502, "BadGateway", None, SendUncertain),
        (504, "GatewayTimeout", None, SendUncertain),
    ],
)
async def test_server_answers_defer_or_leave_the_outcome_open_and_are_never_retried_inside(
    graph: GraphEmulator,
    box: MailboxSettings,
    sender: GraphSender,
    status: int,
    code: str,
    retry_after: str | None,
    kind: type[Exception],
) -> None:
    """429, and 503 with Retry-After (Graph's own throttling), prove nothing was taken: SendDeferred
    with the wait. 500/502/504 and a bare 503 (a gateway may say that after the backend acted) may
    have been sent: SendUncertain with every recipient unconfirmed. Either way one POST only."""
    graph.fail_next(status, code, retry_after=retry_after, match="sendMail")
    with pytest.raises(kind) as caught:
        await sender.send(reply_message(box), box.address, ["customer@example.net"])
    assert posts(graph) == 1 and graph.sent == []
    assert code in str(caught.value)
    if kind is SendDeferred:
        assert retry_after is None or f"retry after {retry_after} s" in str(caught.value)
    else:
        assert [(r.accepted, r.code) for r in caught.value.recipients] == [(False, None)]  # type: ignore[attr-defined]


async def test_refused_token_is_refreshed_once_and_the_reply_sent_once(
    graph: GraphEmulator, box: MailboxSettings
) -> None:
    """A 401 means Graph did nothing: one retry with a fresh token, and the reply goes out once."""
    tokens = CountingTokens()
    sender = GraphSender(box, tokens=tokens, policy=FAST)
    graph.fail_next(401, "InvalidAuthenticationToken", match="sendMail")
    hook = Hook(graph)
    try:
        await sender.send(reply_message(box), box.address, ["customer@example.net"], before_data=hook)
    finally:
        await sender.close()
    assert tokens.invalidated == 1 and posts(graph) == 2 and len(graph.sent) == 1 and hook.seen == [0]


async def test_token_refused_after_the_refresh_is_auth_failed(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    graph.tokens = set()
    with pytest.raises(AuthFailed) as caught:
        await sender.send(reply_message(box), box.address, ["customer@example.net"])
    assert caught.value.code == "auth_required" and posts(graph) == 2 and graph.sent == []


async def test_missing_send_permission_is_auth_failed_naming_mail_send(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    graph.denied = True
    with pytest.raises(AuthFailed) as caught:
        await sender.send(reply_message(box), box.address, ["customer@example.net"])
    assert "Mail.Send application permission" in caught.value.message
    assert "ErrorAccessDenied" in caught.value.message and posts(graph) == 1


async def test_connection_dropped_after_graph_took_the_request_is_uncertain_and_not_retried(
    graph: GraphEmulator, box: MailboxSettings, sender: GraphSender
) -> None:
    """Graph sent it, then the connection closed without an answer: SendUncertain, one POST."""
    graph.drop_next("sendMail", accept=True)
    with pytest.raises(SendUncertain) as caught:
        await sender.send(reply_message(box), box.address, ["customer@example.net"])
    assert "after the whole request was sent" in caught.value.message
    assert posts(graph) == 1 and len(graph.sent) == 1
    assert [(r.address, r.accepted) for r in caught.value.recipients] == [("customer@example.net", False)]


async def test_timeout_waiting_for_the_answer_is_uncertain(
    graph: GraphEmulator, box: MailboxSettings
) -> None:
    """No answer within the timeout after the request went out: SendUncertain, one POST."""
    sender = GraphSender(box, policy=FAST, timeout_seconds=0.2)
    graph.delay_seconds = 0.6
    try:
        with pytest.raises(SendUncertain) as caught:
            await sender.send(reply_message(box), box.address, ["customer@example.net"])
    finally:
        await sender.close()
    assert "ReadTimeout" in caught.value.message and posts(graph) == 1


async def test_unreachable_graph_is_deferred(graph: GraphEmulator) -> None:
    """Nothing listens: the request never left, so the outbox may simply try again later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = graph_mailbox(graph, api_endpoint=f"http://127.0.0.1:{port}/v1.0")
    sender = GraphSender(box, policy=FAST)
    try:
        with pytest.raises(SendDeferred) as caught:
            await sender.send(reply_message(box), box.address, ["customer@example.net"])
    finally:
        await sender.close()
    assert "before the request was sent" in caught.value.message


async def test_sent_items_lookup_quotes_the_message_id_and_looks_only_in_sent_items(
    graph: GraphEmulator, sent_folder: GraphSentFolder
) -> None:
    """A Message-ID with a quote is found (the OData literal doubles it); the same id in the
    Inbox does not count; the lookup asks for immutable ids."""
    odd = "<o'brien.7@example.test>"
    graph.add_message(f"Message-ID: {odd}\r\nSubject: x\r\n\r\nbody\r\n".encode(), "sentitems")
    graph.add_message(b"Message-ID: <inbox.1@example.test>\r\nSubject: y\r\n\r\nbody\r\n")
    assert await sent_folder.contains(odd)
    assert not await sent_folder.contains("<inbox.1@example.test>")
    lookups = [(p, h) for m, p, h in graph.requests if m == "GET" and "sentitems/messages" in p]
    assert "o%27%27brien" in lookups[0][0] and all('IdType="ImmutableId"' in h["prefer"] for _, h in lookups)


async def test_sent_items_lookup_failures_are_provider_errors(
    graph: GraphEmulator, sent_folder: GraphSentFolder
) -> None:
    graph.tokens = set()
    with pytest.raises(AuthFailed):
        await sent_folder.contains("<reply.1@example.test>")
    graph.tokens = {"graph-token"}
    graph.fail_next(500, "generalException", times=5)
    with pytest.raises(ProviderError):
        await sent_folder.contains("<reply.1@example.test>")


async def test_registry_sends_through_graph_when_the_mailbox_has_no_smtp_block(graph: GraphEmulator) -> None:
    box = graph_mailbox(graph)
    assert box.sends_via == "graph"
    sender, folder = build_sender(box), build_sent_folder(box)
    assert isinstance(sender, GraphSender) and isinstance(folder, GraphSentFolder)
    await sender.close()
    await folder.close()
