"""Application state of the HTTP front end, declared once with typed keys."""

from __future__ import annotations

from aiohttp import web

from registry.services import Registry

from ..resolution import Resolver
from ..verification import Verification
from .auth import Authenticator

RESOLVER = web.AppKey("resolver", Resolver)
AUTH = web.AppKey("authenticator", Authenticator)
REGISTRY = web.AppKey("resolution_registry", Registry)
"""The registry as the resolution handlers see it, set by this front end's own
setup; the admin API on the same application keeps its own key."""
VERIFICATION = web.AppKey("verification", Verification)
"""Trusted resolution against the node's trust root (``/api/verify``)."""

__all__ = ["AUTH", "REGISTRY", "RESOLVER", "VERIFICATION"]
