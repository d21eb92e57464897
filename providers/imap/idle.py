"""IMAP IDLE (RFC 2177): wait on the selected folder until the server reports a change.

IDLE is re-issued every `IDLE_REISSUE_SECONDS` (under the 10-minute NAT/proxy horizon and far
under the 29-minute rule). `* OK Still here` keepalives are noise. aioimaplib's rules apply: after
`idle_start` always send DONE and await the IDLE task before the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from connector.errors import ProviderUnavailable
from providers.imap.connection import ImapSession

IDLE_REISSUE_SECONDS = 540.0
_CHANGE = re.compile(rb"^(?:\d+ (?:EXISTS|RECENT|EXPUNGE)|VANISHED\b)")


def _has_change(lines: Any, session: ImapSession, folder: str) -> bool:
    for line in lines:
        if not isinstance(line, bytes):
            continue
        if line.startswith(b"BYE"):
            session.abort()
            raise ProviderUnavailable(
                f"server ended the session during IDLE: {line[4:].decode(errors='replace')}",
                mailbox=session.mailbox_id,
                folder=folder,
            )
        if _CHANGE.match(line):
            return True
    return False


def _drain(session: ImapSession, folder: str) -> bool:
    queue = session.client.protocol.idle_queue
    changed = False
    while not queue.empty():
        changed = _has_change(queue.get_nowait(), session, folder) or changed
    return changed


async def _one_idle(session: ImapSession, folder: str, seconds: float, wake: asyncio.Event | None) -> bool:
    """One IDLE command for at most `seconds` or until `wake` is set; True when a change arrived."""
    client = session.client
    lost = client.protocol.lost
    idle_task = await session.run(client.idle_start(timeout=seconds + 60), "IDLE", folder=folder)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    changed = False
    woken: asyncio.Future[Any] = asyncio.ensure_future(wake.wait()) if wake else loop.create_future()
    try:
        while not changed and not woken.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            getter = asyncio.ensure_future(client.protocol.idle_queue.get())
            done, _ = await asyncio.wait(
                {getter, lost, woken}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if lost.done():
                    session.abort()
                    bye = client.protocol.bye
                    raise ProviderUnavailable(
                        "IMAP connection closed during IDLE" + (f": {bye}" if bye else ""),
                        mailbox=session.mailbox_id,
                        folder=folder,
                    )
                break
            changed = _has_change(getter.result(), session, folder)
    finally:
        woken.cancel()
        if session.alive:
            client.idle_done()
    await session.run(idle_task, "IDLE DONE", folder=folder)
    return _drain(session, folder) or changed


async def idle_until_change(
    session: ImapSession, folder: str, timeout_seconds: float, wake: asyncio.Event | None = None
) -> bool:
    """Runs IDLE (re-issued as needed) until a change (True), `timeout_seconds` or `wake` (False)."""
    _drain(session, folder)  # leftovers from an earlier IDLE are old news; the caller re-checked
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0 or (wake is not None and wake.is_set()):
            return False
        if await _one_idle(session, folder, min(remaining, IDLE_REISSUE_SECONDS), wake):
            return True
