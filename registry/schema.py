"""Relational schema of the registry (SQLAlchemy Core).

The tables here mirror the Alembic migrations in ``registry/migrations``;
the migrations are what create and change a database, and a test checks
that they and this module agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

registry_head = Table(
    "registry_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("audit_seq", Integer, nullable=False),
    Column("audit_hash", String(64), nullable=False),
    Column("outbox_seq", Integer, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)
"""One row, locked by every write transaction: it hands out gap-free,
commit-ordered sequence numbers to the audit log and the outbox."""

node_settings = Table(
    "node_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Settings that change what the stored data means (the node prefix, suffix case
folding): fixed when the database is first used, checked at every start."""

node_prefixes = Table(
    "node_prefixes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prefix", String(64), nullable=False),
    Column("prefix_key", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
)

enterprises = Table(
    "enterprises",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_name", String(255), nullable=False),
    Column("org_nature", Integer),
    Column("org_crt_type", Integer, nullable=False),
    Column("org_crt_code", String(64), nullable=False),
    Column("org_desc", Text, nullable=False, default=""),
    Column("org_addr", String(255), nullable=False, default=""),
    Column("industry_category", String(8), nullable=False, default=""),
    Column("industry_specific", String(8), nullable=False, default=""),
    Column("website", String(255), nullable=False, default=""),
    Column("contact_name", String(64), nullable=False, default=""),
    Column("contact_phone", String(32), nullable=False, default=""),
    Column("contact_email", String(255), nullable=False, default=""),
    Column("status", Integer, nullable=False),
    Column("filing", Text, nullable=False, default="{}"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_crt_type", "org_crt_code"),
)

prefixes = Table(
    "prefixes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prefix", String(64), nullable=False),
    Column("prefix_key", String(64), nullable=False, unique=True),
    Column("enterprise_id", ForeignKey("enterprises.id", ondelete="RESTRICT"), nullable=False),
    Column("state", Integer, nullable=False),
    Column("proxy_state", Integer, nullable=False),
    Column("proxy_server_id", Integer),
    Column("site_ip_type", Integer),
    Column("site_ip", String(45)),
    Column("site_tcp_port", Integer),
    Column("site_udp_port", Integer),
    Column("site_http_port", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_prefixes_enterprise_id", "enterprise_id"),
)

templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prefix_id", ForeignKey("prefixes.id", ondelete="RESTRICT"), nullable=False),
    Column("version", String(128), nullable=False),
    Column("handle", String(255), nullable=False),
    Column("industry_category", String(8), nullable=False, default=""),
    Column("industry_specific", String(8), nullable=False, default=""),
    Column("industry_trade", String(8), nullable=False, default=""),
    Column("industry_subclass", String(8), nullable=False, default=""),
    Column("carrier_type", Integer, nullable=False, default=2),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("prefix_id", "version"),
)

template_items = Table(
    "template_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("template_id", ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("id_type", String(128), nullable=False),
    Column("id_index", Integer, nullable=False),
    Column("required", Boolean, nullable=False),
    Column("state", Integer, nullable=False),
    Column("value_type", String(16), nullable=False),
    Column("min_length", Integer),
    Column("max_length", Integer),
    Column("public", Boolean, nullable=False),
    UniqueConstraint("template_id", "id_index"),
    UniqueConstraint("template_id", "id_type"),
)

identifiers = Table(
    "identifiers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(2048), nullable=False),
    Column("name_key", String(2048), nullable=False),
    Column("prefix_id", ForeignKey("prefixes.id", ondelete="RESTRICT")),
    Column("template_id", ForeignKey("templates.id", ondelete="RESTRICT")),
    Column("revision", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # dnsnames.dns_path: the name's DNS labels from the zone down. Byte order (collation
    # "C") on every database, so that "the names below x" is a range of the index.
    Column("dns_path", String(255).with_variant(String(255, collation="C"), "postgresql")),
    Index("uq_identifiers_name_key", "name_key", unique=True),
    Index("ix_identifiers_dns_path", "dns_path"),
    Index("ix_identifiers_prefix_id", "prefix_id"),
    Index("ix_identifiers_template_id", "template_id"),
)

identifier_values = Table(
    "identifier_values",
    metadata,
    Column("identifier_id", ForeignKey("identifiers.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("type", String(255), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("ttl_type", Integer, nullable=False),
    Column("ttl", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("permissions", Integer, nullable=False),
    Column("refs", Text, nullable=False, default="[]"),
    Column("search_text", String(512)),
    Index("ix_identifier_values_search", "type", "search_text"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(50), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("enterprise_id", ForeignKey("enterprises.id", ondelete="RESTRICT")),
    Column("email", String(255)),
    Column("mobile", String(32)),
    Column("secret_hash", String(255), nullable=False),
    Column("secret_digest_sealed", LargeBinary),
    Column("status", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('node_admin', 'enterprise')", name="role"),
    Index("uq_users_email", "email", unique=True),
    Index("uq_users_mobile", "mobile", unique=True),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("access_key", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(255), nullable=False),
    Column("secret_digest_sealed", LargeBinary),
    Column("status", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("detail", Text, nullable=False),
    Column("remote", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("event", String(64), nullable=False),
    Column("subject", String(2048), nullable=False),
    Column("payload", Text, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("parked", Boolean, nullable=False, default=False),
    Index("ix_outbox_pending", "delivered_at", "seq"),
    Index("ix_outbox_parked", "parked", "seq"),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""The sync worker's position and last success (sync/PROTOCOL.md §7, §10)."""

foreign_routes = Table(
    "foreign_routes",
    metadata,
    Column("prefix_key", String(255), primary_key=True),
    Column("prefix", String(255), nullable=False),
    Column("node", String(64), nullable=False),
    Column("site", LargeBinary, nullable=False),
    Column("hosted", Boolean, nullable=False),
    Column("route_seq", Integer, nullable=False),
)
"""Other nodes' prefixes and where they are served, pulled from the top-level node."""

daily_resolutions = Table(
    "daily_resolutions",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("prefix", String(255), primary_key=True),
    Column("protocol", String(16), primary_key=True),
    Column("resolutions", BigInteger, nullable=False),
    Column("found", BigInteger, nullable=False),
)
"""Resolutions per day (``YYYY-MM-DD`` in the node's time zone), enterprise prefix
(empty: no enterprise's) and protocol; ``found``: those that returned values."""

attachments = Table(
    "attachments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", String(64), nullable=False, unique=True),
    Column("owner_id", ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
    Column("enterprise_id", ForeignKey("enterprises.id", ondelete="RESTRICT")),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_attachments_enterprise_id", "enterprise_id"),
)
"""Files uploaded for enterprise filings (licence scans, ID cards, contracts)."""

data_grants = Table(
    "data_grants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prefix_id", ForeignKey("prefixes.id", ondelete="CASCADE"), nullable=False),
    Column(
        "grantee_enterprise_id", ForeignKey("enterprises.id", ondelete="CASCADE"), nullable=False
    ),
    Column("template_version", String(128), nullable=False),
    Column("item_types", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("prefix_id", "grantee_enterprise_id", "template_version"),
    Index("ix_data_grants_grantee_enterprise_id", "grantee_enterprise_id"),
)
"""Data permissions (数据权限/授权企业): the owner of a prefix lets another enterprise
read the restricted values of its records — of one template version (``""``: of
every template), only values of the types in ``item_types`` (a JSON list; empty: all)."""

APPEND_ONLY_TABLES = ("audit_log",)
