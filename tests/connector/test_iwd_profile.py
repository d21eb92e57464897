"""The IWD profile: payload building from EmailItem, and the docs that must match profile.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from connector.errors import MessageError
from connector.iwd import build_email_payload
from connector.iwd import profile as p
from connector.iwd.openapi import build_openapi
from connector.models import Address, BounceInfo, ItemFlags
from tests.peers.sandbox import make_attachment, make_item

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _build(item: object, **overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "external_id": "ext-1",
        "mailbox_id": "support",
        "provider": "imap",
        "received_at": datetime(2026, 11, 20, 10, 30, tzinfo=timezone(timedelta(hours=2))),
        "attachment_ids": (),
    }
    kwargs.update(overrides)
    return build_email_payload(item, **kwargs)  # type: ignore[arg-type]


def test_payload_carries_every_item_field_in_profile_names() -> None:
    """Converter fields map to camelCase profile fields; timestamps become UTC with an explicit offset."""
    from dataclasses import replace

    pdf, logo = (
        make_attachment(b"%PDF-1.4", "Rechnung.pdf", "application/pdf"),
        make_attachment(b"\x89PNG", "logo.png"),
    )
    item = replace(
        make_item(1, attachments=(pdf, replace(logo, content_id="logo@x", inline=True))),
        reply_to=(Address("replies@example.net"),),
        in_reply_to="<prev@example.com>",
        references=("<a@x>", "<prev@example.com>"),
        thread_key="t-1",
        html_body="<p>Hello</p>",
        language="de",
        importance="high",
        flags=ItemFlags(auto_reply=True, bounce=True),
        bounce=BounceInfo(("gone@example.org",), "<orig@example.com>"),
        defects=("MissingHeaderBodySeparatorDefect",),
    )
    body = _build(item, attachment_ids=("att_1", "att_2"))
    assert body["direction"] == "inbound" and body["externalId"] == "ext-1" and body["provider"] == "imap"
    assert body["receivedAt"] == "2026-11-20T08:30:00+00:00"
    assert body["sentAt"] == "2026-11-20T09:00:00+00:00"
    assert body["from"] == {"name": "Customer 1", "address": "customer@example.net"}
    assert body["replyTo"] == [{"name": None, "address": "replies@example.net"}]
    assert body["references"] == ["<a@x>", "<prev@example.com>"] and body["inReplyTo"] == "<prev@example.com>"
    assert body["flags"] == {"autoReply": True, "bounce": True, "oversize": False, "unparseable": False}
    assert body["bounce"] == {
        "failedRecipients": ["gone@example.org"],
        "originalMessageId": "<orig@example.com>",
    }
    assert body["attachments"] == [
        {
            "attachmentId": "att_1",
            "filename": "Rechnung.pdf",
            "contentType": "application/pdf",
            "size": 8,
            "sha256": hashlib.sha256(b"%PDF-1.4").hexdigest(),
            "contentId": None,
            "inline": False,
        },
        {
            "attachmentId": "att_2",
            "filename": "logo.png",
            "contentType": "application/octet-stream",
            "size": 4,
            "sha256": hashlib.sha256(b"\x89PNG").hexdigest(),
            "contentId": "logo@x",
            "inline": True,
        },
    ]
    assert set(body) == {field.alias or name for name, field in p.InboundEmail.model_fields.items()}


def test_naive_timestamps_are_taken_as_utc() -> None:
    """A naive received_at is read as UTC rather than refused or shifted."""
    body = _build(make_item(1), received_at=datetime(2026, 1, 2, 3, 4, 5))
    assert body["receivedAt"] == "2026-01-02T03:04:05+00:00"


def test_attachment_id_count_must_match() -> None:
    """One id per attachment, or it is a programming error."""
    with pytest.raises(ValueError, match="1 attachment ids for 0 attachments"):
        _build(make_item(1), attachment_ids=("att_1",))


def test_item_outside_the_profile_raises_message_error_naming_the_field() -> None:
    """An item IWD would refuse becomes a MessageError (quarantine) that names the field."""
    from dataclasses import replace

    with pytest.raises(MessageError, match="importance:"):
        _build(replace(make_item(1), importance="urgent"))
    with pytest.raises(MessageError, match=r"from\.address:"):
        _build(replace(make_item(1), sender=Address("")))


def test_item_without_sender_sends_null_from() -> None:
    """A message with no usable From still makes a valid item, with from = null."""
    from dataclasses import replace

    assert _build(replace(make_item(1), sender=None))["from"] is None


def test_secret_keys_are_found_at_any_depth() -> None:
    """find_secret_keys names each secret-looking key by path, and leaves token_uri alone."""
    config = {"imap": {"password": "x"}, "oauth": [{"clientSecret": "y", "token_uri": "z"}], "apiKey": "w"}
    assert p.find_secret_keys(config) == ["imap.password", "oauth[0].clientSecret", "apiKey"]


def test_openapi_file_is_generated_from_the_profile() -> None:
    """docs/iwd-api.openapi.yaml equals build_openapi() (regenerate with python -m connector.iwd.openapi)."""
    on_disk = yaml.safe_load((DOCS / "iwd-api.openapi.yaml").read_text(encoding="utf-8"))
    assert on_disk == build_openapi(), "regenerate: python -m connector.iwd.openapi docs/iwd-api.openapi.yaml"
    assert set(on_disk["paths"]) == set(p.ALL_PATHS)
    assert on_disk["openapi"].startswith("3.1")


def test_markdown_doc_names_every_path_header_and_field() -> None:
    """docs/iwd-api.md mentions every path, header and inbound/status field of profile.py."""
    text = (DOCS / "iwd-api.md").read_text(encoding="utf-8")
    names = [
        *p.ALL_PATHS,
        p.API_KEY_HEADER,
        p.CCID_HEADER,
        p.IDEMPOTENCY_HEADER,
        p.REQUEST_ID_HEADER,
        p.FILENAME_HEADER,
        p.RETRY_AFTER_HEADER,
        *p.MAILBOX_STATES,
        *p.OUTBOUND_STATUSES,
    ]
    for model in (
        p.InboundEmail,
        p.AttachmentRef,
        p.Flags,
        p.Bounce,
        p.OutboundEmail,
        p.EmailPatch,
        p.DirectionStatus,
        p.MailboxStatus,
        p.BatchCreate,
        p.BatchItemResult,
        p.BatchItemError,
    ):
        names += [field.alias or name for name, field in model.model_fields.items()]
    missing = sorted({n for n in names if f"`{n}`" not in text})
    assert not missing, f"docs/iwd-api.md does not mention: {missing}"


def test_profile_timestamps_serialise_with_utc_offset() -> None:
    """Status timestamps given in any zone are sent as UTC +00:00."""
    now = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    status = p.MailboxStatus.model_validate(
        {"inbound": {"state": "ok"}, "outbound": {"state": "ok"}, "updatedAt": now}
    ).model_dump(mode="json", by_alias=True)
    assert status["updatedAt"] == "2026-05-01T17:00:00+00:00"
    assert datetime.fromisoformat(status["updatedAt"]).tzinfo == UTC


def test_attachment_keys_are_stable_and_name_one_attachment_of_one_email() -> None:
    """The same email, position and bytes give the same key; any of the three changed gives another."""
    sha, other = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    key = p.attachment_idempotency_key("mb-1.abc", 0, sha)
    assert key == p.attachment_idempotency_key("mb-1.abc", 0, sha)
    variants = {
        p.attachment_idempotency_key("mb-1.abd", 0, sha),
        p.attachment_idempotency_key("mb-1.abc", 1, sha),
        p.attachment_idempotency_key("mb-1.abc", 0, other),
    }
    assert key not in variants and len(variants) == 3
    assert key.startswith("att-") and len(key) == 68
