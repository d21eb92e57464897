"""Base64 bodies kept out of the stdlib parser: a large message costs about its own size in memory,
and an attachment costs one C call instead of a Python loop over its lines.

`email.parser` reads a body line by line in Python (about 1 µs a line, 2,700 lines for a 200 KB
attachment) and copies it several times (text lines, joined payload, decoded bytes): about 8x the
message size at peak. Long runs of base64 lines are cut out of the raw bytes before parsing and
replaced by a short token line; the part that holds a token is decoded straight from the original
bytes (a memoryview, no copy). Anything that is not a base64 part gets its bytes restored.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

# Every byte of the base64 alphabet (and line ends) becomes "a", every other byte ".": a run of
# base64 lines is then a run of "a" that `bytes.find` locates in C, in linear time. (A regex
# `[A-Za-z0-9+/\r\n]{n,}` rescans every shorter run from each of its positions: quadratic, 40 s
# for a 200 KB attachment in a 1 MB message.) Windows bound the translated copy's size.
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\r\n"
_CLASSES = bytes(0x61 if byte in _ALPHABET else 0x2E for byte in range(256))
_WINDOW_BYTES = 1 << 20
_TOKEN = re.compile(rb"IWDBLOB([0-9a-f]{16})N(\d+)Z")


@dataclass(frozen=True, slots=True)
class Blobs:
    """Where the cut runs were in the original bytes, and the nonce that marks their tokens."""

    raw: bytes
    spans: tuple[tuple[int, int], ...]
    nonce: str

    def token(self, index: int) -> bytes:
        return f"IWDBLOB{self.nonce}N{index}Z".encode("ascii")

    def holds_token(self, data: bytes) -> bool:
        return b"IWDBLOB" + self.nonce.encode("ascii") in data

    def restore(self, data: bytes, linesep: bytes | None = None) -> bytes:
        """`data` with every token replaced by the original bytes it stands for; `linesep`
        rewrites the restored lines' endings to match re-serialized surroundings."""
        if not self.holds_token(data):
            return data

        def original(match: re.Match[bytes]) -> bytes:
            if match.group(1).decode() != self.nonce:
                return match.group(0)
            text = self._slice(match)
            return text.replace(b"\r\n", b"\n").replace(b"\n", linesep) if linesep else text

        return _TOKEN.sub(original, data)

    def decode_base64(self, data: bytes) -> bytes:
        """Base64-decode a payload that holds tokens; the cut runs decode from the original bytes.

        Each run holds whole 4-character groups, so the pieces decode apart exactly as the whole
        would, as long as the text around them is whole groups too with padding only at the end.
        Otherwise (junk, a cut group: hostile mail) the restored payload goes to the stdlib's own
        lenient decoder, so both paths agree on what such a body holds."""
        tokens = [m for m in _TOKEN.finditer(data) if m.group(1).decode() == self.nonce]
        starts = [0, *(m.end() for m in tokens)]
        ends = [*(m.start() for m in tokens), len(data)]
        pieces = [data[a:b] for a, b in zip(starts, ends, strict=True)]
        if not all(_whole_groups(piece, index == len(tokens)) for index, piece in enumerate(pieces)):
            return _stdlib_base64(self.restore(data))
        out: list[bytes] = []
        pos = 0
        for match in tokens:
            out.append(_a2b(data[pos : match.start()]))
            start, end = self.spans[int(match.group(2))]
            out.append(_a2b(memoryview(self.raw)[start:end]))
            pos = match.end()
        out.append(_a2b(data[pos:]))
        pieces = [piece for piece in out if piece]
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)  # no second copy of a lone blob

    def _slice(self, match: re.Match[bytes]) -> bytes:
        start, end = self.spans[int(match.group(2))]
        return self.raw[start:end].rstrip(b"\r\n")


