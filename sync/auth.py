"""Signed sync requests (PROTOCOL.md §2): pure, no I/O.

A node signs each request with its Ed25519 key over the method, the path and
query, its node prefix, a timestamp, a nonce and the body's SHA-256; the
receiver checks the clock window, refuses a nonce it has seen, and verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from registry.crypto import keys
from registry.secrets import NodeKey

DOMAIN = "idnode-sync-v1"
WINDOW_SECONDS = 300
"""A request's timestamp may differ from the receiver's clock by this much."""
NONCE_MEMORY_SECONDS = 2 * WINDOW_SECONDS
MAX_NONCES = 1_000_000
NODE = "X-Idnode-Node"
TIMESTAMP = "X-Idnode-Timestamp"
NONCE = "X-Idnode-Nonce"
SIGNATURE = "X-Idnode-Signature"
HEADERS = (NODE, TIMESTAMP, NONCE, SIGNATURE)
_NONCE = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class AuthError(Exception):
    """A request that must be refused; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def signing_key(node_key: NodeKey) -> Ed25519PrivateKey:
    """The node's sync identity, the same in every process that holds the node key."""
    return Ed25519PrivateKey.from_private_bytes(node_key.derive("idnode sync signing key"))


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key(raw: bytes) -> Ed25519PublicKey:
    """From the 32 raw bytes; ValueError if they are no key."""
    return Ed25519PublicKey.from_public_bytes(raw)


def signed_text(
    method: str, path: str, node: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    lines = [DOMAIN, method.upper(), path, node, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    return "\n".join(lines).encode("utf-8")


def sign(
    key: Ed25519PrivateKey,
    method: str,
    path: str,
    node: str,
    body: bytes,
    *,
    now: float,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate this request."""
    timestamp = str(int(now))
    nonce = nonce or secrets.token_hex(16)
    signature = keys.sign(key, signed_text(method, path, node, timestamp, nonce, body))
    return {
        NODE: node,
        TIMESTAMP: timestamp,
        NONCE: nonce,
        SIGNATURE: base64.b64encode(signature).decode("ascii"),
    }


@dataclass
class NonceMemory:
    """The nonces seen per node, each kept for :data:`NONCE_MEMORY_SECONDS`."""

    max_nonces: int = MAX_NONCES
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def remember(self, node: str, nonce: str, now: float) -> bool:
        """Record a nonce; False if it was seen within the memory."""
        key = (node, nonce)
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._seen) >= self.max_nonces:
            for stale in [k for k, t in self._seen.items() if t <= now]:
                del self._seen[stale]
            if len(self._seen) >= self.max_nonces:
                # Forgetting a live nonce would let its request be replayed: refuse instead.
                raise AuthError("busy", "too many requests to remember their nonces")
        self._seen[key] = now + NONCE_MEMORY_SECONDS
        return True


def claimed_node(headers: Mapping[str, str]) -> str:
    """The node a request says it comes from; ``unsigned`` if the headers are missing."""
    missing = [name for name in HEADERS if not headers.get(name)]
    if missing:
        raise AuthError("unsigned", f"missing {', '.join(missing)}")
    return headers[NODE]


def verify(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    key: Ed25519PublicKey,
    *,
    now: float,
    nonces: NonceMemory,
) -> str:
    """Check a request against the node's public key; return the node, or raise."""
    node = claimed_node(headers)
    timestamp, nonce = headers[TIMESTAMP], headers[NONCE]
    if not _TIMESTAMP.fullmatch(timestamp) or not _NONCE.fullmatch(nonce):
        raise AuthError("unsigned", "malformed timestamp or nonce")
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        raise AuthError("stale-timestamp", f"timestamp is more than {WINDOW_SECONDS} s off")
    try:
        signature = base64.b64decode(headers[SIGNATURE], validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not keys.verify(key, signature, signed_text(method, path, node, timestamp, nonce, body)):
        raise AuthError("bad-signature", "the signature does not verify")
    # Only a verified request spends a nonce: a forger cannot block a real one.
    if not nonces.remember(node, nonce, now):
        raise AuthError("replayed", "this nonce was already used")
    return node
