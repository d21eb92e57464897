"""Quarantine keeps the server's metadata of a message, so a retry builds the same item.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-01

Columns are added only (rows kept): a row from before this revision has no internal date, size
or thread hint (NULL) and is read as a whole message (`headers_only` false).
Frozen: later changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("internal_date", _TS, nullable=True))
        batch.add_column(sa.Column("size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("headers_only", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("thread_hint", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("thread_hint")
        batch.drop_column("headers_only")
        batch.drop_column("size")
        batch.drop_column("internal_date")
