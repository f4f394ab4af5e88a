"""``/identity``: bearer tokens, user registration, access keys."""

from __future__ import annotations

from aiohttp import web

from ..errors import LoginFailed
from ..services import Actor
from ..services.accounts import LOGIN_FAILED
from . import fields as f
from .envelope import (
    REGISTRY,
    TOKENS,
    authenticated,
    client_address,
    json_body,
    public,
    success,
)

routes = web.RouteTableDef()


async def _login(request: web.Request, *, dated: bool) -> web.Response:
    body = f.require_object(await json_body(request))
    username = f.text(body, "username", max_len=64) or f.text(body, "userName", max_len=64)
    password = f.text(body, "password", max_len=255)
    if not username or not password:
        raise LoginFailed(LOGIN_FAILED)
    login = await request.app[REGISTRY].accounts.login(
        username, password, dated=dated, remote=client_address(request)
    )
    token = request.app[TOKENS].issue(
        login.principal.user_id,
        login.principal.via,
        fingerprint=login.fingerprint,
        access_key_id=login.access_key_id,
    )
    return success({"token": token})


@routes.post("/identity/token")
@public
async def token(request: web.Request) -> web.Response:
    """Log in with a user name or access key and the plain password or secret key."""
    return await _login(request, dated=False)


@routes.post("/identity/token/v1")
@public
async def token_v1(request: web.Request) -> web.Response:
    """Log in with ``sha256(sha256(password) + "yyyy-MM-dd")`` instead of the password."""
    return await _login(request, dated=True)


@routes.post("/identity/registry")
@authenticated
async def register_user(request: web.Request, actor: Actor) -> web.Response:
    body = f.require_object(await json_body(request))
    username = f.text(body, "userName", max_len=50) or f.text(body, "username", max_len=50)
    await request.app[REGISTRY].accounts.register_user(
        actor,
        username=username,
        password_digest=f.text(body, "password", required=True),
        email=f.optional_text(body, "email"),
        mobile=f.optional_text(body, "mobile", max_len=32),
    )
    return success(True)


@routes.post("/identity/access-key")
@authenticated
async def create_access_key(request: web.Request, actor: Actor) -> web.Response:
    """An AK/SK pair for a user (idnode extension; SNMS issues these in its UI)."""
    body = f.require_object(await json_body(request))
    assert actor.principal is not None
    username = f.text(body, "username", max_len=50) or actor.principal.username
    access_key, secret_key = await request.app[REGISTRY].accounts.create_access_key(actor, username)
    return success({"accessKey": access_key, "secretKey": secret_key})
