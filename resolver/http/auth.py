"""Who is calling the Handle REST API.

``Authorization: Basic`` carries either a Handle identity — the user is the
percent-encoded ``index:handle`` (``300%3A0.NA%2F88.100``) and the password
its ``HS_SECKEY`` — or an access key (or SNMS user) and its secret.
``Authorization: Bearer`` takes an SNMS token. As in HANDLE.NET, credentials
count only over HTTPS, unless plain-HTTP authentication was explicitly
enabled (``idnode demo`` does, on loopback).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web

from registry.errors import LoginFailed, Throttled, Unauthenticated
from registry.grammar import Grammar, GrammarError
from registry.services import Actor, Registry
from registry.services.base import ChangeEvent, Services
from registry.tokens import InvalidToken, TokenIssuer

CREDENTIAL_CACHE_SECONDS = 30.0
"""A verified credential is trusted this long before it is checked again."""
_IDENTITY_USER = re.compile(r"([0-9]{1,10}):(.+)", re.S)


@dataclass
class Authenticator:
    registry: Registry
    tokens: TokenIssuer
    allow_plain_http: bool = False
    max_cached: int = 10_000
    _verified: OrderedDict[bytes, tuple[Actor, float]] = field(default_factory=OrderedDict)

    @property
    def services(self) -> Services:
        return self.registry.services

    @property
    def grammar(self) -> Grammar:
        return self.registry.services.grammar

    async def caller(self, request: web.Request) -> Actor:
        """The caller; anonymous when no credential was sent, or when it was sent
        over plain HTTP where credentials do not count. Raises
        :class:`Unauthenticated` for a credential that does not check out."""
        header = request.headers.get("Authorization", "").strip()
        remote = request.remote or ""
        if not header:
            return Actor(None, remote)
        if not request.secure and not self.allow_plain_http:
            return Actor(None, remote)  # ignored, as HANDLE.NET does (the 401 becomes 403)
        digest = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        cached = self._verified.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            actor = Actor(cached[0].principal, remote, cached[0].identity)
        else:
            actor = await self._verify(header, remote)
            self._verified[digest] = (actor, time.monotonic() + CREDENTIAL_CACHE_SECONDS)
            while len(self._verified) > self.max_cached:
                self._verified.popitem(last=False)
        self.services.admit(actor, "http")
        return actor

    def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        """A changed record may hold a changed HS_SECKEY: its identities check again.
        Access keys and users are re-checked when the short trust window ends."""
        keys = set()
        for change in events:
            if not change.event.startswith(("identifier.", "identity.")):
                continue
            try:
                keys.add(self.grammar.parse(change.subject, bare_prefix=True).key)
            except GrammarError:
                self._verified.clear()
                return
        if keys:
            for digest, (actor, _) in list(self._verified.items()):
                if actor.identity is not None and actor.identity.key in keys:
                    del self._verified[digest]

    async def _verify(self, header: str, remote: str) -> Actor:
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            try:
                claims = self.tokens.verify(credentials.strip())
            except InvalidToken as exc:
                self.services.auth_failed("token")
                raise Unauthenticated(f"Authentication failed: {exc}") from None
            principal = await self.registry.accounts.principal(
                claims.user_id,
                claims.via,
                access_key_id=claims.access_key_id,
                fingerprint=claims.fingerprint,
            )
            return Actor(principal, remote)
        if scheme != "basic":
            raise Unauthenticated(
                f"unsupported authorization scheme {scheme!r}; use Basic (index:handle or "
                "access key) or Bearer"
            )
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise Unauthenticated("malformed Basic credentials") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthenticated("malformed Basic credentials")
        user = unquote(user)
        match = _IDENTITY_USER.fullmatch(user)
        if match or "/" in user:
            index, handle = (int(match.group(1)), match.group(2)) if match else (0, user)
            identity = await self.registry.handles.authenticate(
                handle, index, password.encode("utf-8"), remote=remote
            )
            return Actor(None, remote, identity)
        try:
            login = await self.registry.accounts.login(user, password, remote=remote)
        except Throttled:
            raise
        except LoginFailed:
            raise Unauthenticated("Authentication failed") from None
        return Actor(login.principal, remote)
