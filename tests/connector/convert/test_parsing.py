"""The conversion parser caches parsed headers and forgets them when a header changes."""

from __future__ import annotations

from connector.convert.parsing import parse_bytes

RAW = b"Subject: one\r\nContent-Type: text/plain; charset=latin-1\r\n\r\nbody\r\n"


def test_repeated_header_reads_return_the_same_parsed_object() -> None:
    """The second read is the cached object, not a fresh parse of the header grammar."""
    message = parse_bytes(RAW)
    assert message.get("Content-Type") is message.get("content-type")
    assert message.get_content_charset() == "latin-1"
    assert message.get("X-Missing", "fallback") == "fallback"


def test_changing_a_header_is_seen_on_the_next_read() -> None:
    message = parse_bytes(RAW)
    assert message["Subject"] == "one"
    message.replace_header("Subject", "two")
    message.set_param("charset", "utf-8")
    del message["X-Nothing"]
    message["X-New"] = "yes"
    assert (message["Subject"], message.get_content_charset(), message["X-New"]) == ("two", "utf-8", "yes")


def test_raw_values_are_indexed_once_and_follow_changes() -> None:
    """Raw lookups read one index of the header block; any change to the headers rebuilds it."""
    from connector.convert.headers import raw_headers

    message = parse_bytes(b"Received: a\r\nSubject: one\r\nreceived: b\r\n\r\nbody\r\n")
    assert raw_headers(message, "RECEIVED") == ["a", "b"]
    assert message.raw_values("received") is message.raw_values("received")
    message.add_header("Received", "c")
    message.replace_header("Subject", "two")
    assert raw_headers(message, "received") == ["a", "b", "c"]
    assert raw_headers(message, "subject") == ["two"]
    assert raw_headers(message, "x-missing") == []
