"""Sync with the top-level node: the worker's state, and the routes of other
nodes' prefixes pulled from the top-level node's route table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "foreign_routes",
        sa.Column("prefix_key", sa.String(255), primary_key=True),
        sa.Column("prefix", sa.String(255), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("site", sa.LargeBinary(), nullable=False),
        sa.Column("hosted", sa.Boolean(), nullable=False),
        sa.Column("route_seq", sa.Integer(), nullable=False),
    )
    op.create_index("ix_outbox_parked", "outbox", ["parked", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_parked", "outbox")
    op.drop_table("foreign_routes")
    op.drop_table("sync_state")
