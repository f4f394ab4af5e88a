"""Digest of each handle's normalized suffix, for DNS names too long to spell out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST_CHARS = 26


def suffix_digest(name_key: str) -> str | None:
    # As registry.grammar.suffix_digest on the day of this migration.
    if "/" not in name_key:
        return None
    digest = hashlib.sha256(name_key.partition("/")[2].encode("utf-8")).digest()
    return base64.b32hexencode(digest).decode("ascii").lower()[:DIGEST_CHARS]


def upgrade() -> None:
    with op.batch_alter_table("identifiers") as batch:
        batch.add_column(sa.Column("suffix_digest", sa.String(DIGEST_CHARS)))
    identifiers = sa.table(
        "identifiers",
        sa.column("id", sa.Integer),
        sa.column("name_key", sa.String),
        sa.column("suffix_digest", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(identifiers.c.id, identifiers.c.name_key)).all()
    updates = [{"i": row.id, "d": suffix_digest(row.name_key)} for row in rows]
    if updates:
        bind.execute(
            identifiers.update()
            .where(identifiers.c.id == sa.bindparam("i"))
            .values(suffix_digest=sa.bindparam("d")),
            updates,
        )
    op.create_index("ix_identifiers_suffix_digest", "identifiers", ["prefix_id", "suffix_digest"])


def downgrade() -> None:
    op.drop_index("ix_identifiers_suffix_digest", "identifiers")
    with op.batch_alter_table("identifiers") as batch:
        batch.drop_column("suffix_digest")
