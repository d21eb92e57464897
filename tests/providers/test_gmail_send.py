"""GmailSender and GmailSentFolder through google-api-python-client against the Gmail emulator."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from connector.config import MailboxSettings
from connector.errors import (
    AuthFailed,
    ProviderError,
    SendDeferred,
    SendRejected,
    SendUncertain,
)
from providers import registry
from providers.base import OutboundSender
from providers.gmail.send import GmailSender, GmailSentFolder, searchable_id
from providers.whole_message import mime_for_api
from tests.mailfactory import make_message
from tests.peers.gmail_emulator import GmailEmulator
from tests.providers.test_gmail import FAST, Tokens, gmail_mailbox

OUR_ID = "<reply-1.abc@connector.example.com>"


@pytest.fixture
def emu() -> Iterator[GmailEmulator]:
    with GmailEmulator() as server:
        yield server


def sender_for(emu: GmailEmulator, **extra: Any) -> GmailSender:
    return GmailSender(gmail_mailbox(emu), retry=FAST, **extra)


def reply(
    in_reply_to: str | None = "<msg-1@example.net>", *, to: str = "customer@example.net"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Support <support@example.com>"
    msg["To"] = f"Customer <{to}>"
    msg["Subject"] = "Re: Question number 1"
    msg["Message-ID"] = OUR_ID
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = f"<msg-0@example.net> {in_reply_to}"
    msg.set_content("Here is the answer.\n")
    return msg


def sends(emu: GmailEmulator) -> int:
    return emu.count("POST", "/messages/send")


def test_registry_sends_through_gmail_only_without_an_smtp_block(emu: GmailEmulator) -> None:
    box = gmail_mailbox(emu)
    assert box.sends_via == "gmail"
    sender = registry.build_sender(box)
    assert isinstance(sender, GmailSender) and isinstance(sender, OutboundSender)
    assert isinstance(registry.build_sent_folder(box), GmailSentFolder)
    relay = {"host": "127.0.0.1", "port": 2525, "security": "plain", "auth": "none"}
    with_smtp = gmail_mailbox(emu, smtp=relay)
    assert not isinstance(registry.build_sender(with_smtp), GmailSender)


async def test_reply_joins_the_customers_gmail_thread_with_its_threading_headers_kept(
    emu: GmailEmulator,
) -> None:
    """The answered message is found by its Message-ID; the reply goes into its thread, as composed."""
    parent = emu.add_message(make_message(1), thread_id="thread-customer-1")
    sender = sender_for(emu)
    receipt = await sender.send(reply(), "support@example.com", ["customer@example.net"])
    assert len(emu.sent) == 1
    sent = emu.sent[0]
    assert sent.thread_requested == "thread-customer-1" == emu.thread_of(parent) == sent.thread_id
    assert sent.message["Message-ID"] == OUR_ID
    assert sent.message["In-Reply-To"] == "<msg-1@example.net>"
    assert sent.message["References"] == "<msg-0@example.net> <msg-1@example.net>"
    assert sent.raw == reply().as_bytes(policy=policy.SMTP)  # exactly as composed
    assert sent.recipients == ["customer@example.net"]
    assert "SENT" in emu.labels_of(sent.id)
    assert receipt.accepted == ("customer@example.net",) and receipt.data_response == sent.id
    assert receipt.refused == ()
    await sender.close()


async def test_reply_to_a_message_gmail_does_not_have_is_sent_without_a_thread_id(
    emu: GmailEmulator,
) -> None:
    sender = sender_for(emu)
    await sender.send(reply("<unknown@example.net>"), "support@example.com", ["customer@example.net"])
    assert emu.sent[0].thread_requested is None
    assert emu.sent[0].message["In-Reply-To"] == "<unknown@example.net>"


async def test_thread_of_a_trashed_customer_message_is_still_found(emu: GmailEmulator) -> None:
    """post_action delete moves the customer's mail to the trash; the reply still joins its thread."""
    emu.add_message(make_message(1), labels=("TRASH",), thread_id="thread-trashed")
    await sender_for(emu).send(reply(), "support@example.com", ["customer@example.net"])
    assert emu.sent[0].thread_id == "thread-trashed"


async def test_thread_removed_before_the_send_is_sent_once_outside_it(emu: GmailEmulator) -> None:
    """Gmail answers 404 for a threadId gone since the lookup: that proves nothing was sent, so the
    reply goes again without threadId, and is stored once."""
    parent = emu.add_message(make_message(1), thread_id="thread-gone")

    def delete_parent(method: str, path: str, body: Any) -> None:
        if path.endswith("/messages/send"):
            emu.remove(parent)

    emu.on_request = delete_parent
    await sender_for(emu).send(reply(), "support@example.com", ["customer@example.net"])
    assert sends(emu) == 2 and len(emu.sent) == 1 and emu.sent[0].thread_requested is None


