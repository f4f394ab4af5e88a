"""The SNMS admin API's part of the node's OpenAPI document.

Its paths, the schemas they name, its tag and its security scheme, one module
beside each of the API's handler modules; the composition root
(``idnode.openapi``) assembles them with the other HTTP front ends' parts and
serves the whole document. ``schema`` holds the building blocks every part uses.
"""

from __future__ import annotations

from ...tokens import TOKEN_TTL_SECONDS
from . import data, enterprises, envelope, files, grants, identity, prefixes, templates, trust
from .envelope import SNMS_TAG
from .schema import Schema

__all__ = ["SECURITY_SCHEMES", "SNMS_TAG", "TAGS", "paths", "schemas"]

TAGS = [{"name": SNMS_TAG, "description": "SNMS v5-compatible admin API"}]
SECURITY_SCHEMES: dict[str, Schema] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": f"The token from POST /identity/token (valid {TOKEN_TTL_SECONDS // 3600} h)",
    }
}


def paths() -> dict[str, Schema]:
    """Every SNMS path, a fresh copy."""
    return {
        **identity.paths(),
        **data.paths(),
        **prefixes.paths(),
        **enterprises.paths(),
        **files.paths(),
        **grants.paths(),
        **templates.paths(),
        **trust.paths(),
    }


def schemas() -> dict[str, Schema]:
    """The component schemas the SNMS paths name."""
    return {
        **envelope.schemas(),
        **identity.schemas(),
        **data.schemas(),
        **templates.schemas(),
        **prefixes.schemas(),
        **enterprises.schemas(),
        **grants.schemas(),
        **trust.schemas(),
    }
