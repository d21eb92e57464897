"""Raw MIME from `GET /messages/{id}/$value`, streamed, within the mailbox's size limit.

A message over `max_message_bytes` is handed over headers-only (the converter makes an `oversize`
item that says where the original is). Its header block comes from the first bytes of the stream;
if the headers alone exceed the limit, from Graph's `internetMessageHeaders`. Its size is the
response's Content-Length, or the bytes read before stopping when Graph sent none (a lower bound).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Mime:
    data: bytes
    size: int
    truncated: bool


def header_end(data: bytes) -> int | None:
    """Index just past the blank line that ends the header block, if it is in `data`."""
    ends = [i + n for i, n in ((data.find(b"\r\n\r\n"), 4), (data.find(b"\n\n"), 2)) if i >= 0]
    return min(ends) if ends else None


def mime_reader(max_bytes: int) -> Callable[[httpx.Response], Awaitable[Mime]]:
    async def read(response: httpx.Response) -> Mime:
        length = response.headers.get("Content-Length", "")
        declared = int(length) if length.isdigit() else None
        too_big = declared is not None and declared > max_bytes
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > max_bytes or (too_big and header_end(bytes(data[:max_bytes])) is not None):
                return Mime(bytes(data[:max_bytes]), declared or len(data), True)
        return Mime(bytes(data), len(data), False)

    return read


def header_block(mime: Mime) -> bytes | None:
    """The header block of a truncated message, blank line included; None if it was cut off."""
    end = header_end(mime.data)
    return mime.data[:end] if end is not None else None


def headers_from_graph(message: dict[str, Any]) -> bytes:
    """A header block rebuilt from Graph's `internetMessageHeaders` [{name, value}]."""
    lines = [
        f"{h.get('name')}: {h.get('value', '')}"
        for h in message.get("internetMessageHeaders") or []
        if isinstance(h, dict) and h.get("name")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")
