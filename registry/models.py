"""Domain records of the registry: plain immutable dataclasses, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Handle value permission bits (RFC 3651 §3.1).
ADMIN_READ = 0x08
ADMIN_WRITE = 0x04
PUBLIC_READ = 0x02
PUBLIC_WRITE = 0x01
PERM_PUBLIC = ADMIN_READ | ADMIN_WRITE | PUBLIC_READ
"""0x0E: what the reference server gives an ordinary value."""
PERM_RESTRICTED = ADMIN_READ | ADMIN_WRITE
"""0x0C: readable only by an authorized caller (HS_SECKEY, restricted data)."""

DEFAULT_TTL = 86400
TTL_RELATIVE = 0
TTL_ABSOLUTE = 1

# SNMS reserved indexes: 1000 template handle, 1001 template version, 1999 reserved.
TEMPLATE_ID_INDEX = 1000
TEMPLATE_VERSION_INDEX = 1001
RESERVED_INDEXES = frozenset({1000, 1001, 1999})
FIRST_TEMPLATE_ITEM_INDEX = 2000


class Role(enum.StrEnum):
    NODE_ADMIN = "node_admin"
    ENTERPRISE = "enterprise"


class PrefixState(enum.IntEnum):
    """SNMS prefix status codes."""

    DISABLED = 0
    ENABLED = 1
    PENDING_DELETE = 2
    REJECTED = 3
    PENDING_REVIEW = 4
    IN_REVIEW = 5


class ProxyState(enum.IntEnum):
    """SNMS ``proxyState``: whether this node hosts the prefix's identifiers."""

    NOT_HOSTED = 1
    HOSTING_REQUESTED = 2
    HOSTING_REJECTED = 3
    HOSTED = 4


class EnterpriseStatus(enum.IntEnum):
    DISABLED = 0
    ACTIVE = 1


@dataclass(frozen=True, slots=True)
class HandleValue:
    index: int
    type: str
    data: bytes
    ttl_type: int = TTL_RELATIVE
    ttl: int = DEFAULT_TTL
    timestamp: int = 0
    permissions: int = PERM_PUBLIC
    references: tuple[tuple[str, int], ...] = ()

    @property
    def public(self) -> bool:
        return bool(self.permissions & PUBLIC_READ)

    def same_content(self, other: HandleValue) -> bool:
        """Equal apart from the timestamp, which the server sets on write."""
        return (
            self.index,
            self.type,
            self.data,
            self.ttl_type,
            self.ttl,
            self.permissions,
            self.references,
        ) == (
            other.index,
            other.type,
            other.data,
            other.ttl_type,
            other.ttl,
            other.permissions,
            other.references,
        )


@dataclass(frozen=True, slots=True)
class Identifier:
    id: int
    name: str
    name_key: str
    prefix_id: int | None
    template_id: int | None
    revision: int
    created_at: datetime
    updated_at: datetime
    values: tuple[HandleValue, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteRoute:
    """Where a non-hosted enterprise prefix is served (becomes an ``HS_SITE``)."""

    ip_type: int
    ip: str
    tcp_port: int | None = None
    udp_port: int | None = None
    http_port: int | None = None


@dataclass(frozen=True, slots=True)
class Prefix:
    id: int
    prefix: str
    prefix_key: str
    enterprise_id: int
    state: PrefixState
    proxy_state: ProxyState
    proxy_server_id: int | None
    route: SiteRoute | None
    created_at: datetime
    updated_at: datetime

    @property
    def hosted(self) -> bool:
        return self.proxy_state is ProxyState.HOSTED

    @property
    def writable(self) -> bool:
        """Identifiers may be registered only under an enabled, hosted prefix."""
        return self.state is PrefixState.ENABLED and self.hosted


@dataclass(frozen=True, slots=True)
class Enterprise:
    id: int
    org_name: str
    org_nature: int | None
    org_crt_type: int
    org_crt_code: str
    org_desc: str
    org_addr: str
    industry_category: str
    industry_specific: str
    website: str
    contact_name: str
    contact_phone: str
    contact_email: str
    status: EnterpriseStatus
    filing: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TemplateItem:
    name: str
    id_type: str
    id_index: int
    required: bool = False
    state: int = 1
    value_type: str = "string"
    min_length: int | None = None
    max_length: int | None = None
    public: bool = True
    id: int | None = None

    @property
    def enabled(self) -> bool:
        return self.state == 1


@dataclass(frozen=True, slots=True)
class Template:
    id: int
    prefix_id: int
    prefix: str
    version: str
    handle: str
    industry_category: str
    industry_specific: str
    industry_trade: str
    industry_subclass: str
    carrier_type: int
    description: str
    items: tuple[TemplateItem, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DataGrant:
    """The owner of ``prefix`` lets another enterprise read restricted values of its
    records (数据权限/授权企业): of template ``template_version`` only (``""``:
    any), and of the value types in ``items`` only (empty: every data value)."""

    id: int
    prefix_id: int
    prefix: str
    owner_enterprise_id: int
    grantee_enterprise_id: int
    grantee_name: str
    template_version: str
    items: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    enterprise_id: int | None
    email: str | None
    mobile: str | None
    status: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the subject of an access decision."""

    user_id: int
    username: str
    role: Role
    enterprise_id: int | None
    via: str = "token"
    """How the caller proved itself: a bearer token, an access key, ..."""
    prefix_keys: frozenset[str] = field(default_factory=frozenset)
    """Normalized enterprise prefixes the caller owns (empty for a node admin)."""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.NODE_ADMIN

    def may_manage(self, prefix_key: str) -> bool:
        return self.is_admin or prefix_key in self.prefix_keys


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    remote: str
    prev_hash: str
    hash: str
