"""Application state of the HTTP front end, declared once with typed keys."""

from __future__ import annotations

from aiohttp import web

from registry.services import Registry

from ..engine import Engine
from .auth import Authenticator

ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("authenticator", Authenticator)
REGISTRY = web.AppKey("resolution_registry", Registry)
"""The registry as the resolution handlers see it, set by this front end's own
setup; the admin API on the same application keeps its own key."""

__all__ = ["AUTH", "ENGINE", "REGISTRY"]
