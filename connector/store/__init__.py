"""Durable state: per-folder cursors, the delivery ledger, quarantine. One interface, SQLite or PostgreSQL."""

from connector.store.types import LedgerEntry, LedgerState, QuarantineEntry, Store

__all__ = ["LedgerEntry", "LedgerState", "QuarantineEntry", "Store", "open_store"]


async def open_store(url: str) -> Store:
    """Opens (and migrates to the newest schema) the store at a SQLAlchemy async URL."""
    from connector.store.sql import SqlStore

    return await SqlStore.open(url)
