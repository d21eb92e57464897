"""The store's tables as SQLAlchemy Core objects, for queries.

The schema itself is created and changed only by the Alembic revisions in connector/migrations/;
`tests/connector/test_store.py` checks that these definitions match what the migrations build.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)

# Named constraints let later revisions alter them (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LEDGER_STATES = ("pending", "delivered", "acted")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are stored as naive UTC
    text and given their UTC zone back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

cursors = Table(
    "cursors",
    metadata,
    Column("mailbox_id", String(), primary_key=True),
    Column("folder", String(), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("external_id", String(), primary_key=True),
    Column("mailbox_id", String(), nullable=False),
    Column("folder", String(), nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("message_id", Text, nullable=True),
    Column("state", String(16), nullable=False),
    Column("iwd_id", String(), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("acted_at", UtcDateTime, nullable=True),
    CheckConstraint("state IN ('pending', 'delivered', 'acted')", name="state"),
    UniqueConstraint("mailbox_id", "folder", "provider_id"),
    Index(None, "mailbox_id", "raw_sha256"),
    Index(None, "mailbox_id", "state", "delivered_at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox_id", String(), nullable=False),
    Column("folder", String(), nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_attempt_at", UtcDateTime, nullable=False),
    Column("resolved_external_id", String(), nullable=True),
    # the message's metadata from the server (r0003); NULL on rows kept before it was recorded
    Column("internal_date", UtcDateTime, nullable=True),
    Column("size", Integer, nullable=True),
    Column("headers_only", Boolean, nullable=False, server_default=false()),
    Column("thread_hint", String(), nullable=True),
    UniqueConstraint("mailbox_id", "folder", "provider_id"),
)
