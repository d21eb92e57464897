"""The Gmail folder cursor: opaque to the pipeline, two forms.

`h:<historyId>`              every message added to the label up to that history id is handled;
                             the next fetch reads `history.list(startHistoryId=...)`.
`f:<historyId>:<ms>:<id>`    a full sync seeded at `historyId` (users.getProfile, read before the
                             listing) has handled every listed message up to the key
                             (internalDate ms, message id); messages after the key come next, and
                             once the listing is done the cursor becomes `h:<historyId>`.
Keys rather than list positions: a post-action (move, delete) removes delivered messages from
the label, which would shift positions and skip mail.
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[int, str]  # (internalDate ms, message id): the order messages are handed over in


@dataclass(frozen=True, slots=True)
class GmailCursor:
    history_id: int
    full_after: Key | None = None  # set while a full sync is under way
    full: bool = False

    @classmethod
    def parse(cls, text: str | None) -> GmailCursor | None:
        """None for no cursor; raises ValueError for one this provider did not write."""
        if text is None:
            return None
        kind, _, rest = text.partition(":")
        if kind == "h" and rest.isdigit():
            return cls(int(rest))
        if kind == "f":
            parts = rest.split(":")
            if len(parts) == 1 and parts[0].isdigit():
                return cls(int(parts[0]), None, True)
            if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and parts[2]:
                return cls(int(parts[0]), (int(parts[1]), parts[2]), True)
        raise ValueError(f"not a Gmail cursor: {text[:40]!r}")

    def __str__(self) -> str:
        if not self.full:
            return f"h:{self.history_id}"
        if self.full_after is None:
            return f"f:{self.history_id}"
        return f"f:{self.history_id}:{self.full_after[0]}:{self.full_after[1]}"


def incremental(history_id: int) -> str:
    return str(GmailCursor(history_id))


def full(history_id: int, after: Key | None) -> str:
    return str(GmailCursor(history_id, after, True))
