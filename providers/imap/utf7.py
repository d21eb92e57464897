"""IMAP modified UTF-7 folder names (RFC 3501 §5.1.3).

Python's "utf-7" codec is the plain RFC 2152 variant ('+' shift, '/' in base64), which servers
reject, and neither imaplib nor aioimaplib converts names, so the two directions live here.
"""

from __future__ import annotations

import base64

_PRINTABLE_LOW, _PRINTABLE_HIGH = 0x20, 0x7E


def _b64_run(run: str) -> str:
    data = base64.b64encode(run.encode("utf-16-be")).decode("ascii")
    return "&" + data.rstrip("=").replace("/", ",") + "-"


def encode_folder(name: str) -> str:
    """Unicode folder name → the ASCII form sent on the wire (`Entwürfe` → `Entw&APw-rfe`)."""
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _PRINTABLE_LOW <= ord(ch) <= _PRINTABLE_HIGH:
            if run:
                out.append(_b64_run("".join(run)))
                run.clear()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_b64_run("".join(run)))
    return "".join(out)


def decode_folder(wire: str) -> str:
    """The wire form back to Unicode; a malformed shift sequence raises ValueError."""
    out: list[str] = []
    i = 0
    while i < len(wire):
        ch = wire[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = wire.find("-", i + 1)
        if end < 0:
            raise ValueError(f"unterminated modified UTF-7 sequence in folder name {wire!r}")
        chunk = wire[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"bad modified UTF-7 sequence in folder name {wire!r}") from exc
        i = end + 1
    return "".join(out)


def quote_folder(name: str) -> str:
    """Encoded and quoted as an IMAP string argument (aioimaplib sends arguments verbatim)."""
    wire = encode_folder(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{wire}"'
