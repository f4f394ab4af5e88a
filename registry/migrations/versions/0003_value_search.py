"""Searchable text of values, for reverse lookup (``/hrls/handles``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_TEXT_CHARS = 512
SEALED_MARK = b"\x00idnode-sealed-v1\x00"


def search_text(data: bytes) -> str | None:
    if data.startswith(SEALED_MARK) or len(data) > SEARCH_TEXT_CHARS * 4:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if len(text) <= SEARCH_TEXT_CHARS and "\x00" not in text else None


def upgrade() -> None:
    with op.batch_alter_table("identifier_values") as batch:
        batch.add_column(sa.Column("search_text", sa.String(SEARCH_TEXT_CHARS)))
    values = sa.table(
        "identifier_values",
        sa.column("identifier_id", sa.Integer),
        sa.column("idx", sa.Integer),
        sa.column("data", sa.LargeBinary),
        sa.column("search_text", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(values.c.identifier_id, values.c.idx, values.c.data)).all()
    updates = [
        {"i": row.identifier_id, "x": row.idx, "t": text}
        for row in rows
        if (text := search_text(bytes(row.data))) is not None
    ]
    if updates:
        bind.execute(
            values.update()
            .where(values.c.identifier_id == sa.bindparam("i"), values.c.idx == sa.bindparam("x"))
            .values(search_text=sa.bindparam("t")),
            updates,
        )
    op.create_index("ix_identifier_values_search", "identifier_values", ["type", "search_text"])


def downgrade() -> None:
    op.drop_index("ix_identifier_values_search", "identifier_values")
    with op.batch_alter_table("identifier_values") as batch:
        batch.drop_column("search_text")
