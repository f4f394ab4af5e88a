"""Logging: one JSON object a line in production, plain lines on a terminal;
every line logged while an HTTP request is handled carries its request id."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

REQUEST_ID_HEADER = "X-Request-Id"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the HTTP request being handled, for every line logged meanwhile."""
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""A caller's own id is kept (a proxy's, a client's) when it is this plain."""

access_log = logging.getLogger("idnode.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # extra={"fields": {...}}: structured context
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        current = request_id.get()
        return f"{line} [request {current}]" if current is not None else line


def setup(log_format: str = "auto", level: str = "info") -> None:
    """Configure the root logger; called again on SIGHUP with the new settings."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access_log.setLevel(logging.INFO)
    # Alembic narrates every schema check (each /readyz probe): only its warnings.
    logging.getLogger("alembic.runtime.migration").setLevel(max(logging.WARNING, root.level))


@dataclass
class AccessLogSwitch:
    """Whether each HTTP request is logged (``access_log``; flipped on SIGHUP)."""

    enabled: bool = False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_ids(switch: AccessLogSwitch) -> Middleware:
    """Middleware: the request's id — the caller's ``X-Request-Id`` if plain,
    else a new one — in every line logged while it is handled and in the
    answer's ``X-Request-Id``; one access-log line a request when switched on."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _GOOD_REQUEST_ID.fullmatch(given) else os.urandom(8).hex()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers[REQUEST_ID_HEADER] = rid
                status = exc.status
                raise
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = rid
            return response
        finally:
            if switch.enabled:
                access_log.info(
                    "%s %s %s",
                    request.method,
                    loggable_path(request),
                    status,
                    extra={
                        "fields": {
                            "method": request.method,
                            "path": loggable_path(request)[:2048],
                            "status": status,
                            "ms": round((time.perf_counter() - started) * 1000, 3),
                            "remote": request.remote or "",
                            "bytes_in": request.content_length or 0,
                        }
                    },
                )
            request_id.reset(token)

    return middleware


SECRET_PARAMETERS = frozenset(
    {"token", "access_token", "password", "pwd", "secret", "secretkey", "secret_key", "sk"}
    | {"authorization", "auth", "sign", "signature", "key", "apikey", "api_key"}
)
"""Query parameters whose values are credentials: never written to a log."""


def loggable_path(request: web.Request) -> str:
    """The request's path and query, credentials in the query masked."""
    if not request.query_string:
        return request.path
    masked = [
        (name, "***" if name.lower() in SECRET_PARAMETERS else value)
        for name, value in request.query.items()
    ]
    return str(request.rel_url.with_query(masked))
