"""Enterprises, their filings, and the enterprise prefixes allocated to them."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import AlreadyExists, Forbidden, InvalidRequest, NotFound, PrefixLimit
from ..grammar import is_enterprise_prefix, normalize_prefix
from ..models import (
    Enterprise,
    EnterpriseStatus,
    Prefix,
    PrefixState,
    Principal,
    ProxyState,
    Role,
    SiteRoute,
)
from ..records import route_site
from .accounts import MAX_USERNAME, Accounts, check_password_digest, stored_secret
from .attachments import link_filing_attachments
from .base import Actor, PageRequest, PageResult, Services, managed_prefix, prefix_key
from .trust import Trust

CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
CRT_TYPE_CREDIT_CODE = 1
CRT_TYPE_OTHER = 2


def credit_code_check_char(first17: str) -> str:
    """GB 32100-2015 check character of a unified social credit code."""
    total = sum(
        CREDIT_CODE_CHARSET.index(ch) * weight
        for ch, weight in zip(first17, _CREDIT_CODE_WEIGHTS, strict=True)
    )
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def check_credit_code(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 18 or any(ch not in CREDIT_CODE_CHARSET for ch in code):
        raise InvalidRequest("统一社会信用代码应为18位 (unified social credit code: 18 characters)")
    if credit_code_check_char(code[:17]) != code[17]:
        raise InvalidRequest("统一社会信用代码校验位错误 (check character mismatch)")
    return code


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password_digest: str
    email: str | None = None
    mobile: str | None = None


@dataclass(frozen=True, slots=True)
class EnterpriseApplication:
    """An enterprise filing (``/snms/api/v3/ent/apply`` and ``upgrade-apply``)."""

    org_name: str
    org_crt_type: int
    org_crt_code: str
    contact_name: str
    contact_phone: str
    new_user: NewUser | None = None
    existing_username: str | None = None
    org_nature: int | None = None
    org_desc: str = ""
    org_addr: str = ""
    industry_category: str = ""
    industry_specific: str = ""
    website: str = ""
    contact_email: str = ""
    ent_prefix: str | None = None
    filing: dict[str, Any] = field(default_factory=dict)
    """The whole filing as submitted (minus secrets), kept for the top-level node."""


@dataclass(frozen=True, slots=True)
class PrefixFilter:
    ent_name: str | None = None
    ent_prefix: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class HostedConfig:
    proxy_server_id: int


class Enterprises:
    def __init__(self, services: Services, accounts: Accounts, trust: Trust | None = None) -> None:
        self.s = services
        self.accounts = accounts
        self.trust = trust
        """Issues the approved enterprise's certificate (when the node is an issuer)."""

    # --- filing -----------------------------------------------------------

    async def apply(self, actor: Actor, app: EnterpriseApplication) -> tuple[Enterprise, Prefix]:
        """File an enterprise, create or bind its user, allocate its prefix."""
        actor.require_admin()
        crt_code = self._check_application(app)
        secret = (
            await stored_secret(app.new_user.password_digest, self.s.node_key)
            if app.new_user is not None
            else None
        )
        signing_key = self.trust.new_enterprise_key() if self.trust is not None else None
        async with self.s.change(actor) as change:
            conn = change.conn
            if await store.find_enterprise_by_credit_code(conn, app.org_crt_type, crt_code):
                raise AlreadyExists(f"单位证件号{crt_code}已存在 (enterprise already filed)")
            user = None
            if app.new_user is not None:
                nu = app.new_user
                await self.accounts.ensure_user_is_new(conn, nu.username, nu.email, nu.mobile)
            elif app.existing_username is not None:
                user = await store.find_user(conn, username=app.existing_username)
                if user is None:
                    raise NotFound(f"用户{app.existing_username}不存在 (unknown user)")
                if user.role is not Role.ENTERPRISE or user.enterprise_id is not None:
                    raise InvalidRequest(f"用户{user.username}已绑定企业或不是企业用户")
            if self.s.prefix_limit and await store.count_prefixes(conn) >= self.s.prefix_limit:
                raise PrefixLimit(
                    f"本节点前缀分配数量已达上限{self.s.prefix_limit} "
                    f"(prefix limit {self.s.prefix_limit} reached)"
                )
            prefix_text = await self._allocate_prefix(conn, app.ent_prefix)
            enterprise_id = await store.insert_enterprise(
                conn,
                {
                    "org_name": app.org_name,
                    "org_nature": app.org_nature,
                    "org_crt_type": app.org_crt_type,
                    "org_crt_code": crt_code,
                    "org_desc": app.org_desc,
                    "org_addr": app.org_addr,
                    "industry_category": app.industry_category,
                    "industry_specific": app.industry_specific,
                    "website": app.website,
                    "contact_name": app.contact_name,
                    "contact_phone": app.contact_phone,
                    "contact_email": app.contact_email,
                    "status": int(EnterpriseStatus.ACTIVE),
                    "filing": app.filing,
                },
            )
            prefix_id = await store.insert_prefix(
                conn,
                prefix=prefix_text,
                key=normalize_prefix(prefix_text),
                enterprise_id=enterprise_id,
                state=PrefixState.ENABLED,
                proxy_state=ProxyState.NOT_HOSTED,
            )
            if app.new_user is not None and secret is not None:
                nu = app.new_user
                username = nu.username
                await store.insert_user(
                    conn,
                    username=nu.username,
                    role=Role.ENTERPRISE,
                    enterprise_id=enterprise_id,
                    email=nu.email,
                    mobile=nu.mobile,
                    secret_hash=secret.hash,
                    digest_sealed=secret.digest_sealed,
                )
            else:
                assert user is not None
                username = user.username
                await store.bind_user_to_enterprise(conn, user.id, enterprise_id)
            attachments = await link_filing_attachments(conn, app.filing, enterprise_id)
            await change.record(
                "enterprise.filed",
                crt_code,
                {
                    "enterprise": _filing_payload(app, crt_code),
                    "prefix": prefix_text,
                    "user": username,
                    "attachments": attachments,
                },
            )
            await change.record(
                "prefix.allocated",
                prefix_text,
                {"prefix": prefix_text, "orgCrtCode": crt_code, "state": int(PrefixState.ENABLED)},
            )
            if self.trust is not None and signing_key is not None:
                await self.trust.certify_enterprise(change, prefix_text, signing_key)
            enterprise = await store.get_enterprise(conn, enterprise_id)
            prefix = await store.get_prefix_by_id(conn, prefix_id)
        assert enterprise is not None and prefix is not None
        return enterprise, prefix

    def _check_application(self, app: EnterpriseApplication) -> str:
        """Validate a filing; return its credential code in canonical form."""
        if not app.org_name.strip() or len(app.org_name) > 255:
            raise InvalidRequest("orgName 长度应为1~255")
        if app.org_crt_type not in (CRT_TYPE_CREDIT_CODE, CRT_TYPE_OTHER):
            raise InvalidRequest("orgCrtType 应为1(统一社会信用代码)或2(其他)")
        if app.org_crt_type == CRT_TYPE_CREDIT_CODE:
            crt_code = check_credit_code(app.org_crt_code)
        else:
            crt_code = app.org_crt_code.strip()
            if not crt_code or len(crt_code) > 64:
                raise InvalidRequest("orgCrtCode 长度应为1~64")
        if app.org_nature is not None and app.org_nature not in range(1, 6):
            raise InvalidRequest("orgNature 应为1~5")
        if not app.contact_name.strip() or not app.contact_phone.strip():
            raise InvalidRequest("缺少必要的请求参数: contactName/contactPhone")
        if (app.new_user is None) == (app.existing_username is None):
            raise InvalidRequest("缺少必要的请求参数: sysUser")
        if app.new_user is not None:
            nu = app.new_user
            if not nu.username or len(nu.username) > MAX_USERNAME:
                raise InvalidRequest(f"sysUser.userName 长度应为1~{MAX_USERNAME}")
            if not nu.mobile:
                raise InvalidRequest("缺少必要的请求参数: sysUser.mobile")
            check_password_digest(nu.password_digest)
        return crt_code

    async def _allocate_prefix(self, conn: AsyncConnection, wanted: str | None) -> str:
        """The enterprise prefix: the one asked for, or the next free number."""
        node_key = self.s.node_prefix_key
        if wanted:
            if not is_enterprise_prefix(wanted):
                raise InvalidRequest(f"企业前缀{wanted}格式错误 (digits separated by dots)")
            if normalize_prefix(wanted).rpartition(".")[0] != node_key:
                raise InvalidRequest(
                    f"企业前缀{wanted}不属于本节点{self.s.node_prefix} "
                    f"(must be {self.s.node_prefix}.<n>)"
                )
            if await store.get_prefix(conn, normalize_prefix(wanted)) is not None:
                raise AlreadyExists(f"企业前缀{wanted}已被分配 (prefix already allocated)")
            return wanted
        return f"{self.s.node_prefix}.{await store.max_child_segment(conn, node_key) + 1}"

    # --- reading ----------------------------------------------------------

    async def page(
        self,
        actor: Actor,
        *,
        org_name: str | None,
        start: datetime | None,
        end: datetime | None,
        page: PageRequest,
    ) -> PageResult[Enterprise]:
        only = visible_enterprise(actor.require())
        async with self.s.read() as conn:
            items, total = await store.page_enterprises(
                conn,
                name_like=org_name,
                start=start,
                end=end,
                only_id=only,
                offset=page.offset,
                limit=page.size,
            )
        return PageResult(items, total, page)

    async def detail(
        self, actor: Actor, enterprise_id: int | None
    ) -> tuple[Enterprise, list[Prefix]]:
        principal = actor.require()
        if enterprise_id is None:
            enterprise_id = principal.enterprise_id
            if enterprise_id is None:
                raise InvalidRequest("缺少必要的请求参数: id")
        if not principal.is_admin and principal.enterprise_id != enterprise_id:
            raise Forbidden("没有权限 (not your enterprise)")
        async with self.s.read() as conn:
            enterprise = await store.get_enterprise(conn, enterprise_id)
            if enterprise is None:
                raise NotFound(f"企业{enterprise_id}不存在 (no such enterprise)")
            prefixes = await store.prefixes_of_enterprise(conn, enterprise_id)
        return enterprise, prefixes

    async def count_served(self) -> int:
        async with self.s.read() as conn:
            return await store.count_enterprises(conn, EnterpriseStatus.ACTIVE)

    # --- prefixes ---------------------------------------------------------

    async def prefix(self, actor: Actor, prefix_text: str) -> tuple[Prefix, Enterprise]:
        principal = actor.require()
        key = prefix_key(prefix_text)
        async with self.s.read() as conn:
            prefix = await managed_prefix(conn, principal, prefix_text, key=key)
            enterprise = await store.get_enterprise(conn, prefix.enterprise_id)
        assert enterprise is not None
        return prefix, enterprise

    async def prefix_page(
        self, actor: Actor, filters: PrefixFilter, page: PageRequest
    ) -> PageResult[tuple[Prefix, str]]:
        enterprise_id = visible_enterprise(actor.require())
        async with self.s.read() as conn:
            items, total = await store.page_prefixes(
                conn,
                ent_name_like=filters.ent_name,
                prefix_like=filters.ent_prefix,
                start=filters.start,
                end=filters.end,
                enterprise_id=enterprise_id,
                offset=page.offset,
                limit=page.size,
            )
        return PageResult(items, total, page)

    async def configure(
        self, actor: Actor, prefix_text: str, config: HostedConfig | SiteRoute
    ) -> Prefix:
        """``/snms/api/ent/config``: host the prefix here, or route it to its own node.

        Hosting is the SNMS two-step: an enterprise asks (``proxyState`` 2,
        托管申请中) and a node administrator grants it (4, 已托管) by naming
        this node's hosting server. A route to the enterprise's own node takes
        effect at once: it is the enterprise's own prefix.
        """
        principal = actor.require()
        if isinstance(config, SiteRoute):
            config = check_route(config)
        elif config.proxy_server_id != self.s.proxy_server_id:
            raise InvalidRequest(
                f"托管服务器{config.proxy_server_id}不存在 "
                f"(this node's hosting server is {self.s.proxy_server_id})"
            )
        key = prefix_key(prefix_text)
        async with self.s.change(actor) as change:
            prefix = await managed_prefix(change.conn, principal, prefix_text, key=key)
            if prefix.state is not PrefixState.ENABLED:
                raise InvalidRequest(
                    f"前缀{prefix.prefix}未审核通过或已停用 (state {prefix.state})"
                )
            if isinstance(config, HostedConfig):
                granted = principal.is_admin
                state = ProxyState.HOSTED if granted else ProxyState.HOSTING_REQUESTED
                await store.update_prefix(
                    change.conn,
                    prefix.id,
                    proxy_state=int(state),
                    proxy_server_id=config.proxy_server_id,
                    site_ip_type=None,
                    site_ip=None,
                    site_tcp_port=None,
                    site_udp_port=None,
                    site_http_port=None,
                )
                payload: dict[str, Any] = {
                    "prefix": prefix.prefix,
                    "hosted": granted,
                    "proxyState": int(state),
                    "proxyServerId": config.proxy_server_id,
                }
            else:
                if await store.count_identifiers(change.conn, prefix.id):
                    raise InvalidRequest(
                        f"前缀{prefix.prefix}下仍有托管标识，不能改为非托管 "
                        "(hosted identifiers exist; delete them first)"
                    )
                await store.update_prefix(
                    change.conn,
                    prefix.id,
                    proxy_state=int(ProxyState.NOT_HOSTED),
                    proxy_server_id=None,
                    site_ip_type=config.ip_type,
                    site_ip=config.ip,
                    site_tcp_port=config.tcp_port,
                    site_udp_port=config.udp_port,
                    site_http_port=config.http_port,
                )
                payload = {
                    "prefix": prefix.prefix,
                    "hosted": False,
                    "route": {
                        "ipType": config.ip_type,
                        "ip": config.ip,
                        "tcpPort": config.tcp_port,
                        "udpPort": config.udp_port,
                        "httpPort": config.http_port,
                    },
                    # What the top-level node routes the prefix to (sync/PROTOCOL.md).
                    "site": base64.b64encode(route_site(config).to_bytes()).decode("ascii"),
                }
            await change.record("prefix.configured", prefix.prefix, payload)
            updated = await store.get_prefix_by_id(change.conn, prefix.id)
        assert updated is not None
        return updated