def cut_blobs(raw: bytes, nonce: str, min_bytes: int) -> tuple[bytes, Blobs | None]:
    """Raw bytes with base64 runs of at least `min_bytes` replaced by tokens (unchanged if none)."""
    if len(raw) < min_bytes:
        return raw, None
    if raw.count(b"\r") != raw.count(b"\r\n"):
        return raw, None  # a lone CR ends a line for the stdlib parser, not for the cut: leave it the mail
    spans: list[tuple[int, int]] = []
    for start, end in _runs(raw, min_bytes):
        span = _whole_lines(raw, start, end)
        if span is not None and span[1] - span[0] >= min_bytes:
            spans.append(span)
    if not spans:
        return raw, None
    blobs = Blobs(raw=raw, spans=tuple(spans), nonce=nonce)
    pieces: list[bytes] = []
    pos = 0
    for index, (start, end) in enumerate(spans):
        pieces.append(raw[pos:start])
        pieces.append(blobs.token(index) + b"\r\n")
        pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces), blobs


def _runs(raw: bytes, min_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, end) of every maximal run of base64 alphabet and line-end bytes of `min_bytes` or more."""
    needle = b"a" * min_bytes
    window = max(_WINDOW_BYTES, 4 * min_bytes)
    carry: int | None = None  # start of a run that reached the end of the previous window
    for low in range(0, len(raw), window):
        chunk = raw[low : low + window].translate(_CLASSES)
        pos = 0
        if carry is not None:
            pos = chunk.find(b".")
            if pos < 0:
                continue  # the whole window continues the run
            if low + pos - carry >= min_bytes:
                yield carry, low + pos
            carry = None
        while (found := chunk.find(needle, pos)) >= 0:
            start = chunk.rfind(b".", pos, found) + 1 or pos
            end = chunk.find(b".", found + min_bytes)
            if end < 0:
                carry = low + start
                break
            yield low + start, low + end
            pos = end
        else:
            last = chunk.rfind(b".", pos)
            if chunk and last < len(chunk) - 1:
                carry = low + (last + 1 if last >= 0 else pos)
    if carry is not None and len(raw) - carry >= min_bytes:
        yield carry, len(raw)


def _whole_lines(raw: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The part of a region that is whole base64 lines holding a multiple of 4 characters, so it
    decodes on its own and the rest of the body (e.g. a last line with `=` padding) does too."""
    if start > 0 and raw[start - 1] != 0x0A:
        newline = raw.find(b"\n", start, end)
        if newline < 0:
            return None
        start = newline + 1
    while start < end and raw[start] in b"\r\n":
        start += 1
    end = raw.rfind(b"\n", start, end) + 1
    while end > start and raw[end - 1] in b"\r\n":  # trailing blank lines belong to what follows
        end -= 1
    end = raw.find(b"\n", end) + 1
    for _ in range(4):
        if end <= start:
            return None
        chars = end - start - raw.count(b"\n", start, end) - raw.count(b"\r", start, end)
        if chars % 4 == 0:
            return start, end
        end = raw.rfind(b"\n", start, end - 1) + 1
    return None


_GROUPS = re.compile(rb"[A-Za-z0-9+/\r\n]*")
_LAST_GROUPS = re.compile(rb"[A-Za-z0-9+/\r\n]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?[\r\n]*")


def _whole_groups(piece: bytes, last: bool) -> bool:
    if (_LAST_GROUPS if last else _GROUPS).fullmatch(piece) is None:
        return False
    return (len(piece) - piece.count(b"\r") - piece.count(b"\n")) % 4 == 0


def _stdlib_base64(data: bytes) -> bytes:
    """What `email` makes of a base64 body, junk and broken padding included."""
    part = Message()
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(data.decode("ascii", "surrogateescape"))
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _a2b(data: bytes | memoryview) -> bytes:
    if not len(data):
        return b""
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        # padding problems: drop what cannot form a full quantum, as lenient decoders do
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", bytes(data))
        return binascii.a2b_base64(cleaned[: len(cleaned) - len(cleaned) % 4] or b"")
