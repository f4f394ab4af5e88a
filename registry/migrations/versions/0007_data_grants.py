"""Data permissions: an enterprise grants another one read access to the
restricted values of its prefix's records (数据权限/授权企业).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_grants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "prefix_id",
            sa.Integer,
            sa.ForeignKey("prefixes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "grantee_enterprise_id",
            sa.Integer,
            sa.ForeignKey("enterprises.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("template_version", sa.String(128), nullable=False),
        sa.Column("item_types", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("prefix_id", "grantee_enterprise_id", "template_version"),
    )
    op.create_index(
        "ix_data_grants_grantee_enterprise_id", "data_grants", ["grantee_enterprise_id"]
    )


def downgrade() -> None:
    op.drop_table("data_grants")
