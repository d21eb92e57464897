"""Batched `UID FETCH` and the parser for its responses.

Each batch is two round trips: first `(UID RFC822.SIZE FLAGS INTERNALDATE)` to learn sizes, then
`BODY.PEEK[]` (never sets \\Seen) for messages within the size limit and `BODY.PEEK[HEADER]` for
the rest. Batches stay at `fetch_batch` UIDs (≤ 50 by default): aioimaplib's cost per FETCH grows
quadratically with the response length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from connector.models import RawMessage
from providers.imap.connection import ImapSession
from providers.imap.cursor import message_id, uid_set

BODY_BYTES_PER_COMMAND = 32 * 1024 * 1024  # keeps one FETCH response (and its deadline) bounded
ASSUMED_BYTES_PER_SECOND = 1_000_000  # a FETCH deadline grows with the bytes it must carry
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_TOKEN = re.compile(
    rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}$|([^\s()"]+(?:\[[^\]]*\](?:<[\d.]+>)?)?))'
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1
    )
}


@dataclass(slots=True)
class FetchedItem:
    uid: int
    size: int | None = None
    flags: frozenset[str] = frozenset()
    internal_date: datetime | None = None
    body: bytes | None = None


def _parse_items(segments: list[bytes | bytearray]) -> dict[str, Any]:
    """Parses one `N FETCH (...)` response (text lines interleaved with literals) into name → value."""
    stack: list[list[Any]] = [[]]
    literals = [bytes(s) for s in segments if not isinstance(s, bytes)]
    texts = [s for s in segments if isinstance(s, bytes)]
    lit_i = 0
    for text in texts:
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
            opened, closed, quoted, literal, atom = m.groups()
            if opened:
                stack.append([])
            elif closed:
                if len(stack) > 1:
                    inner = stack.pop()
                    stack[-1].append(inner)
            elif quoted is not None:
                stack[-1].append(re.sub(rb"\\(.)", rb"\1", quoted))
            elif literal is not None:
                stack[-1].append(literals[lit_i] if lit_i < len(literals) else b"")
                lit_i += 1
            elif atom is not None:
                stack[-1].append(atom)
    top = stack[0]
    # top = [b"N", b"FETCH", [name, value, name, value, ...]]
    attrs = next((t for t in top if isinstance(t, list)), [])
    out: dict[str, Any] = {}
    for name, value in zip(attrs[::2], attrs[1::2], strict=False):
        if isinstance(name, bytes):
            out[name.decode("ascii", "replace").upper()] = value
    return out


def parse_internal_date(text: bytes) -> datetime | None:
    """`17-Jul-1996 02:44:25 -0700` → aware datetime; None when the server sent something else."""
    m = re.match(rb"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", text)
    if not m:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    month = _MONTHS.get(mon.decode().title())
    if month is None:
        return None
    try:
        offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == b"-" else 1)
        local = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError):  # 31-Feb, year 0, offsets of a day or more: no date, not a crash
        return None


def parse_fetch_lines(lines: list[Any]) -> dict[int, FetchedItem]:
    """aioimaplib's FETCH `Response.lines` (last line = tagged text) → items by UID.

    Unsolicited FETCH responses without a UID (flag updates from other sessions) are skipped.
    """
    groups: list[list[bytes | bytearray]] = []
    for line in lines[:-1]:
        if isinstance(line, bytes) and _FETCH_START.match(line):
            groups.append([line])
        elif groups:
            groups[-1].append(line)
    items: dict[int, FetchedItem] = {}
    for group in groups:
        attrs = _parse_items(group)
        uid_text = attrs.get("UID")
        if not isinstance(uid_text, bytes) or not uid_text.isdigit():
            continue
        item = items.setdefault(int(uid_text), FetchedItem(int(uid_text)))
        size = attrs.get("RFC822.SIZE")
        if isinstance(size, bytes) and size.isdigit():
            item.size = int(size)
        flags = attrs.get("FLAGS")
        if isinstance(flags, list):
            item.flags = frozenset(f.decode("utf-8", "replace") for f in flags if isinstance(f, bytes))
        date = attrs.get("INTERNALDATE")
        if isinstance(date, bytes):
            item.internal_date = parse_internal_date(date)
        for key in ("BODY[]", "BODY[HEADER]"):
            body = attrs.get(key)
            if isinstance(body, bytes) and body != b"NIL":
                item.body = body
    return items


def _chunks(uids: list[int], size: int) -> list[list[int]]:
    return [uids[i : i + size] for i in range(0, len(uids), size)]


async def _uid_fetch(
    session: ImapSession, uids: list[int], items: str, folder: str, nbytes: int = 0
) -> dict[int, FetchedItem]:
    timeout = session.settings.timeout_seconds + nbytes / ASSUMED_BYTES_PER_SECOND
    resp = await session.ok(
        session.client.uid("fetch", uid_set(uids), items),
        "UID FETCH",
        seconds=timeout,
        folder=folder,
        uid=uid_set(uids)[:40],
    )
    return parse_fetch_lines(resp.lines)


async def fetch_messages(
    session: ImapSession, folder: str, uids: list[int], validity: int, max_bytes: int
) -> list[RawMessage]:
    """The messages for `uids` (ascending) as RawMessage; UIDs expunged meanwhile are left out."""
    out: list[RawMessage] = []
    for batch in _chunks(uids, session.settings.fetch_batch):
        meta = await _uid_fetch(session, batch, "(UID RFC822.SIZE FLAGS INTERNALDATE)", folder)
        present = [u for u in batch if u in meta]
        small = [u for u in present if (meta[u].size or 0) <= max_bytes]
        large = [u for u in present if (meta[u].size or 0) > max_bytes]
        bodies: dict[int, FetchedItem] = {}
        group: list[int] = []
        group_bytes = 0
        for uid in small:
            size = meta[uid].size or 0
            if group and group_bytes + size > BODY_BYTES_PER_COMMAND:
                bodies.update(await _uid_fetch(session, group, "(UID BODY.PEEK[])", folder, group_bytes))
                group, group_bytes = [], 0
            group.append(uid)
            group_bytes += size
        if group:
            bodies.update(await _uid_fetch(session, group, "(UID BODY.PEEK[])", folder, group_bytes))
        if large:
            bodies.update(await _uid_fetch(session, large, "(UID BODY.PEEK[HEADER])", folder))
        for uid in present:
            body = bodies.get(uid)
            if body is None or body.body is None:
                continue  # expunged between the two FETCHes
            info = meta[uid]
            out.append(
                RawMessage(
                    folder=folder,
                    provider_id=message_id(validity, uid),
                    raw=body.body,
                    size=info.size if info.size is not None else len(body.body),
                    internal_date=info.internal_date,
                    flags=info.flags,
                    cursor=message_id(validity, uid),
                    headers_only=uid in large,
                )
            )
    return out
