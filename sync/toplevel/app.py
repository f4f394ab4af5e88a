"""The mock top-level node's HTTP API: exactly sync/PROTOCOL.md, thin handlers
over :mod:`sync.toplevel.ledger`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from email.utils import formatdate
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db import read_transaction, write_transaction
from registry.grammar import ascii_upper, is_under

from .. import auth
from ..protocol import digests, prefix_of
from . import ledger

MAX_BODY = 8 * 1024 * 1024
MAX_BATCH = 500
MAX_ROUTES = 1000
SERVER = "idnode mock top-level node"
EVENT_TYPES = {
    "node.prefix",
    "enterprise.filed",
    "prefix.allocated",
    "prefix.configured",
    "identifier.created",
    "identifier.updated",
    "identifier.deleted",
    "identity.bootstrapped",
    "template.created",
    "template.updated",
    "template.deleted",
}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PREFIX = re.compile(r"[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*")


class ProtocolError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class EventRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def protocol_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProtocolError as exc:
        return error(exc.status, exc.code, str(exc))
    except auth.AuthError as exc:
        return error(503 if exc.code == "busy" else 401, exc.code, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return error(413, "too-large", f"bodies are at most {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(
                exc.status, "not-found" if exc.status == 404 else "bad-request", exc.reason
            )
        raise


RETRY_FORMATS = ("seconds", "date", "garbage", "none")


@dataclass(frozen=True)
class Faults:
    """Trouble the mock can make on purpose, for the worker's fault tests: per
    event batch, ``error`` answers 500 without storing anything, ``lost`` stores
    the batch and then answers 503 (the acknowledgement is lost, so the batch
    comes again), ``slow`` waits ``delay`` seconds before answering. Per signed
    request of any kind (registration, events, statistics, routes, reconciliation),
    ``busy`` answers ``busy``, 503 and 429 in turn, without looking at it, with
    ``Retry-After`` asking for ``retry_after`` seconds in ``retry_format``:
    ``seconds`` (delta-seconds, rounded up), ``date`` (an HTTP date at least that
    far ahead), ``garbage`` (a value no client can use) or ``none`` (no header)."""

    error: float = 0.0
    lost: float = 0.0
    slow: float = 0.0
    busy: float = 0.0
    delay: float = 2.0
    retry_after: float = 1.0
    retry_format: str = "seconds"
    seed: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``error=0.2,lost=0.1,slow=0.1,busy=0.1,delay=2,retry_after=5,seed=7``
        (empty: none); a malformed spec raises :class:`ValueError`."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, _, raw = item.partition("=")
            if key not in known:
                raise ValueError(f"unknown fault {key!r}")
            if key == "seed":
                values[key] = int(raw)
            elif key == "retry_format":
                if raw not in RETRY_FORMATS:
                    raise ValueError(f"retry_format is one of {', '.join(RETRY_FORMATS)}")
                values[key] = raw
            else:
                number = float(raw)
                top = 1.0 if key in ("error", "lost", "slow", "busy") else math.inf
                if not 0 <= number <= top or math.isinf(number):
                    raise ValueError(f"{key}={raw} is out of range")
                values[key] = number
        return cls(**values)

    def retry_after_header(self, now: float) -> str | None:
        """``Retry-After`` for a busy answer at ``now`` (Unix time)."""
        if self.retry_format == "none":
            return None
        if self.retry_format == "garbage":
            return "soon, maybe"
        if self.retry_format == "date":
            # HTTP dates have whole seconds: rounded up, the date is never early.
            return formatdate(math.ceil(now + self.retry_after), usegmt=True)
        return str(math.ceil(self.retry_after))


class TopLevel:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        root: str = "88",
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ) -> None:
        self.engine = engine
        self.root = root
        self.clock = clock
        self.nonces = auth.NonceMemory()
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._busy_statuses = itertools.cycle((503, 429))

    # --- authentication --------------------------------------------------------------

    def _verify(self, request: web.Request, body: bytes, key: Ed25519PublicKey) -> None:
        auth.verify(
            request.headers,
            request.method,
            request.raw_path,
            body,
            key,
            now=self.clock(),
            nonces=self.nonces,
        )

    async def signed(self, request: web.Request) -> tuple[str, bytes]:
        """The verified node and the body of a request signed by a registered node."""
        body = await request.read()
        node = auth.claimed_node(request.headers)
        async with read_transaction(self.engine) as conn:
            known = await ledger.get_node(conn, node)
        if known is None:
            raise auth.AuthError("unknown-node", f"node {node} is not registered")
        key = auth.public_key(known.public_key)
        self._verify(request, body, key)
        return node, body

    # --- injected faults -------------------------------------------------------------

    @web.middleware
    async def busy(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The ``busy`` fault: a refusal with ``Retry-After`` before anything is
        read, for what nodes send; the public lookups are never refused."""
        public = request.path == "/sync/v1/" or request.path.startswith("/sync/v1/prefixes/")
        # No draw at all without the fault, so a seeded run of the other faults
        # makes the same trouble it always did.
        if public or not self.faults.busy or self._rng.random() >= self.faults.busy:
            return await handler(request)
        response = error(next(self._busy_statuses), "busy", "injected busy answer (--faults)")
        header = self.faults.retry_after_header(self.clock())
        if header is not None:
            response.headers["Retry-After"] = header
        return response

    # --- handlers --------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({"protocol": "idnode-sync", "versions": [1], "server": SERVER})

    async def register(self, request: web.Request) -> web.Response:
        body = await request.read()
        claimed = auth.claimed_node(request.headers)
        data = _json_object(body)
        node = _required_string(data, "node")
        try:
            raw_key = base64.b64decode(_required_string(data, "publicKey"), validate=True)
            key = auth.public_key(raw_key)
            site = base64.b64decode(_required_string(data, "site"), validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(400, "bad-request", "publicKey and site are base64") from None
        self._verify(request, body, key)
        if claimed != node:
            raise ProtocolError(403, "foreign-node", "the signing node is not the body's node")
        if not _PREFIX.fullmatch(node) or not is_under(node, self.root) or node == self.root:
            raise ProtocolError(400, "bad-request", f"{node} is no node prefix under {self.root}")
        name = str(data.get("name") or node)[:255]
        async with write_transaction(self.engine) as conn:
            existing = await ledger.get_node(conn, node)
            if existing is not None and existing.public_key != raw_key:
                raise ProtocolError(409, "conflict", f"{node} is registered with another key")
            await ledger.register_node(conn, node, raw_key, site, name)
            route = await ledger.current_route(conn, node)
            if route is None or route.site != site:
                seq = await ledger.add_route(conn, node, node, site, hosted=True, deleted=False)
            else:
                seq = route.seq
        return web.json_response({"node": node, "registered": True, "routeSeq": seq})

    async def post_events(self, request: web.Request) -> web.Response:
        faults, draw = self.faults, self._rng.random()
        if draw < faults.error:
            raise ProtocolError(500, "internal", "injected failure (--faults)")
        if draw < faults.error + faults.slow:
            await asyncio.sleep(faults.delay)
        answer = await self._post_events(request)
        if self._rng.random() < faults.lost:
            raise ProtocolError(503, "busy", "injected lost acknowledgement (--faults)")
        return answer

    async def _post_events(self, request: web.Request) -> web.Response:
        node, body = await self.signed(request)
        data = _json_object(body)
        if data.get("node") != node:
            raise ProtocolError(403, "foreign-node", "the signing node is not the body's node")
        items = data.get("events")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise ProtocolError(400, "bad-request", f"events: a list of 1 to {MAX_BATCH}")
        seqs = [item.get("seq") if isinstance(item, dict) else None for item in items]
        numbers = [s for s in seqs if type(s) is int and s > 0]
        if len(numbers) != len(seqs) or numbers != sorted(set(numbers)):
            raise ProtocolError(400, "bad-request", "events need positive seq, ascending")
        accepted: list[int] = []
        duplicates: list[int] = []
        rejected: list[dict[str, Any]] = []
        async with write_transaction(self.engine) as conn:
            known = await ledger.get_node(conn, node)
            assert known is not None
            for item in items:
                seq = item["seq"]
                savepoint = await conn.begin_nested()
                try:
                    outcome = await self._apply(conn, known, item)
                except EventRejected as exc:
                    await savepoint.rollback()
                    rejected.append({"seq": seq, "error": exc.code, "message": str(exc)})
                    continue
                await savepoint.commit()
                (accepted if outcome else duplicates).append(seq)
            high_water = await ledger.advance_high_water(conn, node)
        return web.json_response(
            {
                "accepted": accepted,
                "duplicates": duplicates,
                "rejected": rejected,
                "highWater": high_water,
            }
        )

    async def _apply(self, conn: Any, node: ledger.Node, item: dict[str, Any]) -> bool:
        """Store and apply one event; False for a duplicate."""
        seq, event, subject = item["seq"], item.get("event"), item.get("subject")
        payload, created_at = item.get("payload"), item.get("createdAt", "")
        if not isinstance(event, str) or not isinstance(subject, str):
            raise EventRejected("invalid", "event and subject are strings")
        if not isinstance(payload, dict) or not isinstance(created_at, str):
            raise EventRejected("invalid", "payload is an object, createdAt a string")
        digest = ledger.event_digest(event, subject, payload)
        stored = await ledger.stored_digest(conn, node.node, seq)
        if stored is not None:
            if stored == digest:
                return False
            raise EventRejected("conflict", f"seq {seq} was stored with other content")
        if event not in EVENT_TYPES:
            raise EventRejected("unknown-event", f"unknown event {event!r}")
        prefix = _owning_prefix(event, subject, payload)
        if prefix is not None and not is_under(prefix, node.node):
            raise EventRejected("foreign-prefix", f"{subject} is not under {node.node}")
        await ledger.insert_event(
            conn, node.node, seq, event, subject, digest, payload, created_at[:40]
        )
        if event in ("prefix.allocated", "prefix.configured") and prefix is not None:
            hosted = bool(payload.get("hosted", True))
            site = node.site
            if not hosted and isinstance(payload.get("site"), str):
                try:
                    site = base64.b64decode(payload["site"], validate=True)
                except (binascii.Error, ValueError):
                    raise EventRejected("invalid", "site is base64") from None
            await ledger.add_route(conn, prefix, node.node, site, hosted=hosted, deleted=False)
        elif event.startswith("identifier."):
            deleted = event == "identifier.deleted"
            record = {} if deleted else payload
            await ledger.put_backup(conn, node.node, subject, subject, seq, record, deleted=deleted)
        elif event == "enterprise.filed":
            await ledger.put_keyed(conn, ledger.filings, node.node, subject[:64], payload)
        return True

    async def put_stats(self, request: web.Request) -> web.Response:
        node, body = await self.signed(request)
        data = _json_object(body)
        day = request.match_info["date"]
        if data.get("node") != node:
            raise ProtocolError(403, "foreign-node", "the signing node is not the body's node")
        if not _DATE.fullmatch(day) or data.get("date") != day:
            raise ProtocolError(400, "bad-request", "date is YYYY-MM-DD, in the path and body")
        async with write_transaction(self.engine) as conn:
            await ledger.put_keyed(conn, ledger.stats, node, day, data)
        return web.json_response({"stored": True})

    async def get_routes(self, request: web.Request) -> web.Response:
        await self.signed(request)
        since = _int_arg(request, "since", 0, 0, 2**62)
        limit = _int_arg(request, "limit", MAX_BATCH, 1, MAX_ROUTES)
        async with read_transaction(self.engine) as conn:
            found = await ledger.routes_since(conn, since, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        body = {
            "routes": [
                {
                    "seq": r.seq,
                    "prefix": r.prefix,
                    "node": r.node,
                    "site": base64.b64encode(r.site).decode("ascii"),
                    "hosted": r.hosted,
                    "deleted": r.deleted,
                }
                for r in found
            ],
            "next": found[-1].seq if found else since,
            "more": more,
        }
        return web.json_response(body)

    async def get_prefix(self, request: web.Request) -> web.Response:
        prefix = request.match_info["prefix"]
        async with read_transaction(self.engine) as conn:
            route = await ledger.route_of(conn, prefix)
        if route is None:
            raise ProtocolError(404, "not-found", f"no route for {prefix}")
        return web.json_response(
            {
                "prefix": route.prefix,
                "node": route.node,
                "site": base64.b64encode(route.site).decode("ascii"),
                "hosted": route.hosted,
            }
        )

    async def summary(self, request: web.Request) -> web.Response:
        node, _ = await self.signed(request)
        if request.match_info["node"] != node:
            raise ProtocolError(403, "foreign-node", "a node reads its own summary only")
        async with read_transaction(self.engine) as conn:
            known = await ledger.get_node(conn, node)
            names = await ledger.live_names(conn, node)
        return web.json_response(
            {
                "node": node,
                "highWater": known.high_water if known else 0,
                "prefixes": digests(names),
            }
        )

    async def names(self, request: web.Request) -> web.Response:
        node, _ = await self.signed(request)
        if request.match_info["node"] != node:
            raise ProtocolError(403, "foreign-node", "a node reads its own names only")
        prefix = request.query.get("prefix", "")
        async with read_transaction(self.engine) as conn:
            names = await ledger.live_names(conn, node)
        return web.json_response(
            {"prefix": prefix, "names": sorted(n for n in names if prefix_of(n) == prefix)}
        )


def _owning_prefix(event: str, subject: str, payload: dict[str, Any]) -> str | None:
    if event in ("prefix.allocated", "prefix.configured", "node.prefix"):
        return subject
    if event.startswith(("identifier.", "identity.", "template.")):
        if "/" in subject:
            prefix, _, rest = subject.partition("/")
            return rest if ascii_upper(prefix) == "0.NA" else prefix
        owner = payload.get("prefix")  # OID names say which prefix owns them
        if not isinstance(owner, str):
            raise EventRejected("invalid", "an event about an OID name carries its prefix")
        return owner
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ProtocolError(400, "bad-request", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(400, "bad-request", "the body is a JSON object")
    return data


def _required_string(data: dict[str, Any], key: str) -> str:
    """``data[key]``, which must be a non-empty string (400 otherwise)."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(400, "bad-request", f"{key} is a non-empty string")
    return value


def _int_arg(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ProtocolError(400, "bad-request", f"{name} is an integer in {low}..{high}")
    return int(raw)


def build_app(toplevel: TopLevel) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[protocol_errors, toplevel.busy])
    app.router.add_get("/sync/v1/", toplevel.info)
    app.router.add_post("/sync/v1/nodes", toplevel.register)
    app.router.add_post("/sync/v1/events", toplevel.post_events)
    app.router.add_put("/sync/v1/stats/{date}", toplevel.put_stats)
    app.router.add_get("/sync/v1/routes", toplevel.get_routes)
    app.router.add_get("/sync/v1/prefixes/{prefix}", toplevel.get_prefix)
    app.router.add_get("/sync/v1/nodes/{node}/summary", toplevel.summary)
    app.router.add_get("/sync/v1/nodes/{node}/names", toplevel.names)
    return app
