"""The outbox's tables, on the store's shared MetaData (so schema comparisons see them).

Created only by the Alembic revision r0002_outbox; these definitions must match it.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table, Text

from connector.store.tables import UtcDateTime, metadata

outbox = Table(
    "outbox",
    metadata,
    Column("id", String(), primary_key=True),
    Column("mailbox_id", String(), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("iwd_item_id", String(), nullable=True),
    Column("request", Text, nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("message_id", Text, nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("phase", String(16), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("first_attempt_at", UtcDateTime, nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("last_error_code", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("results", Text, nullable=False),
    Column("reported_state", String(16), nullable=True),
    # which replica sends it, until when (r0004); NULL: nobody has claimed it
    Column("claim_owner", String(), nullable=True),
    Column("claim_expires_at", UtcDateTime, nullable=True),
    CheckConstraint(
        "state IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'uncertain')", name="state"
    ),
    Index(None, "state", "next_attempt_at"),
    Index(None, "mailbox_id", "state"),
)

auto_ack = Table(
    "auto_ack",
    metadata,
    Column("mailbox_id", String(), primary_key=True),
    Column("sender", String(), primary_key=True),
    Column("last_sent_at", UtcDateTime, nullable=False),
)
