"""The node's side of the sync protocol: signed requests to the top-level node."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import auth

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    """The decoded JSON, or None when the answer was not JSON."""
    retry_after: float | None = None
    """Seconds the top-level node asked to wait (``Retry-After``), from when the
    answer came; None when it asked nothing or said something unusable."""
    retry_after_header: str | None = None
    """``Retry-After`` as sent, to tell an unusable value from none."""


def parse_retry_after(value: str, now: float) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3) as seconds from ``now`` (Unix time):
    delta-seconds, or an HTTP date in any of its three forms (a date already
    past is 0). None for anything else; a value too large for a float is
    infinite, for the caller to clamp."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value)) if len(value) <= 15 else math.inf
    try:
        moment = parsedate_to_datetime(value)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    if moment.tzinfo is None:  # the asctime form and "-0000" carry no zone: HTTP dates are GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


class SyncClient:
    def __init__(
        self,
        base_url: str,
        node: str,
        key: Ed25519PrivateKey,
        *,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.node = node
        self.key = key
        self.session = session
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def signed_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        headers = auth.sign(self.key, method, path, self.node, body, now=self.clock())
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    async def call(self, method: str, path: str, payload: Any = None) -> Reply:
        """One signed request; network failures raise :class:`aiohttp.ClientError`
        or :class:`TimeoutError`, like a 503 to the caller."""
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = self.signed_headers(method, path, body)
        async with self.session.request(
            method, self.base_url + path, data=body or None, headers=headers, timeout=self.timeout
        ) as response:
            raw = await response.read()
            retry_after = response.headers.get("Retry-After")
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        wait = None if retry_after is None else parse_retry_after(retry_after, self.clock())
        return Reply(response.status, decoded, wait, retry_after)

    async def register(self, site: bytes, name: str) -> Reply:
        public = auth.public_bytes(self.key.public_key())
        return await self.call(
            "POST",
            "/sync/v1/nodes",
            {
                "node": self.node,
                "publicKey": base64.b64encode(public).decode("ascii"),
                "site": base64.b64encode(site).decode("ascii"),
                "name": name,
            },
        )
