"""The store's contract. The pipeline's no-loss/no-duplicate argument relies on exactly these calls.

Ledger states move only forward: pending -> delivered -> acted (see connector/sync/delivery.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.models import RawMessage


class LedgerState(enum.StrEnum):
    PENDING = "pending"  # intent recorded, IWD not yet known to have accepted
    DELIVERED = "delivered"  # IWD accepted (iwd_id known); post-action not yet applied
    ACTED = "acted"  # post-action applied on the mail server (or none was configured)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    external_id: str
    mailbox_id: str
    folder: str
    provider_id: str
    raw_sha256: str
    message_id: str | None = None
    state: LedgerState = LedgerState.PENDING
    iwd_id: str | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    mailbox_id: str
    folder: str
    provider_id: str
    raw: bytes
    error: str
    attempts: int
    first_seen_at: datetime
    last_attempt_at: datetime
    resolved_external_id: str | None = None  # set once delivered (as a normal or unparseable item)
    # the server's metadata of the message as fetched; None on entries kept before it was recorded
    internal_date: datetime | None = None
    size: int | None = None
    headers_only: bool = False
    thread_hint: str | None = None

    @property
    def message(self) -> RawMessage:
        """The message as it was fetched, so a retry converts it into the same item; an entry
        without a recorded size is taken to hold the whole message."""
        return RawMessage(
            folder=self.folder,
            provider_id=self.provider_id,
            raw=self.raw,
            size=len(self.raw) if self.size is None else self.size,
            internal_date=self.internal_date,
            headers_only=self.headers_only,
            thread_hint=self.thread_hint,
        )


class Store(Protocol):
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises StoreError when the database is unreachable (for /readyz)."""
        ...

    # cursors -------------------------------------------------------------------------
    async def get_cursor(self, mailbox_id: str, folder: str) -> str | None: ...

    async def set_cursor(self, mailbox_id: str, folder: str, cursor: str | None) -> None: ...

    # ledger --------------------------------------------------------------------------
    async def ledger_lookup(
        self, mailbox_id: str, folder: str, provider_ids: Sequence[str]
    ) -> dict[str, LedgerEntry]:
        """Entries for these provider ids in this folder, keyed by provider id."""
        ...

    async def ledger_find_content(
        self, mailbox_id: str, raw_sha256: str, message_id: str | None
    ) -> LedgerEntry | None:
        """The entry for the same email under any identity (after a UIDVALIDITY change)."""
        ...

    async def ledger_record_intent(self, entry: LedgerEntry) -> LedgerEntry:
        """Inserts a pending entry; if the external_id exists, moves it to the entry's
        (folder, provider_id) and returns it unchanged otherwise (state, iwd_id kept)."""
        ...

    async def ledger_commit(
        self,
        external_id: str,
        iwd_id: str,
        cursor: tuple[str, str, str | None] | None = None,
        acted: bool = False,
    ) -> None:
        """Marks delivered (or acted when no post-action is due) and, in the same
        transaction, sets the cursor (mailbox_id, folder, cursor) when given."""
        ...

    async def ledger_mark_acted(self, external_id: str) -> None: ...

    # batch forms: one transaction per fetched batch instead of one per message -------
    async def ledger_find_contents(
        self, mailbox_id: str, keys: Sequence[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], LedgerEntry]:
        """For each (raw sha256, Message-ID) asked for, the oldest entry holding that email."""
        ...

    async def ledger_record_intents(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]: ...

    async def ledger_record_aliases(self, entries: Sequence[LedgerEntry]) -> None:
        """Delivered entries for the same email under further identities (state and iwd_id given);
        an identity already recorded is left as it is."""
        ...

    async def ledger_commit_many(
        self,
        commits: Sequence[tuple[str, str]],
        *,
        acted: bool = False,
        cursor: tuple[str, str, str | None] | None = None,
    ) -> None:
        """(external_id, iwd_id) pairs and the folder cursor, in one transaction."""
        ...

    async def ledger_mark_acted_many(self, external_ids: Sequence[str]) -> None: ...

    async def ledger_pending_actions(self, mailbox_id: str, limit: int = 500) -> list[LedgerEntry]:
        """Delivered entries whose post-action is still due, oldest first."""
        ...

    async def ledger_count(self, mailbox_id: str | None = None, state: LedgerState | None = None) -> int: ...

    async def ledger_count_items(self, mailbox_id: str) -> int:
        """Distinct IWD items the mailbox delivered: an alias row (a copy in another folder, a
        renumbered folder) points at its first copy's item and adds nothing."""
        ...

    # quarantine ----------------------------------------------------------------------
    async def quarantine_put(self, mailbox_id: str, message: RawMessage, error: str) -> QuarantineEntry:
        """Keeps the raw message and its server metadata (internal date, size, headers_only,
        thread hint); a repeat for the same (mailbox, folder, provider id) increments attempts and
        replaces the error, keeping the first raw bytes and their metadata."""
        ...

    async def quarantine_list(
        self, mailbox_id: str | None = None, include_resolved: bool = False
    ) -> list[QuarantineEntry]: ...

    async def quarantine_get(self, entry_id: int) -> QuarantineEntry | None: ...

    async def quarantine_resolve(self, entry_id: int, external_id: str) -> None: ...

    async def quarantine_count(self, mailbox_id: str | None = None) -> int:
        """Unresolved entries."""
        ...


