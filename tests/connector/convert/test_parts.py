"""Unit behaviour of the converter's pieces: headers, addresses, threading, flags, text, HTML."""

from __future__ import annotations

import pytest

from connector.convert.addresses import parse_addresses
from connector.convert.flags import is_auto_reply
from connector.convert.headers import decode_header_value
from connector.convert.html import html_to_text, sanitize_html
from connector.convert.importance import importance_from
from connector.convert.language import detect_language
from connector.convert.names import safe_filename
from connector.convert.text import decode_bytes
from connector.convert.threads import normalize_subject, parse_id_list, parse_message_id, thread_key
from connector.models import Address


@pytest.mark.parametrize(
    ("subject", "normalized"),
    [
        ("Re: Re: Fwd: hello", "hello"),
        ("RE[2]: AW: WG: Anfrage", "Anfrage"),
        ("Re^2: x", "x"),
        ("[EXTERNAL] RE: [Ticket#123] Broken printer", "Broken printer"),
        ("SV: VS: Antw: Hei", "Hei"),
        ("Fw: FW:Order 42 [Ticket#99]", "Order 42"),
        ("TR: RE: Demande", "Demande"),
        ("回复：问题", "问题"),
        ("Reply needed", "Reply needed"),
        ("Automatic reply: Hello", "Automatic reply: Hello"),
        ("[Fwd: Invoice 12]", "Invoice 12"),
        ("Re: [Ticket #55] Heating broken [EXTERNAL]", "Heating broken"),
    ],
)
def test_normalize_subject_strips_prefixes_and_tags(subject: str, normalized: str) -> None:
    """Reply/forward prefixes of many languages and [tags] are removed repeatedly."""
    assert normalize_subject(subject) == normalized


def test_id_lists_are_unfolded_deduplicated_and_cleaned() -> None:
    """References keep order, drop duplicates and tokens that are not id@host."""
    assert parse_id_list(["<a@b> <a@b>\r\n <c@d> garbage <nope> <>", "<e@f>"]) == ("<a@b>", "<c@d>", "<e@f>")
    assert parse_message_id(" abc@def ") == "<abc@def>"
    assert parse_message_id("<x@y> (added by postmaster)") == "<x@y>"
    assert parse_message_id("not an id") is None


def test_thread_key_precedence() -> None:
    """Hint, then References root, then In-Reply-To, then own id."""
    assert thread_key("T", ("<r@x>",), "<p@x>", "<m@x>") == "T"
    assert thread_key(None, ("<r@x>", "<s@x>"), "<p@x>", "<m@x>") == "<r@x>"
    assert thread_key(None, (), "<p@x>", "<m@x>") == "<p@x>"
    assert thread_key(None, (), None, "<m@x>") == "<m@x>"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("=?UTF-8?B?w4RwZmVs?= =?UTF-8?B?IHVuZCBCaXJuZW4=?=", "Äpfel und Birnen"),
        ("Re: =?utf-8?Q?Gr=C3=BC=C3=9Fe?= aus Berlin", "Re: Grüße aus Berlin"),
        ("=?utf-8?B?5pel5pys?= =?utf-8?B?6Kqe?=", "日本語"),
        ("Caf\udcc3\udca9 ok", "Café ok"),
        ("Caf\udce9 ok", "Café ok"),
        ("=?utf-8?q?broken word with spaces?=", "broken word with spaces"),
        ("=?utf-8*en?Q?lang_tag?=", "lang tag"),
        ("=?utf-8?B?w4RwZmVs?=", "Äpfel"),
        ("=?utf-8?B?w4RwZmV?=", "Äpfe"),
        ("plain\r\n folded", "plain folded"),
    ],
)
def test_header_decoding_handles_broken_real_world_words(raw: str, decoded: str) -> None:
    """Encoded words (also malformed) and raw 8-bit bytes decode to the intended text."""
    assert decode_header_value(raw, []) == decoded


def test_addresses_best_effort() -> None:
    """Unquoted names, unterminated quotes and garbage never crash; usable addresses survive."""
    found = parse_addresses(['John Doe john@x.com, foo, "unterminated <a@b.c>, <<>>@@'], [], "to")
    assert found == (Address("john@x.com", "John Doe"), Address("a@b.c", "unterminated"))


