"""Several replicas on one database: membership, mailbox leases, reply claims.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

`replicas` holds one heartbeat row per running daemon; `mailbox_leases` one row per mailbox with
its owner, its epoch (the fencing token, raised on every change of hands) and its expiry. Replies
get a claim (owner and expiry), so exactly one replica sends each. Columns are added only (rows
kept): a reply from before this revision has no claim (NULL).
Frozen: later changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("replica_id", name="pk_replicas"),
    )
    op.create_table(
        "mailbox_leases",
        sa.Column("mailbox_id", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("acquired_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("mailbox_id", name="pk_mailbox_leases"),
    )
    op.create_index("ix_mailbox_leases_owner", "mailbox_leases", ["owner"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claim_owner", sa.String(), nullable=True))
        batch.add_column(sa.Column("claim_expires_at", _TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claim_expires_at")
        batch.drop_column("claim_owner")
    op.drop_index("ix_mailbox_leases_owner", table_name="mailbox_leases")
    op.drop_table("mailbox_leases")
    op.drop_table("replicas")
