"""The sync worker (sync/PROTOCOL.md §10): delivers the outbox to the top-level
node in order, parks what it rejects, backs off while it is away, and pulls
the route table of other nodes' prefixes into the registry. When the top-level
node answers busy with ``Retry-After``, nothing more is sent to it until then.

Every decision about an event is written in one transaction with the answer
that caused it, so a worker killed at any point resumes from the first event
neither delivered nor parked; the top-level node's idempotency makes anything
sent twice a duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from metrics.instruments import (
    SYNC_BACKLOG,
    SYNC_DELIVERED,
    SYNC_LAG,
    SYNC_LAST_SUCCESS,
    SYNC_PARKED,
    SYNC_PARKED_BACKLOG,
    SYNC_RETRIED,
    SYNC_RETRY_AFTER,
)
from registry import store, usage
from registry.db import read_transaction, write_transaction
from registry.errors import StorageUnavailable
from registry.grammar import GrammarError, is_under, prefix_handle
from registry.services.base import SYSTEM_ACTOR, Services
from registry.services.identifiers import record_payload

from .client import Reply, SyncClient
from .protocol import digests, prefix_of

log = logging.getLogger("idnode.sync")

BATCH = 500
ROUTE_PAGE = 500
MAX_ROUTE_PAGES = 100
"""Route pages pulled in one round at most; the rest come in the next round."""
IDLE_SECONDS = 1.0
ROUTES_EVERY_SECONDS = 30.0
STATS_EVERY_SECONDS = 300.0
"""How often the day's statistics go up (and once at start, for the day before)."""
MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest wait a ``Retry-After`` can impose: a wrong or hostile value must not
hold the node's changes back for days."""
RETRY_AFTER_JITTER = 0.1
"""Up to this share is added to an asked wait, so that nodes told the same HTTP
date do not all come back in the same second."""
WAITING_UNTIL = "waiting_until"
"""The sync state key (``idnode sync status``) of the end of a wait the top-level
node asked for; empty when there is none."""


class Unavailable(Exception):
    """The top-level node cannot take this now: try again after a while (the
    while it asked for, when its answer carried ``Retry-After``)."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.retry_after = reply.retry_after if reply is not None else None
        self.retry_after_header = reply.retry_after_header if reply is not None else None


def _reason(exc: BaseException) -> str:
    """A connection failure in words: ``Cannot connect to host ...``, not a repr."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class Refused(Exception):
    """The top-level node refuses this node itself (a key conflict): an operator must act."""


@dataclass
class Backoff:
    """``min(cap, base · 2^attempt)`` with full jitter (PROTOCOL.md §10)."""

    base: float = 0.5
    cap: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        bound = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return self.rng.uniform(0, bound)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class Wait:
    """How long the worker waits before it sends anything again, and why."""

    seconds: float
    outcome: str | None = None
    """For an answer with ``Retry-After``: ``honoured`` (waited as asked),
    ``clamped`` (the ask was below the backoff's base or above the maximum) or
    ``unusable`` (neither delta-seconds nor an HTTP date: the own backoff)."""

    @property
    def asked(self) -> bool:
        return self.outcome in ("honoured", "clamped")


def wait_after(exc: Unavailable, backoff: Backoff, cap: float = MAX_RETRY_AFTER_SECONDS) -> Wait:
    """The wait after a failure: what the top-level node asked for, kept between
    the backoff's base and ``cap`` and spread a little, or else the own backoff.
    The backoff grows either way, so a later failure without an ask waits longer."""
    own = backoff.next()
    if exc.retry_after_header is None:
        return Wait(own)
    if exc.retry_after is None:
        return Wait(own, "unusable")
    bounded = min(max(exc.retry_after, backoff.base), cap)
    seconds = min(cap, bounded * (1 + backoff.rng.uniform(0, RETRY_AFTER_JITTER)))
    return Wait(seconds, "honoured" if bounded == exc.retry_after else "clamped")


