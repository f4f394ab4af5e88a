"""HTTP resolution's part of the node's OpenAPI document: the REST API, reverse
lookup and the redirect proxy — their paths, the schemas they name, their tags,
HTTP Basic. The composition root (``idnode.openapi``) assembles it with the
other front ends' parts and serves the whole; the building blocks are the
registry's (``registry.api.openapi.schema``)."""

from __future__ import annotations

from registry.api.openapi.schema import Schema

from . import common, hrls, proxy, rest, signing, verify
from .common import rate_limited

__all__ = ["OPENAPI_PATH", "SECURITY_SCHEMES", "TAGS", "paths", "rate_limited", "schemas"]

OPENAPI_PATH = "/api/openapi.json"
"""Where the node serves its document: under the REST API's root, which answers
405 for any other name (so the document's route must come first)."""

TAGS = [
    {"name": common.REST_TAG, "description": "HANDLE.NET 9-compatible REST API"},
    {"name": "hrls", "description": "Reverse lookup (EUDAT HRLS)"},
    {"name": "proxy", "description": "Redirect proxy and lookup page"},
]
SECURITY_SCHEMES: dict[str, Schema] = {
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "index%3Ahandle:HS_SECKEY, or accessKey:secretKey",
    }
}


def paths() -> dict[str, Schema]:
    """Every path of HTTP resolution, a fresh copy."""
    reserved = (OPENAPI_PATH.removeprefix("/api/"),)
    return {
        **rest.paths(reserved),
        **verify.paths(),
        **signing.paths(),
        **proxy.paths(),
        **hrls.paths(),
    }


def schemas() -> dict[str, Schema]:
    """The component schemas those paths name."""
    return {
        **common.schemas(),
        **rest.schemas(),
        **verify.schemas(),
        **signing.schemas(),
        **hrls.schemas(),
    }
