"""``/snms/api/prefix`` and ``/snms/api/ent/config``: enterprise prefixes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from ..errors import InvalidRequest
from ..models import Prefix, SiteRoute
from ..services import Actor, PageRequest, PageResult
from ..services.enterprises import HostedConfig, PrefixFilter
from . import fields as f
from .envelope import REGISTRY, authenticated, json_body, success

routes = web.RouteTableDef()

TOPLEVEL_NAME = web.AppKey("toplevel_name", str)
DEFAULT_TOPLEVEL_NAME = "工业互联网标识解析国家顶级节点--北京"


def spring_page(result: PageResult[Any], content: list[dict[str, Any]]) -> dict[str, Any]:
    """The Spring-style page SNMS returns; ``number`` echoes the 1-based page."""
    page = result.request
    return {
        "first": page.current == 1,
        "last": page.current >= result.total_pages,
        "totalPages": result.total_pages,
        "totalElements": result.total,
        "number": page.current,
        "size": page.size,
        "sort": None,
        "numberOfElements": len(content),
        "content": content,
    }


def page_request(request: web.Request) -> PageRequest:
    current, size = f.page_params(request.query)
    return PageRequest(current, size)


def date_range(request: web.Request) -> tuple[datetime | None, datetime | None]:
    """``startDate`` / ``endDate`` (``yyyy-MM-dd HH:mm:ss``, node-local time)."""
    parse = request.app[REGISTRY].services.parse_time
    q = request.query
    start = parse(q["startDate"], "startDate") if q.get("startDate") else None
    end = parse(q["endDate"], "endDate") if q.get("endDate") else None
    return start, end


def route_json(prefix: Prefix) -> dict[str, Any] | None:
    if prefix.route is None:
        return None
    r = prefix.route
    return {
        "hdlType": "HS_SITE",
        "ipType": r.ip_type,
        "ip": r.ip,
        "tcpPort": r.tcp_port,
        "udpPort": r.udp_port,
        "httpPort": r.http_port,
    }


@routes.get("/snms/api/prefix/query")
@authenticated
async def query(request: web.Request, actor: Actor) -> web.Response:
    wanted = request.query.get("prefix") or request.query.get("entPrefix") or ""
    if not wanted:
        raise InvalidRequest("缺少必要的请求参数: prefix")
    registry = request.app[REGISTRY]
    prefix, enterprise = await registry.enterprises.prefix(actor, wanted)
    fmt = registry.services.format_time
    return success(
        {
            "prefix": prefix.prefix,
            "createDate": fmt(prefix.created_at),
            "ghrName": request.app[TOPLEVEL_NAME],
            "status": int(prefix.state),
            "proxyState": int(prefix.proxy_state),
            "entNameCn": enterprise.org_name,
            "entSite": enterprise.website or None,
            "entWebSite": enterprise.website or None,
            "entIndustry": enterprise.industry_category,
            "entAddrCn": enterprise.org_addr or None,
            "entDesc": enterprise.org_desc or None,
            "route": route_json(prefix),
        }
    )


@routes.get("/snms/api/prefix/page")
@authenticated
async def page(request: web.Request, actor: Actor) -> web.Response:
    registry = request.app[REGISTRY]
    services = registry.services
    start, end = date_range(request)
    filters = PrefixFilter(
        ent_name=request.query.get("entName") or None,
        ent_prefix=request.query.get("entPrefix") or None,
        start=start,
        end=end,
    )
    result = await registry.enterprises.prefix_page(actor, filters, page_request(request))
    content = [
        {
            "id": prefix.id,
            "entPrefix": prefix.prefix,
            "entprefix": prefix.prefix,  # the spelling of the reference's own example
            "entId": prefix.enterprise_id,
            "state": int(prefix.state),
            "entName": org_name,
            "proxyState": int(prefix.proxy_state),
            "createDate": services.format_time(prefix.created_at),
            "updateDate": services.format_time(prefix.updated_at),
        }
        for prefix, org_name in result.items
    ]
    return success(spring_page(result, content))


def parse_config(body: Any) -> tuple[str, HostedConfig | SiteRoute]:
    obj = f.require_object(body)
    config = f.require_object(obj.get("entPrefixConfig"), "entPrefixConfig")
    prefix = f.text(config, "entPrefix", required=True, max_len=64)
    proxy_server_id = f.integer(obj, "proxyServerId")
    if proxy_server_id is not None:
        return prefix, HostedConfig(proxy_server_id)
    hdl_type = f.text(config, "hdlType", required=True, max_len=16)
    if hdl_type != "HS_SITE":
        raise InvalidRequest("hdlType 仅支持 HS_SITE")
    route = SiteRoute(
        ip_type=f.required_integer(config, "ipType"),
        ip=f.text(config, "ip", required=True, max_len=45),
        tcp_port=f.integer(config, "tcpPort"),
        udp_port=f.integer(config, "udpPort"),
        http_port=f.integer(config, "httpPort"),
    )
    return prefix, route


@routes.post("/snms/api/ent/config")
@authenticated
async def configure(request: web.Request, actor: Actor) -> web.Response:
    """Hosted (``proxyServerId``) or non-hosted (``HS_SITE`` route) configuration."""
    prefix, config = parse_config(await json_body(request))
    await request.app[REGISTRY].enterprises.configure(actor, prefix, config)
    return success(True)
