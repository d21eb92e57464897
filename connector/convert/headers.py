"""Header values as people meant them: RFC 2047 words (also broken ones) and raw 8-bit bytes.

We decode from the raw header text rather than trusting `email`'s header objects, which raise or
leave mojibake on the malformed words real mailers emit (split multibyte characters, spaces inside
words, unknown charsets, 8-bit UTF-8 or latin-1 bytes without any encoding).
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message

from connector.convert.parsing import CachedHeadersMessage
from connector.convert.text import codec_for, decode_bytes

# `[^?]*`, not `.*?`: an unterminated word must not scan to the end of the text (quadratic)
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\r\n]+")
# what the stdlib's feedparser accepts as a header line; anything else ends its header block
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[ \t]")


def raw_header(msg: Message, name: str) -> str | None:
    """First raw value of header `name` (surrogate-escaped bytes kept), or None."""
    values = raw_headers(msg, name)
    return values[0] if values else None


def raw_headers(msg: Message, name: str) -> list[str]:
    """All raw values of header `name`, in order, without the policy's parsing."""
    lname = name.lower()
    if isinstance(msg, CachedHeadersMessage):
        return list(msg.raw_values(lname))
    return [str(v) for k, v in msg.raw_items() if k.lower() == lname]


def to_bytes(value: str) -> bytes:
    """Undo BytesParser's surrogateescape so the original header bytes come back."""
    return value.encode("utf-8", "surrogateescape")


def unfold(value: str) -> str:
    return _FOLD.sub("", value)


def encoded_word_charsets(value: str) -> list[str]:
    """Charset labels of the RFC 2047 words in a raw header value, in order."""
    return [m.group(1).split("*", 1)[0] for m in _ENCODED_WORD.finditer(value)] if "=?" in value else []


def decode_header_value(
    value: str | None, defects: list[str], where: str = "header", fallback_charset: str | None = None
) -> str:
    """Decoded, unfolded, single-line text of a raw header value; never raises.

    Raw 8-bit bytes are read as UTF-8 when valid, else in `fallback_charset` (the body's declared
    charset is the best guess available: mailers that skip RFC 2047 use it for both), else cp1252.
    A short encoded word in an unknown charset is read in `fallback_charset` too, else as Western.
    """
    if value is None:
        return ""
    text = unfold(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        data = to_bytes(text)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            defects.append(f"{where}: unencoded 8-bit bytes")
            usable = fallback_charset if codec_for(fallback_charset) else None
            text = decode_bytes(data, usable or "cp1252", [], where)
    text = _decode_encoded_words(text, defects, where, fallback_charset)
    text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _decode_encoded_words(text: str, defects: list[str], where: str, hint: str | None) -> str:
    """Replace runs of encoded words; adjacent words of one charset are joined before decoding."""
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0
    run_charset: str | None = None
    run_bytes = bytearray()

    def flush() -> None:
        nonlocal run_charset
        if run_charset is not None:
            out.append(decode_bytes(bytes(run_bytes), run_charset, defects, where, hint))
        run_charset = None
        run_bytes.clear()

    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 language suffix: =?utf-8*en?Q?...?=
        if between.strip() or run_charset is None or charset.lower() != run_charset.lower():
            flush()
            if between.strip() or not out:
                out.append(between)
            # whitespace between two encoded words is dropped (RFC 2047 §6.2)
        run_charset = charset
        run_bytes.extend(_word_bytes(match.group(2), match.group(3), defects, where))
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def _word_bytes(kind: str, payload: str, defects: list[str], where: str) -> bytes:
    payload = payload.replace(" ", "") if kind in "bB" else payload
    data = payload.encode("utf-8", "surrogateescape")
    if kind in "qQ":
        data = data.replace(b"_", b" ")
        return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data)
    except (binascii.Error, ValueError):
        defects.append(f"{where}: broken base64 encoded word")
        return base64.b64decode(data[: len(data) - len(data) % 4 - 4] or b"") if len(data) > 4 else b""


def header_block_size(raw: bytes) -> int:
    """Bytes before the first empty line (the whole message when there is none).

    The earlier of a CRLF and an LF blank line wins: LF-only mail may carry CRLF pairs in its body.
    """
    crlf = raw.find(b"\r\n\r\n")
    # only an LF blank line before the CRLF one can win: never scan a whole CRLF message twice
    lf = raw.find(b"\n\n", 0, crlf + 1 if crlf >= 0 else len(raw))
    found = [idx for idx in (crlf, lf) if idx >= 0]
    return min(found) if found else len(raw)


def join_bare_continuations(raw: bytes, end: int | None = None) -> tuple[bytes, int]:
    """Header lines folded without leading whitespace become continuations; returns the count.

    Exchange folds long `X-Microsoft-*` diagnostic headers with no leading space. The stdlib ends
    the header block at such a line, so every later header (Content-Type among them) and the raw
    MIME become the text body. Like MimeKit and npm mailparser, a line without a colon that has
    header lines on both sides is read as a continuation of the field above it. Lines after the
    last header line, and from a `--boundary` line on, are left alone: those are a body that lacks
    its blank separator line.
    """
    end = header_block_size(raw) if end is None else end
    lines = raw[:end].splitlines(keepends=True)
    if not lines or not _HEADER_LINE.match(lines[0]):
        return raw, 0
    is_header = [_HEADER_LINE.match(line) is not None for line in lines]
    if all(is_header):
        return raw, 0
    # a MIME boundary line is a body that lacks its blank separator line, never a continuation
    body_start = next((i for i, ok in enumerate(is_header) if not ok and lines[i][:2] == b"--"), len(lines))
    last = max(i for i, ok in enumerate(is_header[:body_start]) if ok)
    joined = 0
    for index in range(1, last):
        if not is_header[index]:
            lines[index] = b" " + lines[index]
            joined += 1
    return (b"".join(lines) + raw[end:], joined) if joined else (raw, 0)


def lenient_headers(raw: bytes, max_bytes: int = 256 * 1024) -> dict[str, str]:
    """A forgiving scan of the header block for quarantine items: first value of each field."""
    head = raw[: min(header_block_size(raw), max_bytes)]
    text = head.decode("utf-8", "surrogateescape")
    found: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and current is not None:
            if current in found:
                found[current] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name.strip():
            current = None
            continue
        current = name.strip().lower()
        found.setdefault(current, value.strip())
    return found
