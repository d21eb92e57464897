"""The reply message: subject prefixes, threading headers, parts, automatic marking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.config import MailboxSettings
from connector.convert.threads import normalize_subject
from connector.outbox.compose import (
    OutgoingAttachment,
    compose,
    reply_subject,
    sent_copy,
    thread_from_parent,
)
from connector.outbox.request import ReplyRequest

BOX = MailboxSettings.model_validate(
    {
        "id": "support",
        "address": "support@example.com",
        "display_name": "Support Team",
        "provider": "maildir",
        "maildir": {"path": "/tmp/x"},
    }
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Question", "Re: Question"),
        ("Re: Question", "Re: Question"),
        ("RE: Re: question", "Re: question"),
        ("AW: Frage", "Re: Frage"),
        ("SV: Re[2]: Fråga", "Re: Fråga"),
        ("Re: Fwd: News", "Re: Fwd: News"),
    ],
)
def test_subject_gets_exactly_one_re_prefix(given: str, expected: str) -> None:
    """Any stack of reply prefixes (Re, RE, AW, SV, Re[2]) becomes one "Re: "."""
    assert reply_subject(given) == expected
    assert normalize_subject(reply_subject(given)).lower() == normalize_subject(given).lower()


def test_empty_subject_takes_the_parents() -> None:
    """A reply without a subject answers under the parent's subject."""
    assert reply_subject("", "AW: Bestellung") == "Re: Bestellung"


def test_threading_headers_follow_rfc5322() -> None:
    """References = parent References (else its In-Reply-To) + parent Message-ID."""
    t = thread_from_parent("<p@x>", ["<a@x>", "<b@x>"], "<b@x>", "s")
    assert t.in_reply_to == "<p@x>" and t.references == ("<a@x>", "<b@x>", "<p@x>")
    t2 = thread_from_parent("<p@x>", [], "<b@x>", "s")
    assert t2.references == ("<b@x>", "<p@x>")


def test_agent_reply_has_from_alternative_parts_attachment_and_no_auto_submitted() -> None:
    """From is the mailbox; text+html alternative; attachment kept; Bcc only in the Sent copy."""
    request = ReplyRequest.model_validate(
        {
            "to": [{"address": "c@example.net"}],
            "bcc": [{"address": "boss@example.com"}],
            "subject": "Hi",
            "textBody": "plain",
            "htmlBody": "<p>rich</p>",
        }
    )
    att = OutgoingAttachment("r.pdf", "application/pdf", b"%PDF-1.4")
    msg = compose(
        request,
        mailbox=BOX,
        message_id="<m@example.com>",
        thread=thread_from_parent("<p@x>", [], None, "Hi"),
        date=datetime(2026, 1, 1, tzinfo=UTC),
        attachments=(att,),
    )
    assert msg["From"] == "Support Team <support@example.com>"
    assert msg["Auto-Submitted"] is None and msg["Bcc"] is None
    assert msg.get_body(("plain",)).get_content().strip() == "plain"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().strip() == "<p>rich</p>"  # type: ignore[union-attr]
    assert [a.get_filename() for a in msg.iter_attachments()] == ["r.pdf"]
    copy = sent_copy(msg.as_bytes(), request)
    assert copy.startswith(b"Bcc: boss@example.com\r\n")


def test_automatic_message_is_marked_auto_replied() -> None:
    """Only automatic messages (auto-ack) carry Auto-Submitted: auto-replied."""
    request = ReplyRequest.model_validate({"to": [{"address": "c@example.net"}], "subject": "x"})
    msg = compose(
        request,
        mailbox=BOX,
        message_id="<m@e>",
        thread=thread_from_parent(None, [], None, None),
        date=datetime(2026, 1, 1, tzinfo=UTC),
        automatic=True,
    )
    assert msg["Auto-Submitted"] == "auto-replied"