async def test_envelope_only_recipients_travel_as_bcc(emu: GmailEmulator) -> None:
    """Gmail reads recipients from the headers: a Bcc recipient gets a Bcc header (Gmail keeps it
    in Sent only); To/Cc recipients are not repeated."""
    sender = sender_for(emu)
    await sender.send(
        reply(None), "support@example.com", ["customer@example.net", "Boss@Example.com", "audit@example.org"]
    )
    sent = emu.sent[0]
    assert sent.message["Bcc"] == "Boss@Example.com, audit@example.org"
    assert sent.message["To"] == "Customer <customer@example.net>"
    assert sorted(sent.recipients) == ["Boss@Example.com", "audit@example.org", "customer@example.net"]
    as_composed = reply(None).as_bytes(policy=policy.SMTP)
    assert mime_for_api(reply(None), ["CUSTOMER@example.net"], "Gmail") == as_composed


async def test_before_data_runs_once_right_before_the_send_request(emu: GmailEmulator) -> None:
    emu.add_message(make_message(1))
    seen: list[tuple[int, int]] = []

    async def before_data() -> None:
        seen.append((sends(emu), emu.count("GET", "/messages")))

    await sender_for(emu).send(
        reply(), "support@example.com", ["customer@example.net"], before_data=before_data
    )
    assert seen == [(0, 1)]  # after the thread lookup, before the send
    assert sends(emu) == 1


async def test_refused_message_is_rejected_with_googles_reason_and_text(emu: GmailEmulator) -> None:
    emu.fail_next(400, reason="invalidArgument", message="Invalid To header", path_contains="/messages/send")
    with pytest.raises(SendRejected) as info:
        await sender_for(emu).send(reply(None), "support@example.com", ["customer@example.net"])
    assert "400 invalidArgument: Invalid To header" in str(info.value)
    assert info.value.context["mailbox"] == "gmail-1" and "test-token" not in str(info.value)
    assert emu.sent == []


async def test_recipient_gmail_cannot_parse_is_rejected_with_its_text(emu: GmailEmulator) -> None:
    with pytest.raises(SendRejected, match="400 invalidArgument: Invalid To header: broken"):
        await sender_for(emu).send(reply(None, to="broken"), "support@example.com", ["broken"])
    assert emu.sent == [] and sends(emu) == 1


async def test_too_large_reply_is_rejected_before_calling_the_api(emu: GmailEmulator) -> None:
    sender = sender_for(emu, max_bytes=2000)
    msg = reply(None)
    msg.add_attachment(b"x" * 3000, maintype="application", subtype="octet-stream", filename="big.bin")
    with pytest.raises(SendRejected, match="Gmail sends at most 2000 bytes"):
        await sender.send(msg, "support@example.com", ["customer@example.net"])
    assert emu.requests == []


async def test_sending_limit_429_is_deferred_with_retry_after_and_not_retried_in_process(
    emu: GmailEmulator,
) -> None:
    emu.fail_next(429, retry_after="120", message="User-rate limit exceeded", path_contains="/messages/send")
    with pytest.raises(SendDeferred) as info:
        await sender_for(emu).send(reply(None), "support@example.com", ["customer@example.net"])
    assert "Retry-After: 120 s" in str(info.value) and "rateLimitExceeded" in str(info.value)
    assert sends(emu) == 1 and emu.sent == []


async def test_503_with_retry_after_is_deferred_a_bare_503_or_500_is_uncertain(emu: GmailEmulator) -> None:
    """503 with Retry-After: Gmail did not take it, retry later. A bare 503 (a gateway may answer so
    after Gmail took it) or a 500: it may have been sent, so never resent blindly."""
    sender = sender_for(emu)
    emu.fail_next(503, path_contains="/messages/send", retry_after="30")
    with pytest.raises(SendDeferred, match="unavailable"):
        await sender.send(reply(None), "support@example.com", ["customer@example.net"])
    for status in (503, 500):
        emu.fail_next(status, path_contains="/messages/send")
        with pytest.raises(SendUncertain) as info:
            await sender.send(reply(None), "support@example.com", ["customer@example.net"])
        assert [r.accepted for r in info.value.recipients] == [False]
    assert sends(emu) == 3