# outbox (agents' replies, connector/outbox) ------------------------------------------


class OutboxState(enum.StrEnum):
    """queued -> sending -> sent | failed | retrying (-> sending) | uncertain (see docs/replies.md)."""

    QUEUED = "queued"  # durably accepted, not yet tried
    SENDING = "sending"  # an SMTP transaction is (or was, before a crash) under way
    SENT = "sent"  # the server accepted it for every recipient it did not refuse for good
    RETRYING = "retrying"  # a temporary failure; next attempt at next_attempt_at
    FAILED = "failed"  # permanent: the server refused it, or the retry horizon passed
    UNCERTAIN = "uncertain"  # lost after the DATA dot: may have arrived; a person (or policy) decides


OUTBOX_OPEN_STATES = frozenset({OutboxState.QUEUED, OutboxState.RETRYING})


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One reply. `request` is the reply as asked (JSON object); `results` maps each envelope
    recipient to {accepted, code, message}; `phase` is `data` once the DATA command was issued."""

    id: str
    mailbox_id: str
    origin: str  # api | iwd | auto
    request: dict[str, Any]
    request_sha256: str
    message_id: str
    state: OutboxState = OutboxState.QUEUED
    iwd_item_id: str | None = None
    phase: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    first_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    last_error_code: str | None = None
    last_error: str | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    reported_state: str | None = None  # the state last reported to IWD (origin iwd)
    claim_owner: str | None = None  # the replica that sends it (r0004); None: unclaimed
    claim_expires_at: datetime | None = None


class OutboxStore(Protocol):
    """The outbox's durable state; every transition is one conditional UPDATE (see docs/replies.md)."""

    async def outbox_enqueue(self, entry: OutboxEntry) -> tuple[OutboxEntry, bool]:
        """Inserts a queued reply; if the id exists returns the stored one and False (idempotent)."""
        ...

    async def outbox_get(self, reply_id: str) -> OutboxEntry | None: ...

    async def outbox_due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Queued and retrying replies whose next attempt is due, oldest first."""
        ...

    async def outbox_in_state(self, state: OutboxState, limit: int = 1000) -> list[OutboxEntry]: ...

    async def outbox_claim(self, reply_id: str, now: datetime) -> OutboxEntry | None:
        """queued|retrying -> sending, attempts + 1, phase cleared; None if it was not open."""
        ...

    async def outbox_set_phase(self, reply_id: str, phase: str) -> None:
        """Right before DATA; raises LeaseLost when this replica's claim on the reply lapsed."""
        ...

    # claims: which replica sends a reply (several replicas on one database) ----------
    claim_ttl_seconds: float

    async def outbox_claim_due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Claims due replies no other replica holds (SKIP LOCKED), oldest first."""
        ...

    async def outbox_claim_stranded(self, *, everything: bool = False) -> list[OutboxEntry]:
        """Claims `sending` replies whose claim lapsed and whose replica is gone (or all of them)."""
        ...

    async def outbox_renew_claims(self) -> int: ...

    async def outbox_release_claims(self, *, everyone: bool = False) -> int: ...

    async def outbox_finish(
        self,
        reply_id: str,
        state: OutboxState,
        *,
        now: datetime,
        results: dict[str, dict[str, Any]] | None = None,
        error_code: str | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        sent_at: datetime | None = None,
        expected: OutboxState = OutboxState.SENDING,
    ) -> OutboxEntry:
        """Records an attempt's outcome (results merged into the stored ones) as a
        compare-and-set: raises OutboxConflict when the row is no longer in `expected`."""
        ...

    async def outbox_requeue(self, reply_id: str, now: datetime) -> OutboxEntry | None:
        """uncertain|failed|retrying -> queued at once (a person decided to send it); else None."""
        ...

    async def outbox_unreported(self, limit: int = 100) -> list[OutboxEntry]:
        """IWD-origin replies whose current state IWD has not been told yet."""
        ...

    async def outbox_mark_reported(self, reply_id: str, state: OutboxState) -> None: ...

    async def outbox_counts(self, mailbox_id: str | None = None) -> dict[OutboxState, int]: ...

    async def outbox_counts_by_mailbox(self) -> dict[str, dict[OutboxState, int]]: ...

    async def outbox_known_message_ids(self, message_ids: Sequence[str]) -> set[str]:
        """Those of `message_ids` that are Message-IDs of replies we sent or queued."""
        ...

    async def auto_ack_claim(
        self, mailbox_id: str, sender: str, now: datetime, period_seconds: float
    ) -> bool:
        """True (and the time recorded) when `sender` got no acknowledgement within the period."""
        ...
