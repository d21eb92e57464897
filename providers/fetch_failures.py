"""A message the server lists but will not hand over, cycle after cycle, must not hold its folder.

Providers whose cursor moves by page (Gmail, Graph) count, per (folder, message id), the fetches
in which downloading that one message failed for a reason about the message (not the account:
authentication and throttling still end the cycle as before). Until the message has failed
`attempts` times over at least `min_seconds`, the fetch fails as it always did, so a transient
error or a short incident on the provider's side costs retries, never an item. After that the
provider hands over a stand-in: a small RFC 5322 message telling a person which message could not
be downloaded, from where, and why. It becomes an item like any other and the folder moves on. The
original stays on the server untouched: a stand-in is a RawMessage with `stand_in=True`, which the
pipeline never applies a post-action to, and its Message-ID (in connector.models.STAND_IN_DOMAIN)
tells the ledger so after a restart too.

The counts live in memory: after a restart a message gets its full number of attempts again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from connector.errors import ProviderError
from connector.models import STAND_IN_DOMAIN, RawMessage

DEFAULT_ATTEMPTS = 3
DEFAULT_MIN_SECONDS = 900.0  # a quarter of an hour of failing before a person gets a stand-in


@dataclass
class FetchFailures:
    """Per-message download failures of one provider instance."""

    attempts: int = DEFAULT_ATTEMPTS
    min_seconds: float = DEFAULT_MIN_SECONDS
    clock: Callable[[], float] = time.monotonic
    _counts: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # (count, first)
    _stand_ins: set[tuple[str, str]] = field(default_factory=set)

    def failed(self, folder: str, message_id: str) -> bool:
        """Counts one failed download; True when it is time to hand over a stand-in instead."""
        key = (folder, message_id)
        now = self.clock()
        count, first = self._counts.get(key, (0, now))
        self._counts[key] = (count + 1, first)
        return count + 1 >= self.attempts and now - first >= self.min_seconds

    def succeeded(self, folder: str, message_id: str) -> None:
        self._counts.pop((folder, message_id), None)

    def triage(self, folder: str, outcomes: Sequence[tuple[str, object]]) -> dict[int, ProviderError]:
        """Counts every per-message failure (a ProviderError among `outcomes`, given as (message
        id, result)); raises the first one still below the limit, after counting them all; else
        returns, by position, the failures now due a stand-in. Successes are the caller's to record."""
        due: dict[int, ProviderError] = {}
        below: list[ProviderError] = []
        for i, (message_id, result) in enumerate(outcomes):
            if isinstance(result, ProviderError):
                if self.failed(folder, message_id):
                    due[i] = result
                else:
                    below.append(result)
        if below:
            raise below[0]
        return due

    def stand_in(
        self,
        *,
        mailbox_address: str,
        folder: str,
        message_id: str,
        error: str,
        cursor: str | None,
        internal_date: datetime | None = None,
        thread_hint: str | None = None,
    ) -> RawMessage:
        """The stand-in for `message_id`, remembered so its post-action is skipped."""
        key = (folder, message_id)
        self._counts.pop(key, None)
        self._stand_ins.add(key)
        raw = stand_in_bytes(mailbox_address, folder, message_id, error, self.attempts, internal_date)
        return RawMessage(
            folder=folder,
            provider_id=message_id,
            raw=raw,
            size=len(raw),
            internal_date=internal_date,
            cursor=cursor,
            thread_hint=thread_hint,
            stand_in=True,
        )

    def is_stand_in(self, folder: str, message_id: str) -> bool:
        return (folder, message_id) in self._stand_ins


def stand_in_bytes(
    mailbox_address: str,
    folder: str,
    message_id: str,
    error: str,
    attempts: int,
    internal_date: datetime | None,
) -> bytes:
    """From the mailbox's own address, so no auto-acknowledgement answers it; not marked
    Auto-Submitted, so IWD does not treat it as an auto-reply a strategy may set aside."""
    digest = hashlib.sha256(f"{folder}\0{message_id}".encode()).hexdigest()[:32]
    note = EmailMessage()
    note["From"] = f"Mail connector <{mailbox_address}>"
    note["To"] = mailbox_address
    note["Subject"] = f"Message could not be downloaded from {folder}"
    note["Date"] = format_datetime(internal_date or datetime.now(UTC))
    note["Message-ID"] = f"<fetch-failed.{digest}@{STAND_IN_DOMAIN}>"
    note.set_content(
        f"A message in {mailbox_address}, folder {folder}, could not be downloaded after "
        f"{attempts} attempts, so this note stands in for it.\n\n"
        f"Server message id: {message_id}\n"
        f"Last error: {' '.join(error.split())[:500]}\n\n"
        "The message is still in the mailbox, unchanged (no post-action was applied). "
        "Open it there to read and answer it.\n"
    )
    return note.as_bytes()
