# ruff: noqa: E501  (expected message text is data, kept on one line to compare exactly)
"""convert() and unparseable_item() contracts: oversize, quarantine, limits, defects."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from connector.convert import DEFAULT_LIMITS, Limits, convert, unparseable_item
from connector.errors import MessageError
from connector.models import Address

CORPUS = Path(__file__).parent / "corpus"


def nested(depth: int) -> bytes:
    head = b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    body = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        boundary = f"b{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary + b"\r\n"
            + body + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    return head + body


def test_headers_only_gives_oversize_item_from_headers() -> None:
    """An oversize message fetched as headers only keeps subject, addresses and threading, and says why."""
    raw = (CORPUS / "gmail_reply_thread.eml").read_bytes()
    header_block = raw[: raw.index(b"\r\n\r\n") + 4]
    item = convert(header_block, size=48_000_000, headers_only=True)
    assert item.flags.oversize is True
    assert item.size == 48_000_000
    assert item.subject == "Re: Re: Frage zu meiner Rechnung"
    assert item.sender == Address("peter.brown@gmail.com", "Peter Brown")
    assert item.thread_key == "<CAF=abc123@mail.gmail.com>"
    assert "too large" in item.text_body and "kept on the mail server" in item.text_body
    assert "48,000,000" in item.text_body
    assert item.attachments == () and item.html_body is None
    assert item.raw_sha256 == hashlib.sha256(header_block).hexdigest()


def test_size_defaults_to_raw_length() -> None:
    """Without an explicit size the item's size is the raw length."""
    raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    assert convert(raw).size == len(raw)


def test_unparseable_item_attaches_original_and_names_error() -> None:
    """The quarantine item carries a best-effort subject/sender, the error, and the raw as original.eml."""
    raw = b"Subject: =?utf-8?Q?Kaputt_=C3=BC?=\r\nFrom: Broken <broken@example.com>\r\n\r\n\x00\xff garbage"
    item = unparseable_item(raw, "MIME nesting deeper than 12 levels")
    assert item.flags.unparseable is True
    assert item.subject == "Kaputt ü"
    assert item.sender == Address("broken@example.com", "Broken")
    assert "MIME nesting deeper than 12 levels" in item.text_body
    (original,) = item.attachments
    assert (original.filename, original.content_type, original.data) == (
        "original.eml",
        "message/rfc822",
        raw,
    )
    assert original.sha256 == hashlib.sha256(raw).hexdigest()
    assert item.message_id.endswith("@iwd-email-connector.invalid>")


@pytest.mark.parametrize("raw", [b"", b"\x00\x01\x02", b"\xff" * 100, b":\r\n\r\n", b"no headers at all"])
def test_unparseable_item_never_raises(raw: bytes) -> None:
    """Whatever bytes come in, the quarantine item is produced."""
    item = unparseable_item(raw, "error \udcff with surrogate")
    assert item.flags.unparseable is True
    assert item.attachments[0].data == raw


def test_nesting_beyond_limit_is_flattened_not_quarantined() -> None:
    """MIME nested deeper than the limit becomes a normal item with its text; the truncation is a defect."""
    item = convert(nested(40))
    assert item.flags.unparseable is False
    assert item.text_body == "innermost\n"
    assert "MIME nesting deeper than 12 levels; the parts below were flattened" in item.defects
    shallow = convert(nested(5))
    assert shallow.text_body == "innermost\n" and not any("nesting" in d for d in shallow.defects)


def test_part_count_limit_raises_message_error() -> None:
    """More parts than allowed raises MessageError."""
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(30))
    raw = b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    with pytest.raises(MessageError, match="parts"):
        convert(raw, limits=dataclasses.replace(DEFAULT_LIMITS, max_parts=10))
    assert convert(raw).text_body.count("x") == 30


def test_header_block_limit_raises_message_error() -> None:
    """A header block larger than the limit is refused."""
    raw = b"From: a@example.com\r\n" + b"X-Junk: " + b"a" * 2000 + b"\r\n\r\nbody"
    with pytest.raises(MessageError, match="header block"):
        convert(raw, limits=Limits(max_header_bytes=1000))


def test_time_limit_raises_message_error() -> None:
    """The per-message time budget is enforced."""
    with pytest.raises(MessageError, match="longer than"):
        convert(nested(10), limits=Limits(max_seconds=-1.0))


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_not_an_email_raises_message_error(raw: bytes) -> None:
    """Empty input or bytes with no header fields are not an email."""
    with pytest.raises(MessageError):
        convert(raw)


def test_attachment_limit_drops_extra_with_defect() -> None:
    """Attachments beyond max_attachments are dropped and the drop is recorded."""
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f%d.bin\r\n\r\n%d\r\n"
        % (i, i)
        for i in range(5)
    )
    raw = b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    item = convert(raw, limits=Limits(max_attachments=3))
    assert [a.filename for a in item.attachments] == ["f0.bin", "f1.bin", "f2.bin"]
    assert any("2 attachments" in d for d in item.defects)


def test_leading_blank_lines_before_headers_are_tolerated() -> None:
    """Some exporters prepend blank lines; the headers are still found."""
    item = convert(b"\r\n\r\nFrom: a@example.com\r\nSubject: hello\r\n\r\nbody\r\n")
    assert item.subject == "hello"
    assert item.text_body == "body\n"


def test_conversion_is_deterministic() -> None:
    """The same bytes give the same item (no clock, no randomness), including the detected language."""
    raw = (CORPUS / "outlook_related_inline_image.eml").read_bytes()
    assert convert(raw) == convert(raw)


def test_large_base64_bodies_decode_outside_the_parser_identically() -> None:
    """Cutting long base64 runs out before parsing changes nothing in the item (attachments, .eml, text)."""
    import base64
    import os

    blob = os.urandom(60_000)
    encoded = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    pasted = base64.encodebytes(os.urandom(30_000)).replace(b"\n", b"\r\n")
    inner = (
        b"From: x@example.com\r\nSubject: inner\r\nMessage-ID: <inner@x>\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded
    )
    raw = (
        b'From: a@example.com\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nPasted:\r\n" + pasted + b"end of text\r\n"
        b"--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded + b"AAE=\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n"
    )  # fmt: skip
    cut = convert(raw, limits=Limits(min_blob_bytes=10_000))
    whole = convert(raw, limits=Limits(min_blob_bytes=10**9))
    assert cut == whole
    assert cut.attachments[0].data == blob + b"\x00\x01"
    assert pasted.decode().replace("\r\n", "\n") in cut.text_body
    assert encoded in cut.attachments[1].data
