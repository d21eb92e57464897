"""Outbox for agents' replies and the auto-acknowledgement ledger (new tables only).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15

Frozen: later changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("mailbox_id", sa.String(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("iwd_item_id", sa.String(), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("first_attempt_at", _TS, nullable=True),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("last_error_code", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("reported_state", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
        sa.CheckConstraint(
            "state IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'uncertain')",
            name="ck_outbox_state",
        ),
    )
    op.create_index("ix_outbox_state_next_attempt_at", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_mailbox_id_state", "outbox", ["mailbox_id", "state"])
    op.create_table(
        "auto_ack",
        sa.Column("mailbox_id", sa.String(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("last_sent_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("mailbox_id", "sender", name="pk_auto_ack"),
    )


def downgrade() -> None:
    op.drop_table("auto_ack")
    op.drop_index("ix_outbox_mailbox_id_state", table_name="outbox")
    op.drop_index("ix_outbox_state_next_attempt_at", table_name="outbox")
    op.drop_table("outbox")
