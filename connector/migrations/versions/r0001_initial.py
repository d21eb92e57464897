"""Initial schema: cursors, ledger, quarantine.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: later changes go in new revisions, never here (an installed database is already past it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("mailbox_id", sa.String(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("mailbox_id", "folder", name="pk_cursors"),
    )
    op.create_table(
        "ledger",
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("mailbox_id", sa.String(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("iwd_id", sa.String(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("acted_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("external_id", name="pk_ledger"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'acted')", name="ck_ledger_state"),
        sa.UniqueConstraint(
            "mailbox_id", "folder", "provider_id", name="uq_ledger_mailbox_id_folder_provider_id"
        ),
    )
    op.create_index("ix_ledger_mailbox_id_raw_sha256", "ledger", ["mailbox_id", "raw_sha256"])
    op.create_index(
        "ix_ledger_mailbox_id_state_delivered_at", "ledger", ["mailbox_id", "state", "delivered_at"]
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox_id", sa.String(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.Column("last_attempt_at", _TS, nullable=False),
        sa.Column("resolved_external_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
        sa.UniqueConstraint(
            "mailbox_id", "folder", "provider_id", name="uq_quarantine_mailbox_id_folder_provider_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_index("ix_ledger_mailbox_id_state_delivered_at", table_name="ledger")
    op.drop_index("ix_ledger_mailbox_id_raw_sha256", table_name="ledger")
    op.drop_table("ledger")
    op.drop_table("cursors")
