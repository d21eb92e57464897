"""The UIDs one `UID SEARCH` listed, handed out batch by batch: a backlog costs one search per pass.

Without it every batch re-searched the rest of the folder, and a server without ESEARCH answers
each search with one number per message, so a large backlog cost searches quadratic in its size.
A listing is used only by the fetch that continues exactly where the previous one stopped
(same folder, UIDVALIDITY and cursor); any other fetch searches afresh. UIDs that arrive during a
pass are not in its listing: the next pass, or the check before IDLE, finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Listing:
    validity: int
    after: int  # the cursor UID the next batch continues from
    uids: tuple[int, ...]  # ascending, all above `after`


@dataclass
class Listings:
    """The unfinished listing of each folder."""

    _open: dict[str, Listing] = field(default_factory=dict)

    def rest(self, folder: str, validity: int, after: int) -> list[int] | None:
        """The listed UIDs still to hand out when this fetch continues the last one; else None."""
        listing = self._open.pop(folder, None)
        if listing is None or listing.validity != validity or listing.after != after:
            return None
        return list(listing.uids)

    def keep(self, folder: str, validity: int, after: int, uids: list[int]) -> None:
        """Remembers what is left after handing out everything up to `after`."""
        if uids:
            self._open[folder] = Listing(validity, after, tuple(uids))
        else:
            self._open.pop(folder, None)

    def forget(self, folder: str | None = None) -> None:
        if folder is None:
            self._open.clear()
        else:
            self._open.pop(folder, None)
