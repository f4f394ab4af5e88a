"""``/snms/api/v3/ent``: enterprise filings."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..models import Enterprise, Prefix
from ..services import Actor
from ..services.enterprises import EnterpriseApplication, NewUser
from . import fields as f
from .envelope import REGISTRY, authenticated, json_body, success
from .prefixes import date_range, page_request, spring_page

routes = web.RouteTableDef()

_GROUPS = ("entBasicInfo", "entRegisterManageInfo", "entHostingAndIdentifyServeInfo")


def parse_application(raw: Any, *, upgrade: bool) -> EnterpriseApplication:
    body = f.require_object(raw)
    basic = f.require_object(body.get("entBasicInfo"), "entBasicInfo")
    new_user = None
    existing = None
    if upgrade:
        existing = f.text(body, "username", required=True, max_len=50)
    else:
        user = f.require_object(body.get("sysUser"), "sysUser")
        new_user = NewUser(
            username=f.text(user, "userName", max_len=50)
            or f.text(user, "username", required=True, max_len=50),
            password_digest=f.text(user, "password", required=True, max_len=255),
            email=f.optional_text(user, "email"),
            mobile=f.optional_text(user, "mobile", max_len=32),
        )
    filing = {group: copy.deepcopy(body[group]) for group in _GROUPS if group in body}
    return EnterpriseApplication(
        org_name=f.text(basic, "orgName", required=True),
        org_crt_type=f.required_integer(basic, "orgCrtType"),
        org_crt_code=f.text(basic, "orgCrtCode", required=True, max_len=64),
        contact_name=f.text(basic, "contactName", required=True, max_len=64),
        contact_phone=f.text(basic, "contactPhone", required=True, max_len=32),
        new_user=new_user,
        existing_username=existing,
        org_nature=f.integer(basic, "orgNature"),
        org_desc=f.text(basic, "orgDesc", max_len=4000),
        org_addr=f.text(basic, "orgAddr"),
        industry_category=f.text(basic, "industryCategory", max_len=8),
        industry_specific=f.text(basic, "industrySpecific", max_len=8),
        website=f.text(basic, "website"),
        contact_email=f.text(basic, "contactEmail"),
        ent_prefix=f.optional_text(basic, "entPrefix", max_len=64),
        filing=filing,
    )


@routes.post("/snms/api/v3/ent/apply")
@authenticated
async def apply(request: web.Request, actor: Actor) -> web.Response:
    """File an enterprise with a new user and allocate its prefix (administrators)."""
    app = parse_application(await json_body(request), upgrade=False)
    await request.app[REGISTRY].enterprises.apply(actor, app)
    return success(True)


@routes.post("/snms/api/v3/ent/upgrade-apply")
@authenticated
async def upgrade_apply(request: web.Request, actor: Actor) -> web.Response:
    """File an enterprise for an existing user (administrators)."""
    app = parse_application(await json_body(request), upgrade=True)
    await request.app[REGISTRY].enterprises.apply(actor, app)
    return success(True)


def _summary(enterprise: Enterprise, format_time: Any) -> dict[str, Any]:
    return {
        "id": enterprise.id,
        "orgName": enterprise.org_name,
        "orgNature": None if enterprise.org_nature is None else str(enterprise.org_nature),
        "orgCrtType": str(enterprise.org_crt_type),
        "orgCrtCode": enterprise.org_crt_code,
        "orgDesc": enterprise.org_desc or None,
        "website": enterprise.website or None,
        "entGeneralId": f"{enterprise.id:016d}",
        "openIds": [],
        "status": int(enterprise.status),
        "createDate": format_time(enterprise.created_at),
        "updateDate": format_time(enterprise.updated_at),
    }


@routes.get("/snms/api/v3/ent/page")
@authenticated
async def page(request: web.Request, actor: Actor) -> web.Response:
    registry = request.app[REGISTRY]
    services = registry.services
    start, end = date_range(request)
    result = await registry.enterprises.page(
        actor,
        org_name=request.query.get("orgName") or None,
        start=start,
        end=end,
        page=page_request(request),
    )
    content = [_summary(e, services.format_time) for e in result.items]
    return success(spring_page(result, content))


def detail_json(enterprise: Enterprise, prefixes: list[Prefix]) -> dict[str, Any]:
    filing: Mapping[str, Any] = enterprise.filing
    basic = dict(filing.get("entBasicInfo") or {})
    basic.update(
        {
            "orgName": enterprise.org_name,
            "orgNature": None if enterprise.org_nature is None else str(enterprise.org_nature),
            "orgCrtType": str(enterprise.org_crt_type),
            "orgCrtCode": enterprise.org_crt_code,
            "orgDesc": enterprise.org_desc or None,
            "orgAddr": enterprise.org_addr or None,
            "industryCategory": enterprise.industry_category,
            "industrySpecific": enterprise.industry_specific,
            "website": enterprise.website or None,
            "contactName": enterprise.contact_name,
            "contactPhone": enterprise.contact_phone,
            "contactEmail": enterprise.contact_email or None,
            "entPrefix": prefixes[0].prefix if prefixes else None,
        }
    )
    return {
        "id": enterprise.id,
        "status": int(enterprise.status),
        "entBasicInfo": basic,
        "entRegisterManageInfo": filing.get("entRegisterManageInfo") or {},
        "entHostingAndIdentifyServeInfo": filing.get("entHostingAndIdentifyServeInfo") or {},
        "entPrefixes": [
            {"prefix": p.prefix, "state": int(p.state), "proxyState": int(p.proxy_state)}
            for p in prefixes
        ],
    }


@routes.get("/snms/api/v3/ent/detail")
@authenticated
async def detail(request: web.Request, actor: Actor) -> web.Response:
    enterprise_id = f.integer(request.query, "id", minimum=1)
    enterprise, prefixes = await request.app[REGISTRY].enterprises.detail(actor, enterprise_id)
    return success(detail_json(enterprise, prefixes))