def test_auto_reply_markers() -> None:
    """RFC 3834 and list markers count; Auto-Submitted: no and X-Auto-Response-Suppress do not."""
    assert is_auto_reply({"auto-submitted": ["auto-replied"]}, "x", False)
    assert not is_auto_reply({"auto-submitted": ["no"]}, "x", False)
    assert is_auto_reply({"x-autoreply": ["yes"]}, "x", False)
    assert is_auto_reply({"precedence": ["bulk"]}, "x", False)
    assert is_auto_reply({"list-unsubscribe": ["<mailto:x@y>"]}, "x", False)
    assert not is_auto_reply({"x-auto-response-suppress": ["All"]}, "x", False)
    assert is_auto_reply({"x-ms-exchange-inbox-rules-loop": ["a@b"]}, "Out of Office: x", False)
    assert not is_auto_reply({}, "Out of Office: x", False)


@pytest.mark.parametrize(
    ("headers", "level"),
    [
        ({"importance": ["High"]}, "high"),
        ({"importance": ["low"]}, "low"),
        ({"x-priority": ["1 (Highest)"]}, "high"),
        ({"x-priority": ["2"]}, "high"),
        ({"x-priority": ["3 (Normal)"]}, "normal"),
        ({"x-priority": ["5"]}, "low"),
        ({"priority": ["non-urgent"]}, "low"),
        ({"x-msmail-priority": ["High"]}, "high"),
        ({}, "normal"),
    ],
)
def test_importance_mapping(headers: dict[str, list[str]], level: str) -> None:
    """Importance, X-Priority, Priority and X-MSMail-Priority map to low/normal/high."""
    assert importance_from(headers) == level


def test_language_is_none_for_short_text() -> None:
    """Short text gives no language rather than a guess."""
    assert detect_language("Thanks!") is None
    assert (
        detect_language("Bonjour, je voudrais annuler ma commande et obtenir un remboursement complet.")
        == "fr"
    )


def test_text_decoding_never_raises_on_bad_labels() -> None:
    """Unknown and wrong labels decode with replacement at worst."""
    defects: list[str] = []
    assert decode_bytes(b"plain", "no-such-charset", defects) == "plain"
    assert decode_bytes("Grüße".encode(), "utf-7", defects)
    assert decode_bytes(b"\xff\xfe\x00", "utf-8", defects)


def test_sanitizer_removes_active_content_but_keeps_cid_images() -> None:
    """No script, handler, javascript: or style url(); cid: images survive."""
    html = sanitize_html(
        '<img src="cid:a@b" onerror="x()"><a href="javascript:x()">y</a><div style="background:url(http://e/x)">'
        "<object data=x></object><svg><script>1</script></svg></div>"
    )
    assert 'src="cid:a@b"' in html
    for bad in ("onerror", "javascript:", "url(", "<object", "<script", "<svg"):
        assert bad not in html


def test_html_to_text_keeps_breaks_and_links() -> None:
    """Block elements become line breaks and link targets are kept in angle brackets."""
    text = html_to_text("<p>One<br>Two</p><ul><li>a</li></ul><a href='https://x.example/p'>site</a>")
    assert text == "One\nTwo\n\n- a\nsite <https://x.example/p>"


@pytest.mark.parametrize(
    ("name", "ctype", "safe"),
    [
        ("../../etc/passwd", "text/plain", "passwd"),
        ("C:\\Users\\x\\report.pdf", "application/pdf", "report.pdf"),
        ("..", "text/plain", "attachment-1.txt"),
        (None, "image/jpeg", "attachment-1.jpg"),
        ("evil\u202egpj.exe", "application/octet-stream", "evilgpj.exe"),
        ("a\x00b\x1f.txt", "text/plain", "ab.txt"),
        ("CON.txt", "text/plain", "_CON.txt"),
        (".htaccess", "text/plain", "htaccess"),
    ],
)
def test_safe_filename(name: str | None, ctype: str, safe: str) -> None:
    """File names lose path parts, controls, bidi overrides and reserved names."""
    assert safe_filename(name, ctype, 1) == safe
