"""Hostile inputs that once made the converter quadratic or crash stay fast and graceful.

Small messages are converted on the event loop, so each adversarial case must finish well under a
second (measured inside the test; before the fixes each took 4-20 s). The bound is on this thread's
CPU time, not the wall clock: other processes on a loaded machine cannot fail it, a quadratic path can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from connector.convert import Limits, convert
from connector.convert.addresses import parse_addresses
from connector.convert.attachments import extract_uuencoded
from connector.convert.headers import decode_header_value, header_block_size, lenient_headers
from connector.convert.html import html_to_text
from connector.convert.language import detect_language
from connector.convert.text import codec_for, decode_bytes

BOUND_SECONDS = 1.0
HEAD = b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
PLAIN = HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
T = TypeVar("T")


def timed(work: Callable[[], T]) -> T:
    started = time.thread_time()
    result = work()
    elapsed = time.thread_time() - started
    assert elapsed < BOUND_SECONDS, f"took {elapsed:.2f} s"
    return result


def test_body_of_one_long_word_is_converted_quickly() -> None:
    """An 80 KB word without '@' no longer makes the address-stripping pattern quadratic."""
    item = timed(lambda: convert(PLAIN + b"a" * 80_000))
    assert item.text_body == "a" * 80_000 + "\n"


def test_language_sampling_of_blank_lines_and_long_words_is_fast() -> None:
    """Quote and address patterns stay linear on many empty lines and on one huge token."""
    assert timed(lambda: detect_language("\n" * 80_000)) is None
    timed(lambda: detect_language("b" * 80_000))
    english = "The quick brown fox jumps over the lazy dog while we wait for the invoice. " * 5
    assert detect_language("> quoted line\n" + english + " mail me at x@example.com") == "en"


def test_unterminated_encoded_words_in_subject_are_decoded_quickly() -> None:
    """20 000 `=?a?q?x ` fragments without `?=` stay literal text and take linear time."""
    raw = b"From: a@example.com\r\nSubject: " + b"=?a?q?x " * 20_000 + b"\r\n\r\nhi\r\n"
    item = timed(lambda: convert(raw))
    assert item.subject.startswith("=?a?q?x =?a?q?x")
    assert decode_header_value("=?utf-8?Q?M=C3=BCller?= =?a?q?x", []) == "Müller =?a?q?x"


def test_long_address_header_without_at_sign_is_parsed_quickly() -> None:
    """A 40 KB To: without '@' yields no address, fast; real addresses are still found."""
    item = timed(lambda: convert(b"From: a@example.com\r\nTo: " + b"a" * 40_000 + b"\r\n\r\nhi\r\n"))
    assert item.to == ()
    assert timed(lambda: parse_addresses(["x" * 40_000], [], "to")) == ()
    found = parse_addresses(["Hans Mueller hans@example.com"], [], "to")
    assert [(a.address, a.name) for a in found] == [("hans@example.com", "Hans Mueller")]


def test_many_uuencode_begin_lines_without_end_are_scanned_once() -> None:
    """10 000 `begin 644 x` lines with no `end` are left as text, in linear time."""
    text = "begin 644 x\n" * 10_000
    cleaned, found = timed(lambda: extract_uuencoded(text, 0, []))
    assert (cleaned, found) == (text, [])
    item = timed(lambda: convert(PLAIN + text.encode()))
    assert item.attachments == () and len(item.text_body) == len(text)


def test_uuencoded_block_after_an_unterminated_begin_is_still_extracted() -> None:
    """A stray `begin` line before a real block does not stop the real block from being found."""
    text = "hello\nbegin 644 a.txt\n#86)C\n`\nend\nbye\n"
    cleaned, found = extract_uuencoded(text, 0, [])
    assert [(a.filename, a.data) for a in found] == [("a.txt", b"abc")]
    assert cleaned == "hello\nbye\n"


def test_deeply_nested_links_render_in_linear_time() -> None:
    """20 000 nested <a> (each </a> spans all text since its <a>) render quickly, targets kept."""
    html = "".join(f"<a href='http://x{i}/'>w{i} " for i in range(20_000)) + "</a>" * 20_000
    text = timed(lambda: html_to_text(html))
    assert text.startswith("w0 w1 w2") and text.endswith("<http://x0/>")
    assert html_to_text('<a href="http://a.example/">see http://a.example/</a>') == "see http://a.example/"
    assert html_to_text('<a href="http://a.example/">here</a>') == "here <http://a.example/>"


def test_non_text_codec_labels_are_treated_as_unknown_charsets() -> None:
    """`undefined`, `base64`, `idna` labels decode by detection instead of raising UnicodeError."""
    for label in ("undefined", "base64", "rot13", "zlib", "idna"):
        assert codec_for(label) is None, label
        assert decode_bytes("caf\xe9 cr\xe8me".encode("cp1252"), label, []) != ""
    assert codec_for("windows-1251") == "cp1251"
    defects: list[str] = []
    assert decode_header_value("caf\udce9", defects, "subject", "undefined") != ""


def test_undefined_charset_message_is_converted_not_quarantined() -> None:
    """A body labelled `undefined` with 8-bit bytes (and an 8-bit subject) becomes a normal item."""
    raw = (
        b"From: a@example.com\r\nSubject: Caf\xe9 cr\xe8me\r\n"
        b"Content-Type: text/plain; charset=undefined\r\n\r\n"
        + "Bonjour, voilà la facture du café. Merci beaucoup, à bientôt.\r\n".encode("cp1252")
    )
    item = timed(lambda: convert(raw))
    assert item.flags.unparseable is False
    assert "unknown charset 'undefined'" in " ".join(item.defects)
    assert "Bonjour" in item.text_body


def test_lf_only_header_block_ends_at_the_first_blank_line() -> None:
    """A CRLF pair later in an LF-only message does not stretch the header block."""
    raw = b"From: a@example.com\nSubject: lf\n\n" + b"body line\n" * 200 + b"\r\n\r\ntail\n"
    assert header_block_size(raw) == raw.index(b"\n\n")
    assert header_block_size(b"A: b\r\n\r\nbody\n\nmore") == 4
    assert lenient_headers(raw) == {"from": "a@example.com", "subject": "lf"}
    item = convert(raw, limits=Limits(max_header_bytes=1024))
    assert item.subject == "lf" and item.flags.unparseable is False


def test_raw_8bit_header_with_an_unusable_body_charset_is_read_as_cp1252() -> None:
    """A body charset that is no text encoding ('undefined') is no guide for raw header bytes."""
    from connector.convert.headers import decode_header_value

    assert decode_header_value("caf\udce9", [], fallback_charset="undefined") == "café"


def test_many_address_like_display_names_are_quoted_in_linear_time() -> None:
    """20 000 `a@x <b@y>` pairs, and 40 KB of '@' before one angle address, parse quickly."""
    pairs = ", ".join(f"n{i}@x.example <m{i}@y.example>" for i in range(20_000))
    found = timed(lambda: parse_addresses([pairs], [], "to"))
    assert len(found) == 1000 and found[0].address == "m0@y.example"
    assert timed(lambda: parse_addresses(["@" * 40_000 + " <b@y.example>"], [], "to")) != ()


def test_many_unindented_header_lines_are_joined_in_linear_time() -> None:
    """100 000 lines without a colon between two header fields are joined to the first quickly."""
    raw = b"From: a@example.com\r\nX-Microsoft-Antispam: v\r\n" + b"abcdef\r\n" * 100_000
    raw += b"Subject: after\r\n\r\nbody\r\n"
    item = timed(lambda: convert(raw, limits=Limits(max_header_bytes=1024 * 1024)))
    assert item.subject == "after" and item.text_body == "body\n"


def test_four_hundred_levels_of_nesting_are_flattened_quickly() -> None:
    """400 nested multiparts (the stdlib parses them) are walked without recursion, text and file kept."""
    body = (
        b'Content-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\n'
        b"deep text\r\n--in\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=a.bin\r\n\r\nxyz\r\n--in--\r\n"
    )
    for level in range(400):
        boundary = f"b{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary + b"\r\n"
            + body + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    item = timed(lambda: convert(HEAD + body))
    assert item.flags.unparseable is False
    assert item.text_body == "deep text\n"
    assert [(a.filename, a.data) for a in item.attachments] == [("a.bin", b"xyz")]


def test_attached_message_the_bytes_generator_refuses_is_still_attached() -> None:
    """8-bit text where the stdlib's bytes generator wants ASCII no longer makes an internal error.

    Found by the CI fuzz profile: the compat32 fallback of `_serialize` raised UnicodeEncodeError."""
    raw = (
        b'Content-Type: multipart/mixed; boundary="o"\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n'
        b'Content-Type: multipart/mixed; boundary="o"\r\nBitte pr\xc3\xbcfen, die Rechnung ist doppelt.\r\n'
    )
    item = timed(lambda: convert(raw))
    (attached,) = item.attachments
    assert attached.content_type == "message/rfc822" and b"Rechnung ist doppelt" in attached.data


def test_boundary_right_after_the_header_block_is_not_joined_to_a_header() -> None:
    """A multipart missing the blank line before its first boundary keeps its parts (no header join)."""
    raw = (
        b'From: a@example.com\r\nSubject: no separator\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=x.bin\r\n\r\n"
        b"xyz\r\n--b--\r\n"
    )
    item = convert(raw)
    assert item.text_body == "first part\n"
    assert [(a.filename, a.data) for a in item.attachments] == [("x.bin", b"xyz")]
    assert not any("joined" in d for d in item.defects)


def test_base64_run_just_below_the_cut_size_is_scanned_in_linear_time() -> None:
    """A base64 run shorter than `min_blob_bytes` in a larger message costs one pass, not one per byte."""
    import base64

    run = base64.encodebytes(bytes(range(256)) * 800).replace(b"\n", b"\r\n")  # ~280 KB
    raw = (
        b"From: a@example.com\r\nSubject: s\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + run + b"--\r\n" + b"tail. " * 100_000
    )
    item = timed(lambda: convert(raw, limits=Limits(min_blob_bytes=512 * 1024)))  # a regex scan: ~70 s
    assert item.attachments[0].data == bytes(range(256)) * 800
