"""The per-folder IMAP position "UIDVALIDITY:UID": the highest UID already handed over.

Sequence numbers shift on every expunge, so they are never stored; a (UIDVALIDITY, UID) pair
is permanent for as long as the server keeps the UIDVALIDITY (RFC 3501 §2.3.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UidCursor:
    validity: int
    uid: int

    @classmethod
    def parse(cls, text: str | None) -> UidCursor | None:
        """None for None or for text that is not "V:U" (callers then restart the folder)."""
        if not text:
            return None
        left, sep, right = text.partition(":")
        if not sep or not left.isdigit() or not right.isdigit():
            return None
        return cls(int(left), int(right))

    def __str__(self) -> str:
        return f"{self.validity}:{self.uid}"


def message_id(validity: int, uid: int) -> str:
    """provider_id of a message; the same text as the cursor positioned right after it."""
    return f"{validity}:{uid}"


def uid_set(uids: list[int]) -> str:
    """Compact UID set ("1:5,9,12:13") for a sorted list; short command lines for long runs."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)
