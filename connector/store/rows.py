"""Conversions between table rows and the store's dataclasses, and text both backends accept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from connector.store.types import LedgerEntry, LedgerState, QuarantineEntry


def utc_now() -> datetime:
    return datetime.now(UTC)


def clean_text(value: str) -> str:
    """Text both backends accept: PostgreSQL rejects NUL, and lone surrogates cannot be encoded."""
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def clean_optional_text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def ledger_entry(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        external_id=row.external_id,
        mailbox_id=row.mailbox_id,
        folder=row.folder,
        provider_id=row.provider_id,
        raw_sha256=row.raw_sha256,
        message_id=row.message_id,
        state=LedgerState(row.state),
        iwd_id=row.iwd_id,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def quarantine_entry(row: Row[Any]) -> QuarantineEntry:
    return QuarantineEntry(
        id=row.id,
        mailbox_id=row.mailbox_id,
        folder=row.folder,
        provider_id=row.provider_id,
        raw=bytes(row.raw),
        error=row.error,
        attempts=row.attempts,
        first_seen_at=row.first_seen_at,
        last_attempt_at=row.last_attempt_at,
        resolved_external_id=row.resolved_external_id,
        internal_date=row.internal_date,
        size=row.size,
        headers_only=bool(row.headers_only),
        thread_hint=row.thread_hint,
    )
