"""Replica membership and mailbox leases, on the store's shared MetaData.

Created only by the Alembic revision r0004_replicas; these definitions must match it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from connector.store.tables import UtcDateTime, metadata

replicas = Table(
    "replicas",
    metadata,
    Column("replica_id", String(), primary_key=True),
    Column("host", String(), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

mailbox_leases = Table(
    "mailbox_leases",
    metadata,
    Column("mailbox_id", String(), primary_key=True),
    Column("owner", String(), nullable=True),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("acquired_at", UtcDateTime, nullable=True),
    Index(None, "owner"),
)
