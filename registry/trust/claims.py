"""The claims of ``HS_CERT`` and ``HS_SIGNATURE`` payloads, typed.

A certificate says "the key at ``sub`` is this ``publicKey`` and may sign for
``perms``", signed by ``iss``; a signature says "these are the digests of the
values of handle ``sub``", signed by ``iss``. Both are JWT claim sets with the
HANDLE.NET additions; the IDIS certificate fields (``org``, ``sn``, ``exts``,
``ca``…) are kept in :attr:`Claims.extra`. Pure: JSON in, dataclasses out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .keys import KeyFormatError, PublicKey, key_from_jwk, key_to_jwk

EVERYTHING = "everything"
THIS_HANDLE = "thisHandle"
DERIVED_PREFIXES = "derivedPrefixes"
HANDLES_UNDER_THIS_PREFIX = "handlesUnderThisPrefix"
PERMS = (EVERYTHING, THIS_HANDLE, DERIVED_PREFIXES, HANDLES_UNDER_THIS_PREFIX)
_KNOWN = ("iss", "sub", "exp", "nbf", "iat", "perms", "digests", "chain", "publicKey", "content")


class ClaimsError(ValueError):
    """A payload that is not a claim set of trusted resolution (the message says why)."""


@dataclass(frozen=True, slots=True)
class ValueRef:
    """``index:handle`` — a key at a handle, as ``iss``, ``sub`` and ``chain`` name it.
    Index 0 means "the handle as a whole" (HANDLE.NET ``ValueReference``)."""

    handle: str
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> ValueRef:
        head, sep, rest = text.partition(":")
        if sep and head.isascii() and head.isdigit() and len(head) <= 10:
            return cls(rest, int(head))
        return cls(text, 0)

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}" if self.index else self.handle


@dataclass(frozen=True, slots=True)
class Permission:
    """What a certified key may sign for: ``perm`` over ``handle`` (none for ``everything``)."""

    perm: str
    handle: str | None = None

    def to_json(self) -> dict[str, str]:
        return (
            {"perm": self.perm}
            if self.handle is None
            else {"handle": self.handle, "perm": self.perm}
        )


@dataclass(frozen=True, slots=True)
class ValueDigest:
    index: int
    digest: str
    """Standard base64 of the digest, as the claim spells it."""


@dataclass(frozen=True, slots=True)
class Digests:
    """The ``digests`` claim: one digest per signed value, all with ``alg``."""

    alg: str
    digests: tuple[ValueDigest, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "alg": self.alg,
            "digests": [{"index": d.index, "digest": d.digest} for d in self.digests],
        }


@dataclass(frozen=True, slots=True)
class Claims:
    iss: str | None = None
    sub: str | None = None
    exp: int | None = None
    nbf: int | None = None
    iat: int | None = None
    perms: tuple[Permission, ...] | None = None
    digests: Digests | None = None
    chain: tuple[str, ...] | None = None
    public_key: PublicKey | None = None
    content: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Claims this node does not interpret (IDIS ``org``, ``sn``, ``exts``, ``ca``…)."""

    @property
    def self_issued(self) -> bool:
        return self.sub is not None and self.sub == self.iss

    def in_dates(self, now: float) -> bool:
        """Within ``nbf`` … ``exp`` (both inclusive, in seconds; either may be absent)."""
        if self.exp is not None and now > self.exp:
            return False
        return not (self.nbf is not None and now < self.nbf)

    def to_json(self) -> bytes:
        """The payload, compact JSON, claims in HANDLE.NET's order."""
        body: dict[str, Any] = {}
        for name in ("iss", "sub", "exp", "nbf", "iat"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.perms is not None:
            body["perms"] = [p.to_json() for p in self.perms]
        if self.digests is not None:
            body["digests"] = self.digests.to_json()
        if self.chain is not None:
            body["chain"] = list(self.chain)
        if self.public_key is not None:
            body["publicKey"] = key_to_jwk(self.public_key)
        if self.content is not None:
            body["content"] = self.content
        body.update({k: v for k, v in self.extra.items() if k not in body})
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes) -> Claims:
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            raise ClaimsError("payload is not JSON") from None
        if not isinstance(body, dict):
            raise ClaimsError("payload is not a JSON object")
        public_key = None
        if body.get("publicKey") is not None:
            try:
                public_key = key_from_jwk(body["publicKey"])
            except KeyFormatError as exc:
                raise ClaimsError(f"publicKey: {exc}") from None
        return cls(
            iss=_text(body, "iss"),
            sub=_text(body, "sub"),
            exp=_seconds(body, "exp"),
            nbf=_seconds(body, "nbf"),
            iat=_seconds(body, "iat"),
            perms=_perms(body.get("perms")),
            digests=_digests(body.get("digests")),
            chain=_chain(body.get("chain")),
            public_key=public_key,
            content=_text(body, "content"),
            extra={k: v for k, v in body.items() if k not in _KNOWN},
        )


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ClaimsError(f"{name} is not a string")


def _seconds(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimsError(f"{name} is not a number of seconds")
    if isinstance(value, float) and not value.is_integer():
        raise ClaimsError(f"{name} is not a whole number of seconds")
    if not -(2**63) <= value < 2**63:
        raise ClaimsError(f"{name} is out of range")
    return int(value)


def _perms(raw: Any) -> tuple[Permission, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ClaimsError("perms is not a list")
    perms = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("perm"), str):
            raise ClaimsError("a perms entry has no perm")
        handle = item.get("handle")
        if handle is not None and not isinstance(handle, str):
            raise ClaimsError("a perms entry's handle is not a string")
        perms.append(Permission(item["perm"], handle))
    return tuple(perms)


def _digests(raw: Any) -> Digests | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("alg"), str):
        raise ClaimsError("digests has no alg")
    items = raw.get("digests")
    if not isinstance(items, list):
        raise ClaimsError("digests has no list of digests")
    digests = []
    for item in items:
        if not isinstance(item, dict):
            raise ClaimsError("a digests entry is not an object")
        index, digest = item.get("index"), item.get("digest")
        if isinstance(index, bool) or not isinstance(index, int) or not isinstance(digest, str):
            raise ClaimsError("a digests entry needs an integer index and a digest string")
        digests.append(ValueDigest(index, digest))
    return Digests(raw["alg"], tuple(digests))


def _chain(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(link, str) for link in raw):
        raise ClaimsError("chain is not a list of strings")
    return tuple(raw)
