"""Application state of the HTTP front end, declared once with typed keys."""

from __future__ import annotations

from aiohttp import web

from registry.api import REGISTRY

from ..engine import Engine
from .auth import Authenticator

ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("authenticator", Authenticator)

__all__ = ["AUTH", "ENGINE", "REGISTRY"]
