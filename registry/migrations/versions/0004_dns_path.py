"""Each identifier's place in the DNS zone (registry.dnsnames.dns_path), indexed
bytewise: DNS finds hashed names by it and tells empty non-terminals (names
with identifiers below them) from names that do not exist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PATH = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def _path(name: str, case_sensitive: bool) -> str | None:
    # The mapping of registry.dnsnames; the names stored before this revision are
    # all "<prefix>/<suffix>" handles (OID names came with it).
    from registry.dnsnames import dns_path
    from registry.grammar import Grammar, GrammarError

    try:
        parsed = Grammar(suffix_case_sensitive=case_sensitive).parse(name)
    except GrammarError:
        return None
    return dns_path(parsed, suffix_case_sensitive=case_sensitive)


def upgrade() -> None:
    with op.batch_alter_table("identifiers") as batch:
        batch.add_column(sa.Column("dns_path", PATH))
    bind = op.get_bind()
    settings = sa.table("node_settings", sa.column("key", sa.String), sa.column("value", sa.Text))
    rule = bind.execute(
        sa.select(settings.c.value).where(settings.c.key == "suffix_case")
    ).scalar_one_or_none()
    case_sensitive = rule != "insensitive"
    identifiers = sa.table(
        "identifiers",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("dns_path", sa.String),
    )
    rows = bind.execute(sa.select(identifiers.c.id, identifiers.c.name)).all()
    updates = [{"i": row.id, "p": _path(row.name, case_sensitive)} for row in rows]
    if updates:
        bind.execute(
            identifiers.update()
            .where(identifiers.c.id == sa.bindparam("i"))
            .values(dns_path=sa.bindparam("p")),
            updates,
        )
    op.create_index("ix_identifiers_dns_path", "identifiers", ["dns_path"])


def downgrade() -> None:
    op.drop_index("ix_identifiers_dns_path", "identifiers")
    with op.batch_alter_table("identifiers") as batch:
        batch.drop_column("dns_path")
