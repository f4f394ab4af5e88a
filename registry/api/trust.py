"""``/snms/api/trust``: the node as an issuer of trusted resolution (an SNMS extension).

- ``GET /snms/api/trust/issuer``: the node's identity, algorithm and certificate;
- ``GET /snms/api/trust/cert?prefix=P``: an enterprise prefix's certificate;
- ``POST /snms/api/trust/cert {"prefix", "revoke"?}``: re-issue it with a new key
  (the old certificate replaced: what the old key signed no longer verifies), or
  revoke it (a certificate granting nothing; the node forgets the key) — node
  administrators;
- ``POST /snms/api/trust/sign {"handles": [...] | "handle", "signer"?}``: sign
  records' public values (``HS_SIGNATURE``) with the enterprise's key, or the
  node's (``"signer": "node"``, node administrators). One handle: an error fails
  the call. A list (at most 500): each handle signed or refused on its own.

No answer ever holds a private key.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import InvalidRequest
from ..services import Actor
from ..services.identifiers import MAX_SNMS_HANDLE_CHARS
from ..services.signing import SignResult
from ..services.trust import CertificateView
from ..trust.keys import key_to_jwk
from . import fields as f
from .envelope import FAILED, OK, REGISTRY, authenticated, json_body, success

routes = web.RouteTableDef()
ROOT = "/snms/api/trust"


def certificate_json(view: CertificateView) -> dict[str, Any]:
    claims = view.claims
    return {
        "identity": view.identity,
        "certificate": view.certificate,
        "issuer": claims.iss,
        "subject": claims.sub,
        "issuedAt": claims.iat,
        "notBefore": claims.nbf,
        "expires": claims.exp,
        "perms": [p.to_json() for p in claims.perms or ()],
        "publicKey": key_to_jwk(claims.public_key) if claims.public_key is not None else None,
        "keyHeld": view.key_held,
    }


def sign_json(result: SignResult) -> dict[str, Any]:
    return {
        "handle": result.handle,
        "code": OK if result.ok else FAILED,
        "msg": result.message,
        "index": result.index,
        "issuer": result.issuer,
    }


@routes.get(f"{ROOT}/issuer")
@authenticated
async def issuer(request: web.Request, actor: Actor) -> web.Response:
    actor.require()
    trust = request.app[REGISTRY].trust
    node = trust.require_issuer()
    view = await trust.node_certificate()
    return success(
        {
            "identity": str(node.identity),
            "algorithm": node.algorithm,
            "selfRooted": node.imported is None,
            "resignOnChange": node.resign_on_change,
            "certificate": certificate_json(view) if view is not None else None,
        }
    )


@routes.get(f"{ROOT}/cert")
@authenticated
async def certificate(request: web.Request, actor: Actor) -> web.Response:
    prefix = f.text(request.query, "prefix", required=True, max_len=64)
    view = await request.app[REGISTRY].trust.certificate_of(actor, prefix)
    return success(certificate_json(view))


@routes.post(f"{ROOT}/cert")
@authenticated
async def reissue(request: web.Request, actor: Actor) -> web.Response:
    body = f.require_object(await json_body(request))
    prefix = f.text(body, "prefix", required=True, max_len=64)
    revoke = bool(f.boolean(body, "revoke", default=False))
    view = await request.app[REGISTRY].trust.reissue(actor, prefix, revoke=revoke)
    return success(certificate_json(view))


@routes.post(f"{ROOT}/sign")
@authenticated
async def sign(request: web.Request, actor: Actor) -> web.Response:
    body = f.require_object(await json_body(request))
    signer = f.optional_text(body, "signer", max_len=16)
    trust = request.app[REGISTRY].trust
    if "handles" in body:
        if "handle" in body:
            raise InvalidRequest("handle 与 handles 只能填写一个 (one of handle, handles)")
        names = f.require_list(body["handles"], "handles")
        for position, name in enumerate(names):
            if not isinstance(name, str) or not name or len(name) > MAX_SNMS_HANDLE_CHARS:
                raise InvalidRequest(
                    f"handles[{position}] 应为非空字符串 (a handle of at most "
                    f"{MAX_SNMS_HANDLE_CHARS} characters)"
                )
        results = await trust.sign_many(actor, names, signer=signer)
        return success([sign_json(r) for r in results])
    handle = f.text(body, "handle", required=True, max_len=MAX_SNMS_HANDLE_CHARS)
    return success(sign_json(await trust.sign(actor, handle, signer=signer)))
