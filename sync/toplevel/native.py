"""The mock top-level node on the native Handle protocol: prefix lookups, the
way the Global Handle Registry answers them, from the route table the nodes sync.

- ``0.NA/88.100`` (or the bare ``88.100``), a routed prefix: its record — the
  ``HS_SITE`` it is served at and, for a node's own prefix, an ``HS_SITE.PREFIX``
  that delegates every prefix derived from it to that node.
- A name under a routed prefix that has no record here (``0.NA/88.100.99``,
  ``88.100.12/SN-1``): RC 303, a prefix referral to the longest routed prefix
  above it, so a client walks 88 → 88.100 → 88.100.12/SN-1.
- ``0.NA/88``: the top-level node's own site. Other names under 88 that no route
  covers: RC 100. Names outside 88: RC 301, not served here.

Only resolutions and site-information requests are answered; administration
belongs to the sync API (sync/PROTOCOL.md), so other operations get RC 5.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db import read_transaction
from registry.errors import StorageUnavailable
from registry.grammar import Grammar, GrammarError, HandleName, ascii_upper, is_under, prefix_handle
from registry.models import PERM_PUBLIC, HandleValue
from registry.values import HS_SITE, HS_SITE_PREFIX, SiteInfo
from resolver import codes as rc
from resolver.handle import answers
from resolver.handle import codec as c
from resolver.handle.connection import Connection
from resolver.resolution import Query

from . import ledger

log = logging.getLogger("idnode.toplevel")

SITE_INDEX = 1
DELEGATION_INDEX = 2
DESC_INDEX = 3
RECORD_TTL = 3600
SITE_SERIAL = 1
NOT_HERE = "not under this top-level node's prefix"


class TopLevelHandle:
    """Answers native requests; the node's UDP and TCP listeners carry it."""

    def __init__(
        self,
        engine: AsyncEngine,
        site: SiteInfo,
        *,
        root: str = "88",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.site = site
        self.root = root
        self.clock = clock
        self.grammar = Grammar()

    def fast(self, data: bytes, *, udp: bool) -> list[bytes] | None:
        return None  # every lookup reads the route table: no answer cache

    def forget(self, connection: Connection) -> None:
        return None  # no per-connection state: nobody logs in here

    def refuse(self, data: bytes, remote: str, *, udp: bool) -> list[bytes] | None:
        return None  # a development stand-in: no limits

    async def handle(self, data: bytes, connection: Connection) -> list[bytes]:
        udp = not connection.tcp
        now = self.clock()
        try:
            request = c.Message.from_bytes(data)
        except c.CodecError as exc:
            return answers.garbage(data, str(exc), udp=udp, site_serial=SITE_SERIAL, now=now)
        if request.is_response:
            return []
        version = answers.answer_version(request.envelope)
        try:
            code, body = await self._answer(request)
        except c.CodecError as exc:
            code, body = rc.RC_PROTOCOL_ERROR, _error_body(str(exc))
        except StorageUnavailable as exc:
            log.error("route table unavailable: %s", exc)
            code, body = rc.RC_SERVER_TOO_BUSY, _error_body("route table unavailable")
        message = answers.response(request, version, code, body, site_serial=SITE_SERIAL, now=now)
        encoded = message.to_bytes()
        return c.fragments(encoded) if udp else [encoded]

    async def _answer(self, request: c.Message) -> tuple[int, bytes]:
        if request.opcode == c.OC_GET_SITE_INFO:
            return rc.RC_SUCCESS, self.site.to_bytes()
        if request.opcode != c.OC_RESOLUTION:
            return rc.RC_OPERATION_NOT_SUPPORTED, _error_body(
                f"operation {request.opcode} is not supported by the top-level node"
            )
        asked = c.ResolutionRequest.from_bytes(request.body)
        try:
            name = self.grammar.parse(asked.handle, bare_prefix=True)
        except GrammarError as exc:
            return rc.RC_INVALID_HANDLE, _error_body(str(exc))
        try:
            query = Query(asked.indexes, tuple(t.decode("utf-8") for t in asked.types))
        except UnicodeDecodeError:
            return rc.RC_PROTOCOL_ERROR, _error_body("type is not UTF-8")
        code, handle, values = await self.lookup(name)
        if code == rc.RC_PREFIX_REFERRAL and request.flag(c.FLAG_DNRF):
            return rc.RC_SERVER_NOT_RESP, _error_body("the request refuses referrals (DNRF)")
        if code == rc.RC_SUCCESS:
            values = tuple(v for v in values if query.matches(v))
            if not values:
                return rc.RC_VALUES_NOT_FOUND, _error_body("")
        if code in (rc.RC_SUCCESS, rc.RC_PREFIX_REFERRAL):
            return code, c.HandleValues(handle.encode("utf-8"), values).to_bytes()
        return code, _error_body(NOT_HERE if code == rc.RC_SERVER_NOT_RESP else "")

    async def lookup(self, name: HandleName) -> tuple[int, str, tuple[HandleValue, ...]]:
        """(response code, handle answered for, values) for a parsed name."""
        asked = name.handled_prefix
        if not is_under(asked, self.root):
            return rc.RC_SERVER_NOT_RESP, "", ()
        if name.is_prefix_handle and ascii_upper(asked) == ascii_upper(self.root):
            own = (_value(SITE_INDEX, HS_SITE, self.site.to_bytes()),)
            return rc.RC_SUCCESS, name.text, own
        async with read_transaction(self.engine) as conn:
            route = await ledger.route_of(conn, asked)
            node = await ledger.get_node(conn, route.node) if route is not None else None
        if route is None:
            return rc.RC_HANDLE_NOT_FOUND, "", ()
        exact = ascii_upper(route.prefix) == ascii_upper(asked)
        if name.is_prefix_handle and exact:
            values = [_value(SITE_INDEX, HS_SITE, route.site)]
            if route.prefix == route.node:  # a node's own prefix: delegate below it
                values.append(_value(DELEGATION_INDEX, HS_SITE_PREFIX, route.site))
                if node is not None and node.name:
                    values.append(_value(DESC_INDEX, "DESC", node.name.encode("utf-8")))
            return rc.RC_SUCCESS, name.text, tuple(values)
        referral = (_value(SITE_INDEX, HS_SITE_PREFIX, route.site),)
        return rc.RC_PREFIX_REFERRAL, prefix_handle(route.prefix), referral


def _value(index: int, type_: str, data: bytes) -> HandleValue:
    return HandleValue(index=index, type=type_, data=data, ttl=RECORD_TTL, permissions=PERM_PUBLIC)


def _error_body(message: str) -> bytes:
    """The body of an error response: ``message`` in UTF-8."""
    return c.ErrorMessage(message.encode("utf-8")).to_bytes()
