"""For the tests of the node as an issuer: a registry that issues, a reader of
what anyone may resolve, and an independent verifier of what the node signs.

The verifier is written afresh from the published rules (trust.md §3, HANDLE.NET's
and the IDIS SDK's chain walk and permission checks), not from the node's code:
signatures checked by ``tests.trust_tools.independently_verifies`` (RS256 through
PyJWT, SM2256 through the ``openssl`` tool), value digests from RFC 3651
(``tests.trust_tools.digests_verdict``), the chain by ``iss`` handles to the newest
certificate about each issuer, up to a self-issued root.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from registry.crypto import Sm2PrivateKey
from registry.db import create_engine
from registry.grammar import Grammar
from registry.models import HandleValue
from registry.secrets import NodeKey
from registry.services import NodeIssuer, Registry, Services
from registry.trust.issue import SigningKey
from resolver.resolution import Resolver
from tests.factories import ADMIN_AK, ADMIN_SK, NODE_PREFIX, OID_ARC
from tests.trust_tools import (
    claims_of,
    digests_verdict,
    independently_verifies,
    leaves_public_values_unsigned,
    rsa_key,
)

NODE_IDENTITY = f"401:0.NA/{NODE_PREFIX}"


def node_issuer(key: SigningKey | None = None, **options: Any) -> NodeIssuer:
    key = key if key is not None else rsa_key(7)
    return NodeIssuer.configured(
        key,
        algorithm="SM2256" if isinstance(key, Sm2PrivateKey) else "RS256",
        identity=options.pop("identity", ""),
        node_prefix=NODE_PREFIX,
        imported=options.pop("imported", None),
        cert_days=options.pop("cert_days", 365),
        resign_on_change=options.pop("resign_on_change", True),
        now=options.pop("now", 0) or _now(),
    )


def _now() -> int:
    import time

    return int(time.time())


@asynccontextmanager
async def issuing_registry(
    database_url: str, node_key: NodeKey, issuer: NodeIssuer | None
) -> AsyncIterator[Registry]:
    """The conftest registry, issuing as ``issuer``, its certificate published."""
    engine = create_engine(database_url)
    grammar = Grammar(oid_arc=OID_ARC, node_prefix=NODE_PREFIX)
    services = Services(engine, node_prefix=NODE_PREFIX, node_key=node_key, grammar=grammar)
    registry = Registry(services, issuer)
    await registry.ensure_node()
    await registry.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
    if issuer is not None:
        await registry.trust.publish_node_certificate()
    try:
        yield registry
    finally:
        await registry.accounts.drain()
        await engine.dispose()


ValuesOf = Callable[[str], Awaitable[Sequence[HandleValue] | None]]


def public_values(registry: Registry) -> ValuesOf:
    """What an anonymous resolver gets for a handle (None: not found)."""
    resolver = Resolver(registry)

    async def values_of(handle: str) -> Sequence[HandleValue] | None:
        resolution = await resolver.resolve(resolver.parse(handle))
        return resolution.values or None

    return values_of


# --- the independent verifier -----------------------------------------------------


def _prefix_of(handle: str) -> str:
    head, _, rest = handle.partition("/")
    return rest if head.upper() == "0.NA" else head


def _derived(prefix: str, parent: str) -> bool:
    return prefix.upper().startswith(parent.upper() + ".")


def allowed(perms: Sequence[dict[str, str]], handle: str) -> bool:
    """HANDLE.NET's rules: everything; thisHandle (the handle itself); handles under
    the prefix of ``0.NA/P``; records under, and prefix handles of, derived prefixes."""
    for perm in perms:
        kind, over = perm["perm"], perm.get("handle", "")
        if kind == "everything":
            return True
        target = _prefix_of(over)
        if kind == "thisHandle" and handle.upper() == over.upper():
            return True
        if kind == "handlesUnderThisPrefix" and handle.upper().startswith(target.upper() + "/"):
            return True
        if kind == "derivedPrefixes" and _derived(_prefix_of(handle), target):
            return True
    return False


async def independent_verdict(
    handle: str, values_of: ValuesOf, *, root_handle: str, root_jwk: dict[str, str], now: float
) -> str:
    """The verdict for a record with one HS_SIGNATURE (names as in trust.md §3)."""
    values = list(await values_of(handle) or ())
    signatures = [v for v in values if v.type == "HS_SIGNATURE"]
    if not signatures:
        return "no_signatures"
    links = [(signatures[0].data, claims_of(signatures[0].data))]
    seen: set[str] = set()
    while links[-1][1]["sub"] != links[-1][1]["iss"]:
        parent = links[-1][1]["iss"].partition(":")[2]
        if parent.upper() in seen or len(links) > 50:
            return "chain_not_built"
        seen.add(parent.upper())
        certs = [
            (v.data, claims_of(v.data))
            for v in await values_of(parent) or ()
            if v.type == "HS_CERT"
        ]
        about = [c for c in certs if c[1]["sub"] == links[-1][1]["iss"]]
        if not about:
            return "chain_not_built"
        links.append(max(about, key=lambda c: c[1].get("iat", 0)))
    first = links[0][1]
    if first["sub"] != handle:
        return "wrong_handle"
    for position, (data, claims) in enumerate(links):
        issuer = links[min(position + 1, len(links) - 1)][1]
        if not independently_verifies(data, issuer["publicKey"]):
            return "bad_signature" if position == 0 else "chain_not_trusted"
        if not claims.get("nbf", 0) <= now <= claims.get("exp", now):
            return "outside_dates" if position == 0 else "chain_not_trusted"
    problem = digests_verdict(first, values)
    if problem is not None:
        return problem
    root = links[-1][1]
    if root["sub"].partition(":")[2] != root_handle or root["publicKey"] != root_jwk:
        return "chain_not_trusted"
    if not all(allowed(links[p + 1][1].get("perms", []), handle) for p in range(len(links) - 1)):
        return "not_authorized"
    if leaves_public_values_unsigned(first, values):
        return "unsigned_values"
    return "trusted"