def _timestamp(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def asked_wait(state: dict[str, str], now: float | None = None) -> str | None:
    """When a wait the top-level node asked for ends, from the sync state, while
    it lasts (a worker stopped during the wait leaves an end that has passed)."""
    until = state.get(WAITING_UNTIL, "")
    try:
        ends = _timestamp(until) if until else 0.0
    except ValueError:
        return None
    return until if ends > (time.time() if now is None else now) else None


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SyncWorker:
    def __init__(
        self,
        db: AsyncEngine,
        client: SyncClient,
        *,
        services: Services,
        site: bytes,
        name: str,
        batch: int = BATCH,
        clock: Callable[[], float] = time.time,
        zone: tzinfo = UTC,
    ) -> None:
        self.db = db
        self.client = client
        self.services = services
        self.grammar = services.grammar
        self.site = site
        self.name = name
        self.batch = batch
        self.clock = clock
        self.registered = False
        self.backoff = Backoff()
        """Grows with each failure in a row; any batch that gets through resets it."""
        self.retry_after_cap = MAX_RETRY_AFTER_SECONDS
        self._waiting_noted = True
        """Whether the sync state may hold the end of an asked wait, to clear once it is
        over; at first, too: a worker stopped during a wait leaves its end behind (a
        restarted worker starts afresh, the operator's call)."""
        self.zone = zone
        """The calendar of the daily statistics."""
        self._routes_due = 0.0
        self._stats_due = 0.0

    @property
    def node(self) -> str:
        return self.client.node

    async def _call(self, method: str, path: str, body: Any = None) -> Reply:
        try:
            reply = await self.client.call(method, path, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"top-level node unreachable: {_reason(exc)}") from None
        if reply.status in (401, 403, 429) or reply.status >= 500:
            code = reply.body.get("error") if isinstance(reply.body, dict) else None
            raise Unavailable(f"top-level node answered {reply.status} {code or ''}".strip(), reply)
        return reply

    async def register(self) -> None:
        try:
            reply = await self.client.register(self.site, self.name)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"top-level node unreachable: {_reason(exc)}") from None
        if reply.status == 409:
            raise Refused(f"{self.node} is registered at the top-level node with another key")
        if reply.status != 200:
            raise Unavailable(f"registration answered {reply.status}", reply)
        self.registered = True

    def _wire(self, event: store.OutboxEvent) -> dict[str, Any]:
        payload = event.payload
        if event.event.startswith("identifier.") and "/" not in event.subject:
            with contextlib.suppress(GrammarError):
                name = self.grammar.parse(event.subject)
                if name.oid:  # an OID name: say which prefix owns it (PROTOCOL.md §5)
                    payload = dict(payload, prefix=name.prefix)
        return {
            "seq": event.seq,
            "event": event.event,
            "subject": event.subject,
            "createdAt": _iso(event.created_at),
            "payload": payload,
        }

    async def deliver_batch(self) -> int:
        """Send the oldest pending events once; return how many were settled."""
        async with read_transaction(self.db) as conn:
            events = await store.pending_outbox(conn, self.batch)
        if not events:
            return 0
        body = {"node": self.node, "events": [self._wire(e) for e in events]}
        seqs = [e.seq for e in events]
        try:
            reply = await self._call("POST", "/sync/v1/events", body)
        except Unavailable as exc:
            async with write_transaction(self.db) as conn:
                await store.note_failure(conn, seqs, str(exc))
            raise
        now = datetime.now(UTC)
        if reply.status == 413 and len(events) > 1:
            self.batch = max(1, len(events) // 2)  # too large: smaller batches from now on
            raise Unavailable("batch too large; halved")
        async with write_transaction(self.db) as conn:
            if reply.status != 200:  # the batch itself is refused: park it, never drop it
                error = f"{reply.status} {reply.body}"
                for seq in seqs:
                    await store.park(conn, seq, error)
                parked, delivered = len(seqs), 0
            else:
                answer = reply.body
                done = [*answer.get("accepted", []), *answer.get("duplicates", [])]
                await store.mark_delivered(conn, [s for s in done if s in seqs], now)
                rejected = [r for r in answer.get("rejected", []) if r.get("seq") in seqs]
                for item in rejected:
                    await store.park(
                        conn, item["seq"], f"{item.get('error')}: {item.get('message')}"
                    )
                parked, delivered = len(rejected), len(done)
                await store.set_sync_state(
                    conn,
                    last_success=_iso(now),
                    high_water=str(answer.get("highWater", 0)),
                )
        SYNC_DELIVERED.inc(delivered)
        if parked:
            SYNC_PARKED.inc(parked)
            log.error("top-level node refused %d events; parked (idnode sync status)", parked)
        SYNC_LAST_SUCCESS.set(now.timestamp())
        self.backoff.reset()
        return len(events)

    async def pull_routes(self) -> int:
        """Bring the route table up to date; return how many routes changed here."""
        async with read_transaction(self.db) as conn:
            since = int((await store.sync_state(conn)).get("routes_next", "0"))
        changed = 0
        for _ in range(MAX_ROUTE_PAGES):
            reply = await self._call("GET", f"/sync/v1/routes?since={since}&limit={ROUTE_PAGE}")
            if reply.status != 200 or not isinstance(reply.body, dict):
                raise Unavailable(f"route table answered {reply.status}")
            async with write_transaction(self.db) as conn:
                for route in reply.body.get("routes", []):
                    prefix, node = str(route["prefix"]), str(route["node"])
                    if is_under(prefix, self.node) or is_under(self.node, prefix):
                        continue  # ours, or above us: the registry knows its own
                    try:
                        site = base64.b64decode(route["site"], validate=True)
                    except (binascii.Error, ValueError, KeyError):
                        continue
                    await store.put_foreign_route(
                        conn,
                        prefix,
                        node,
                        site,
                        hosted=bool(route.get("hosted")),
                        seq=int(route["seq"]),
                        deleted=bool(route.get("deleted")),
                    )
                    changed += 1
                since = int(reply.body.get("next", since))
                await store.set_sync_state(conn, routes_next=str(since))
            if not reply.body.get("more"):
                break
        return changed

    async def verify(self) -> dict[str, tuple[int, int]]:
        """Compare what the top-level node holds for this node with the registry;
        queue what it lacks (``identifier.created``) and what it holds in excess
        (``identifier.deleted``) as new outbox events. Returns, per prefix that
        differed, how many were re-sent and how many withdrawn."""
        reply = await self._call("GET", f"/sync/v1/nodes/{self.node}/summary")
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise Unavailable(f"summary answered {reply.status}")
        theirs = reply.body.get("prefixes", {})
        identity = prefix_handle(self.node)  # written by identity events, not identifier ones
        async with read_transaction(self.db) as conn:
            names = [n for n in await store.all_identifier_names(conn) if n != identity]
        mine = digests(names)
        fixed: dict[str, tuple[int, int]] = {}
        for prefix in sorted(set(mine) | set(theirs)):
            if mine.get(prefix) == theirs.get(prefix):
                continue
            listed = await self._call(
                "GET", f"/sync/v1/nodes/{self.node}/names?prefix={quote(prefix, safe='')}"
            )
            held = set(listed.body.get("names", [])) if listed.status == 200 else set()
            local = {name for name in names if prefix_of(name) == prefix}
            missing, excess = sorted(local - held), sorted(held - local)
            async with self.services.change(SYSTEM_ACTOR) as change:
                for name in missing:
                    key = self.grammar.parse(name).key
                    record = await store.get_identifier(change.conn, key)
                    values = record.values if record is not None else ()
                    await change.emit(
                        "identifier.created", name, record_payload(name, None, values)
                    )
                for name in excess:
                    await change.emit("identifier.deleted", name, {"handle": name})
            fixed[prefix] = (len(missing), len(excess))
        return fixed

    async def report_stats(self) -> list[str]:
        """Yesterday's and today's statistics (PROTOCOL.md §6), from the daily
        counts in the database; the last report of a day wins at the top-level
        node. Returns the days the top-level node stored."""
        today = datetime.fromtimestamp(self.clock(), self.zone).date()
        yesterday = today - timedelta(days=1)
        async with read_transaction(self.db) as conn:
            counted = await usage.days(conn, yesterday.isoformat(), today.isoformat())
            sizes = await usage.sizes(conn)
        found = {day.day: day for day in counted}
        stored = []
        for day in (yesterday.isoformat(), today.isoformat()):
            entry = found.get(day, usage.Day(day))
            body = {
                "node": self.node,
                "date": day,
                "timeZone": str(self.zone),
                "resolutions": entry.resolutions,
                "byProtocol": entry.by_protocol,
                "enterprisesServed": entry.enterprises_served,
                "enterprises": sizes.enterprises,
                "prefixes": sizes.prefixes,
                "identifiers": sizes.identifiers,
            }
            reply = await self._call("PUT", f"/sync/v1/stats/{day}", body)
            if reply.status == 200:
                stored.append(day)
            else:  # a refusal is the top-level node's to explain; the counts stay here
                log.error("top-level node refused the statistics of %s: %s", day, reply.body)
        return stored

    async def round(self) -> int:
        """Register if needed, deliver everything pending, pull routes and report
        the daily statistics when due."""
        if not self.registered:
            await self.register()
        delivered = 0
        while moved := await self.deliver_batch():
            delivered += moved
        if self.clock() >= self._routes_due or delivered:
            await self.pull_routes()
            self._routes_due = self.clock() + ROUTES_EVERY_SECONDS
        if self.clock() >= self._stats_due:
            await self.report_stats()
            self._stats_due = self.clock() + STATS_EVERY_SECONDS
        await self.update_gauges()
        return delivered

    async def update_gauges(self) -> None:
        """Backlog, lag and last success from the database: true after a restart
        too, and while the top-level node is away (when they matter most)."""
        async with read_transaction(self.db) as conn:
            counts = await store.outbox_counts(conn)
            last_success = (await store.sync_state(conn)).get("last_success")
        SYNC_LAST_SUCCESS.set(_timestamp(last_success) if last_success else 0)
        SYNC_BACKLOG.set(counts.pending)
        SYNC_PARKED_BACKLOG.set(counts.parked)
        lag = 0.0
        if counts.oldest_pending is not None:
            lag = max(0.0, self.clock() - counts.oldest_pending.timestamp())
        SYNC_LAG.set(lag)

    async def _note_waiting(self, until: datetime | None) -> None:
        """Keep the end of an asked wait where ``idnode sync status`` reads it;
        a database away now only costs the status line."""
        if until is None and not self._waiting_noted:
            return
        with contextlib.suppress(StorageUnavailable):
            async with write_transaction(self.db) as conn:
                await store.set_sync_state(conn, **{WAITING_UNTIL: _iso(until) if until else ""})
            self._waiting_noted = until is not None

    def _log_wait(self, exc: Unavailable, wait: Wait, until: datetime) -> None:
        """One line for each wait, saying whose schedule it follows."""
        header = exc.retry_after_header
        if wait.outcome == "unusable":
            log.warning(
                "sync: %s with an unusable Retry-After %r; retrying in %.1f s",
                exc, header, wait.seconds,
            )  # fmt: skip
        elif wait.asked:
            kept = ""
            if wait.outcome == "clamped":
                kept = f" (kept within {self.backoff.base:g}..{self.retry_after_cap:g} s)"
            log.warning(
                "sync: %s, asking to wait (Retry-After: %s); waiting %.1f s%s, until %s",
                exc, header, wait.seconds, kept, _iso(until),
            )  # fmt: skip
        else:
            log.warning("sync: %s; retrying in %.1f s", exc, wait.seconds)

    async def run(self, stop: asyncio.Event, *, idle: float = IDLE_SECONDS) -> None:
        while not stop.is_set():
            try:
                await self.round()
                self.backoff.reset()
                await self._note_waiting(None)
                seconds = idle
            except Unavailable as exc:
                wait = wait_after(exc, self.backoff, self.retry_after_cap)
                seconds = wait.seconds
                until = datetime.now(UTC) + timedelta(seconds=seconds)
                self._log_wait(exc, wait, until)
                await self._note_waiting(until if wait.asked else None)
                with contextlib.suppress(StorageUnavailable):
                    await self.update_gauges()
                # Counted after the gauges, so whoever sees the retry sees the backlog too.
                if wait.outcome is not None:
                    SYNC_RETRY_AFTER.labels(wait.outcome).inc()
                SYNC_RETRIED.inc()
            except StorageUnavailable as exc:
                # The registry's database is away (a restart, a failover): the outbox
                # is still there when it is back, so the worker waits and goes on.
                seconds = self.backoff.next()
                log.warning("sync paused, registry unavailable: %s; again in %.1f s", exc, seconds)
                SYNC_RETRIED.inc()
            except Refused as exc:
                log.error("sync stopped: %s", exc)
                return
            # The stop event ends any wait at once, an hour asked by the top-level node too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
