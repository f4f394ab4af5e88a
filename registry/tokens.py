"""Bearer tokens of the admin API: HS256 JWTs signed with a key derived from
the node key, so every process and host sharing the key accepts them."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from .secrets import NodeKey

TOKEN_TTL_SECONDS = 24 * 3600
_ALGORITHM = "HS256"
_ISSUER = "idnode"


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    via: str
    expires_at: int
    access_key_id: int | None
    """The access key the token was issued for, if it was issued for one."""
    fingerprint: str
    """Fingerprint of the credential's secret at issue time."""


class TokenIssuer:
    def __init__(self, key: NodeKey, *, ttl_seconds: int = TOKEN_TTL_SECONDS) -> None:
        self._secret = key.derive("idnode bearer token")
        self.ttl_seconds = ttl_seconds

    def issue(
        self,
        user_id: int,
        via: str,
        *,
        fingerprint: str,
        access_key_id: int | None = None,
        now: float | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": _ISSUER,
            "sub": str(user_id),
            "via": via,
            "kid": access_key_id,
            "cfp": fingerprint,
            "iat": issued,
            "exp": issued + self.ttl_seconds,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str, *, now: float | None = None) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "cfp"], "verify_exp": now is None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        if now is not None and claims["exp"] <= now:
            raise InvalidToken("token expired")
        try:
            user_id = int(claims["sub"])
        except ValueError:
            raise InvalidToken("invalid token subject") from None
        key_id = claims.get("kid")
        if key_id is not None and not isinstance(key_id, int):
            raise InvalidToken("invalid token key id")
        return TokenClaims(
            access_key_id=key_id,
            fingerprint=str(claims["cfp"]),
            user_id=user_id,
            via=str(claims.get("via", "")),
            expires_at=int(claims["exp"]),
        )