async def test_expired_token_is_refreshed_once_and_the_reply_sent_once(emu: GmailEmulator) -> None:
    tokens = Tokens("expired-token", "test-token")
    calls: list[int] = []

    async def before_data() -> None:
        calls.append(sends(emu))

    sender = GmailSender(gmail_mailbox(emu), tokens=tokens, retry=FAST)
    await sender.send(reply(None), "support@example.com", ["customer@example.net"], before_data=before_data)
    assert tokens.invalidations == 1 and sends(emu) == 2 and len(emu.sent) == 1 and calls == [0]


async def test_token_refused_after_a_refresh_is_auth_failed(emu: GmailEmulator) -> None:
    tokens = Tokens("secret-token-1", "secret-token-2")
    sender = GmailSender(gmail_mailbox(emu), tokens=tokens, retry=FAST)
    with pytest.raises(AuthFailed) as info:
        await sender.send(reply(None), "support@example.com", ["customer@example.net"])
    assert info.value.code == "auth_required" and sends(emu) == 2
    assert "secret-token" not in str(info.value)


async def test_missing_send_scope_is_auth_failed_naming_the_scope(emu: GmailEmulator) -> None:
    emu.fail_next(
        403,
        reason="insufficientPermissions",
        message="Request had insufficient authentication scopes.",
        path_contains="/messages/send",
    )
    with pytest.raises(AuthFailed, match=r"auth/gmail\.send") as info:
        await sender_for(emu).send(reply(None), "support@example.com", ["customer@example.net"])
    assert "insufficient authentication scopes" in str(info.value)


@pytest.mark.parametrize("keep", [True, False])
async def test_connection_dropped_after_the_request_is_uncertain_and_never_resent(
    emu: GmailEmulator, keep: bool
) -> None:
    """The request was written, no answer came: uncertain, and exactly one request went out (httplib2
    on its own would have sent it again on a new connection)."""
    emu.drop_next_send(keep=keep)
    with pytest.raises(SendUncertain, match="may have accepted it") as info:
        await sender_for(emu).send(reply(None), "support@example.com", ["customer@example.net"])
    assert sends(emu) == 1 and len(emu.sent) == int(keep)
    assert [(r.address, r.accepted) for r in info.value.recipients] == [("customer@example.net", False)]


async def test_unreachable_api_is_deferred() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    box = MailboxSettings.model_validate(
        {
            "id": "gmail-down",
            "address": "a@example.com",
            "provider": "gmail",
            "gmail": {"oauth": {"kind": "static", "token": "t"}, "api_endpoint": f"http://127.0.0.1:{port}/"},
        }
    )
    with pytest.raises(SendDeferred, match="not sent") as info:
        await GmailSender(box, retry=FAST).send(reply(None), "a@example.com", ["customer@example.net"])
    assert info.value.context["mailbox"] == "gmail-down"


async def test_thread_lookup_failing_defers_without_sending(emu: GmailEmulator) -> None:
    emu.fail_next(503, count=3, path_contains="/messages")
    with pytest.raises(SendDeferred, match="Gmail thread"):
        await sender_for(emu).send(reply(), "support@example.com", ["customer@example.net"])
    assert sends(emu) == 0


async def test_sent_folder_finds_a_sent_reply_by_message_id_only_among_sent_mail(emu: GmailEmulator) -> None:
    folder = GmailSentFolder(gmail_mailbox(emu), retry=FAST)
    assert await folder.append(b"Message-ID: <x@y>\r\n\r\nbody\r\n") == "" and emu.requests == []
    assert await folder.contains(OUR_ID) is False
    inbox_copy = reply(None).as_bytes()
    emu.add_message(inbox_copy)  # the same Message-ID, but received, not sent
    assert await folder.contains(OUR_ID) is False
    await sender_for(emu).send(reply(None), "support@example.com", ["customer@example.net"])
    assert await folder.contains(OUR_ID) is True
    assert await folder.contains("<other@connector.example.com>") is False
    await folder.close()


async def test_sent_folder_of_an_unknown_user_is_a_provider_error(emu: GmailEmulator) -> None:
    gmail = {
        "oauth": {"kind": "static", "token": "test-token"},
        "api_endpoint": emu.url,
        "user_id": "nobody@example.com",
    }
    box = gmail_mailbox(emu, gmail=gmail)
    with pytest.raises(ProviderError, match=r"check gmail\.user_id"):
        await GmailSentFolder(box, retry=FAST).contains(OUR_ID)


def test_only_message_ids_that_are_one_search_term_are_searched() -> None:
    assert searchable_id("<a.b@c.d>") == "a.b@c.d"
    assert searchable_id(" <a@b> <c@d>") == "a@b"
    assert searchable_id('<"a b"@c>') is None
    assert searchable_id("<a@b) OR (x@y>") is None
    assert searchable_id(None) is None
