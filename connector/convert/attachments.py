"""Attachments beyond the plain MIME part: TNEF (winmail.dat) contents and uuencoded blocks in text.

Outlook wraps attachments in TNEF and old clients still paste uuencoded files into the body;
an agent should see the files either way, not a `winmail.dat` nor a wall of `M4F...` lines.
"""

from __future__ import annotations

import binascii
import hashlib
import re

from connector.convert.names import content_type_for, safe_filename
from connector.models import Attachment

# The begin line and the end line are found separately: one lazy `begin...end` pattern rescans the
# rest of the text for every `begin` that has no `end` (quadratic on hostile text).
_UU_BEGIN = re.compile(r"^begin(?:-base64)? +([0-7]{3,4}) +([^\r\n]+?)[ \t]*\r?\n", re.MULTILINE)
_UU_END = re.compile(r"^end[ \t]*$\r?\n?", re.MULTILINE)


def make_attachment(
    filename: str, content_type: str, data: bytes, content_id: str | None = None, inline: bool = False
) -> Attachment:
    return Attachment(
        filename=filename,
        content_type=content_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_id=content_id,
        inline=inline,
    )


def is_tnef(content_type: str, filename: str | None) -> bool:
    return content_type in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        filename is not None and filename.lower() == "winmail.dat"
    )


def unpack_tnef(
    data: bytes, start_index: int, defects: list[str]
) -> tuple[list[Attachment], str | None, str | None]:
    """Files inside a winmail.dat plus its plain and HTML bodies; ([], None, None) when unreadable."""
    from tnefparse import TNEF  # imported lazily: most mail has no TNEF

    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # tnefparse raises assorted errors on damaged input
        defects.append(f"winmail.dat could not be unpacked: {type(exc).__name__}")
        return [], None, None
    found: list[Attachment] = []
    for offset, item in enumerate(tnef.attachments):
        try:
            name = item.long_filename()
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            payload = item.data if isinstance(item.data, bytes) else bytes(item.data or b"")
        except Exception as exc:  # one damaged entry must not lose the others
            defects.append(f"winmail.dat entry {offset} unreadable: {type(exc).__name__}")
            continue
        name = str(name).strip("\x00")
        ctype = content_type_for(name)
        found.append(make_attachment(safe_filename(name, ctype, start_index + offset), ctype, payload))
    return found, _as_text(tnef.body), _as_text(tnef.htmlbody)


def _as_text(value: object) -> str | None:
    if isinstance(value, bytes):
        text = value.decode("cp1252", "replace").rstrip("\x00")
        return text or None
    if isinstance(value, str):
        return value.rstrip("\x00") or None
    return None


def extract_uuencoded(text: str, start_index: int, defects: list[str]) -> tuple[str, list[Attachment]]:
    """Text with uuencoded blocks removed, and the files they carried."""
    if "begin " not in text:
        return text, []
    found: list[Attachment] = []
    kept: list[str] = []
    pos = 0
    while (begin := _UU_BEGIN.search(text, pos)) is not None:
        end = _UU_END.search(text, begin.end())
        if end is None:  # no end line after this begin, so none after any later begin either
            break
        data = _uudecode(text[begin.end() : end.start()], defects)
        if data is None:  # not really uuencoded: keep the lines as text
            kept.append(text[pos : end.end()])
        else:
            kept.append(text[pos : begin.start()])
            name = begin.group(2).strip()
            ctype = content_type_for(name)
            found.append(make_attachment(safe_filename(name, ctype, start_index + len(found)), ctype, data))
        pos = end.end()
    kept.append(text[pos:])
    cleaned = "".join(kept)
    return (cleaned.strip("\n") + "\n" if found and cleaned.strip() else cleaned), found


def _uudecode(body: str, defects: list[str]) -> bytes | None:
    out = bytearray()
    lines = body.splitlines()
    if not lines:
        return None
    for line in lines:
        if not line or line in ("`", " "):
            continue
        try:
            raw = line.encode("ascii")
        except UnicodeEncodeError:
            return None
        try:
            out += binascii.a2b_uu(raw)
        except binascii.Error:
            # Some encoders strip trailing spaces; trust the length byte (as the stdlib uu module does)
            nbytes = (((raw[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(raw[:nbytes])
            except binascii.Error:
                defects.append("uuencoded block damaged")
                return None
    return bytes(out)
