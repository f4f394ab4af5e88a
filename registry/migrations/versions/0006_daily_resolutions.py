"""Daily accounting: resolutions per calendar day (in the node's time zone),
enterprise prefix and protocol, persisted every few seconds by each process.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_resolutions",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("prefix", sa.String(255), primary_key=True),
        sa.Column("protocol", sa.String(16), primary_key=True),
        sa.Column("resolutions", sa.BigInteger(), nullable=False),
        sa.Column("found", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("daily_resolutions")
