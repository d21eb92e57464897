"""Pure parts of the IMAP provider: modified UTF-7, UID cursors and sets, FETCH response parsing."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from providers.imap.cursor import UidCursor, uid_set
from providers.imap.fetch import parse_fetch_lines, parse_internal_date
from providers.imap.utf7 import decode_folder, encode_folder, quote_folder


def test_modified_utf7_matches_rfc3501_examples() -> None:
    """Known encodings: non-ASCII runs in ,-base64 between & and -, and & itself as &-."""
    assert encode_folder("Entwürfe") == "Entw&APw-rfe"
    assert encode_folder("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_folder("A & B") == "A &- B"
    assert decode_folder("Work Items &APw-") == "Work Items ü"
    assert quote_folder('Sent "old"') == '"Sent \\"old\\""'


@given(st.text())
def test_modified_utf7_round_trips_any_name(name: str) -> None:
    """decode(encode(x)) == x for every Unicode string, and the wire form is printable ASCII."""
    wire = encode_folder(name)
    assert all(0x20 <= ord(c) <= 0x7E for c in wire)
    assert decode_folder(wire) == name


def test_cursor_parses_only_validity_colon_uid() -> None:
    """ "V:U" parses; anything else is None so the provider restarts the folder."""
    assert UidCursor.parse("123:45") == UidCursor(123, 45)
    assert str(UidCursor(7, 0)) == "7:0"
    for bad in (None, "", "12", "a:b", "1:2:3", ":5"):
        assert UidCursor.parse(bad) is None


def test_uid_set_compresses_runs() -> None:
    """Consecutive UIDs collapse into ranges to keep command lines short."""
    assert uid_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert uid_set([9]) == "9"


def test_fetch_parser_reads_literals_flags_and_dates() -> None:
    """Lines as aioimaplib delivers them (text, bytearray literal, closing text) become items by UID."""
    lines = [
        b"1 FETCH (UID 10 RFC822.SIZE 42 FLAGS (\\Seen $Label) "
        b'INTERNALDATE " 7-Feb-2024 10:00:00 +0100" BODY[] {5}',
        bytearray(b"a)b(c"),
        b")",
        b"2 FETCH (FLAGS (\\Deleted))",  # unsolicited, no UID: skipped
        b"3 FETCH (UID 12 BODY[HEADER] {3}",
        bytearray(b"h\r\n"),
        b" FLAGS ())",
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    items = parse_fetch_lines(lines)
    assert set(items) == {10, 12}
    assert items[10].body == b"a)b(c" and items[10].size == 42
    assert items[10].flags == frozenset({"\\Seen", "$Label"})
    assert items[10].internal_date == datetime(2024, 2, 7, 9, 0, tzinfo=UTC)
    assert items[12].body == b"h\r\n" and items[12].flags == frozenset()


def test_internal_date_rejects_garbage() -> None:
    """An INTERNALDATE the parser does not understand gives None, not an exception."""
    assert parse_internal_date(b"yesterday") is None


def test_impossible_internal_dates_are_no_date_not_an_error() -> None:
    """A server's impossible INTERNALDATE must not stop the folder: the message just has no date."""
    for text in (b"31-Feb-2020 10:00:00 +0000", b"01-Jan-0000 00:00:00 +0000", b"01-Jan-2020 00:00:00 +2400"):
        assert parse_internal_date(text) is None
