"""Initial registry schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.Column("audit_hash", sa.String(64), nullable=False),
        sa.Column("outbox_seq", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute(
        sa.text(
            "INSERT INTO registry_head (id, audit_seq, audit_hash, outbox_seq) "
            "VALUES (1, 0, :genesis, 0)"
        ).bindparams(genesis=GENESIS_HASH)
    )
    op.create_table(
        "node_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "node_prefixes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prefix", sa.String(64), nullable=False),
        sa.Column("prefix_key", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
    )
    op.create_table(
        "enterprises",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("org_name", sa.String(255), nullable=False),
        sa.Column("org_nature", sa.Integer),
        sa.Column("org_crt_type", sa.Integer, nullable=False),
        sa.Column("org_crt_code", sa.String(64), nullable=False),
        sa.Column("org_desc", sa.Text, nullable=False),
        sa.Column("org_addr", sa.String(255), nullable=False),
        sa.Column("industry_category", sa.String(8), nullable=False),
        sa.Column("industry_specific", sa.String(8), nullable=False),
        sa.Column("website", sa.String(255), nullable=False),
        sa.Column("contact_name", sa.String(64), nullable=False),
        sa.Column("contact_phone", sa.String(32), nullable=False),
        sa.Column("contact_email", sa.String(255), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("filing", sa.Text, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("org_crt_type", "org_crt_code"),
    )
    op.create_table(
        "prefixes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prefix", sa.String(64), nullable=False),
        sa.Column("prefix_key", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "enterprise_id",
            sa.Integer,
            sa.ForeignKey("enterprises.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("proxy_state", sa.Integer, nullable=False),
        sa.Column("proxy_server_id", sa.Integer),
        sa.Column("site_ip_type", sa.Integer),
        sa.Column("site_ip", sa.String(45)),
        sa.Column("site_tcp_port", sa.Integer),
        sa.Column("site_udp_port", sa.Integer),
        sa.Column("site_http_port", sa.Integer),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
    )
    op.create_index("ix_prefixes_enterprise_id", "prefixes", ["enterprise_id"])
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "prefix_id",
            sa.Integer,
            sa.ForeignKey("prefixes.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("handle", sa.String(255), nullable=False),
        sa.Column("industry_category", sa.String(8), nullable=False),
        sa.Column("industry_specific", sa.String(8), nullable=False),
        sa.Column("industry_trade", sa.String(8), nullable=False),
        sa.Column("industry_subclass", sa.String(8), nullable=False),
        sa.Column("carrier_type", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("prefix_id", "version"),
    )
    op.create_table(
        "template_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "template_id",
            sa.Integer,
            sa.ForeignKey("templates.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("id_type", sa.String(128), nullable=False),
        sa.Column("id_index", sa.Integer, nullable=False),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("value_type", sa.String(16), nullable=False),
        sa.Column("min_length", sa.Integer),
        sa.Column("max_length", sa.Integer),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.UniqueConstraint("template_id", "id_index"),
        sa.UniqueConstraint("template_id", "id_type"),
    )
    op.create_table(
        "identifiers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(2048), nullable=False),
        sa.Column("name_key", sa.String(2048), nullable=False),
        sa.Column("prefix_id", sa.Integer, sa.ForeignKey("prefixes.id", ondelete="RESTRICT")),
        sa.Column("template_id", sa.Integer, sa.ForeignKey("templates.id", ondelete="RESTRICT")),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
    )
    op.create_index("uq_identifiers_name_key", "identifiers", ["name_key"], unique=True)
    op.create_index("ix_identifiers_prefix_id", "identifiers", ["prefix_id"])
    op.create_index("ix_identifiers_template_id", "identifiers", ["template_id"])
    op.create_table(
        "identifier_values",
        sa.Column(
            "identifier_id",
            sa.Integer,
            sa.ForeignKey("identifiers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("ttl_type", sa.Integer, nullable=False),
        sa.Column("ttl", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("permissions", sa.Integer, nullable=False),
        sa.Column("refs", sa.Text, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(50), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "enterprise_id", sa.Integer, sa.ForeignKey("enterprises.id", ondelete="RESTRICT")
        ),
        sa.Column("email", sa.String(255)),
        sa.Column("mobile", sa.String(32)),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("secret_digest_sealed", sa.LargeBinary),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint("role IN ('node_admin', 'enterprise')", name="role"),
    )
    op.create_index("uq_users_email", "users", ["email"], unique=True)
    op.create_index("uq_users_mobile", "users", ["mobile"], unique=True)
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("access_key", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("secret_digest_sealed", sa.LargeBinary),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_used_at", _ts()),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(2048), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("remote", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(2048), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("delivered_at", _ts()),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("parked", sa.Boolean, nullable=False),
    )
    op.create_index("ix_outbox_pending", "outbox", ["delivered_at", "seq"])
    _make_audit_log_append_only()


def _make_audit_log_append_only() -> None:
    """Refuse UPDATE and DELETE on the audit log at the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION idnode_audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION idnode_audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION idnode_audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS idnode_audit_log_append_only()")
    for table in (
        "outbox",
        "audit_log",
        "access_keys",
        "users",
        "identifier_values",
        "identifiers",
        "template_items",
        "templates",
        "prefixes",
        "enterprises",
        "node_prefixes",
        "node_settings",
        "registry_head",
    ):
        op.drop_table(table)
