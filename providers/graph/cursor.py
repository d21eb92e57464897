"""The per-folder Graph position: the delta link to resume from, tied to the mailbox user.

The link is Graph's own `@odata.nextLink` / `@odata.deltaLink` (opaque, followed verbatim) or, before
the first page is done, the initial delta request. The user is stored with it so a changed
`graph.user_id` restarts the folder instead of reading another mailbox's sync state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeltaCursor:
    user: str
    link: str

    @classmethod
    def parse(cls, text: str | None) -> DeltaCursor | None:
        """None for None or for text this provider did not write (the folder is then restarted)."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("v") != 1:
            return None
        user, link = data.get("user"), data.get("link")
        if not isinstance(user, str) or not isinstance(link, str) or not link:
            return None
        return cls(user, link)

    def __str__(self) -> str:
        return json.dumps({"v": 1, "user": self.user, "link": self.link}, separators=(",", ":"))