def visible_enterprise(principal: Principal) -> int | None:
    """Whose records a listing shows: everyone's (``None``) to an administrator,
    else the caller's own enterprise (id 0, which matches nothing, if it has none)."""
    if principal.is_admin:
        return None
    return principal.enterprise_id or 0


def check_route(route: SiteRoute) -> SiteRoute:
    if route.ip_type not in (4, 6):
        raise InvalidRequest("ipType 应为4或6")
    try:
        address = ipaddress.ip_address(route.ip.strip())
    except ValueError:
        raise InvalidRequest(f"ip {route.ip!r} 不是合法的IP地址") from None
    if address.version != route.ip_type:
        raise InvalidRequest(f"ip {route.ip} 与 ipType {route.ip_type} 不符")
    ports = (route.tcp_port, route.udp_port, route.http_port)
    if all(port is None for port in ports):
        raise InvalidRequest("tcpPort、udpPort、httpPort 至少填写一个")
    for port in ports:
        if port is not None and not 1 <= port <= 65535:
            raise InvalidRequest(f"端口{port}超出范围1~65535")
    return SiteRoute(route.ip_type, address.compressed, *ports)


def _filing_payload(app: EnterpriseApplication, crt_code: str) -> dict[str, Any]:
    return {
        "orgName": app.org_name,
        "orgNature": app.org_nature,
        "orgCrtType": app.org_crt_type,
        "orgCrtCode": crt_code,
        "industryCategory": app.industry_category,
        "industrySpecific": app.industry_specific,
        "contactName": app.contact_name,
        "contactPhone": app.contact_phone,
        "contactEmail": app.contact_email,
        "filing": app.filing,
    }
