"""Public keys as trusted resolution carries them: the ``publicKey`` claim of a
certificate (a JWK), and the PEM files an operator configures as trust roots.

Pure: bytes and JSON in, key objects out, and back. RSA and DSA keys are
``cryptography`` objects; SM2 keys are :class:`registry.crypto.Sm2PublicKey`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from registry import crypto


class KeyFormatError(ValueError):
    """A key (JWK, PEM or DER) that cannot be read."""


class Sm2PublicKey(crypto.Sm2PublicKey):
    """An SM2 public key (:class:`registry.crypto.Sm2PublicKey`), also under the
    names this package gave it first: ``from_spki``, ``spki`` and ``pem``."""

    __slots__ = ()

    @classmethod
    def from_spki(cls, der: bytes) -> Sm2PublicKey:
        """From DER SubjectPublicKeyInfo (what Java's ``getEncoded`` writes)."""
        try:
            return cls(crypto.Sm2PublicKey.from_der(der).point)
        except crypto.CryptoError as exc:
            raise KeyFormatError(f"not the SubjectPublicKeyInfo of an SM2 key: {exc}") from None

    def spki(self) -> bytes:
        return self.to_der()

    def pem(self) -> bytes:
        return self.to_pem()


PublicKey = rsa.RSAPublicKey | dsa.DSAPublicKey | crypto.Sm2PublicKey


def key_kind(key: PublicKey) -> str:
    """``RSA``, ``DSA`` or ``SM2``: the JWK ``kty`` and the family of the JWS ``alg``."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA"
    return "SM2"


def same_key(a: PublicKey, b: PublicKey) -> bool:
    """Whether two keys are the same public key, whatever their encodings."""
    if isinstance(a, rsa.RSAPublicKey) and isinstance(b, rsa.RSAPublicKey):
        return a.public_numbers() == b.public_numbers()
    if isinstance(a, dsa.DSAPublicKey) and isinstance(b, dsa.DSAPublicKey):
        return a.public_numbers() == b.public_numbers()
    if isinstance(a, crypto.Sm2PublicKey) and isinstance(b, crypto.Sm2PublicKey):
        return a.point == b.point
    return False


# --- base64url integers ------------------------------------------------------------

_B64URL = re.compile(r"[A-Za-z0-9_\-]*={0,2}")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Base64url, padded or not; anything outside its alphabet is refused."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise KeyFormatError(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not base64url") from None


def _unsigned_bytes(number: int) -> bytes:
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


def _number(jwk: dict[str, Any], name: str, kty: str) -> int:
    if name not in jwk:
        raise KeyFormatError(f"{kty} publicKey lacks {name!r}")
    raw = b64url_decode(jwk[name], f"publicKey {name!r}")
    if not raw:
        raise KeyFormatError(f"publicKey {name!r} is empty")
    return int.from_bytes(raw, "big")


# --- JWK (the ``publicKey`` claim) --------------------------------------------------


def key_to_jwk(key: PublicKey) -> dict[str, str]:
    """The ``publicKey`` claim as HANDLE.NET and the IDIS SDK write it: unsigned
    big-endian numbers in base64url; SM2 as its SubjectPublicKeyInfo in ``d``."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "kty": "RSA",
            "n": b64url_encode(_unsigned_bytes(numbers.n)),
            "e": b64url_encode(_unsigned_bytes(numbers.e)),
        }
    if isinstance(key, dsa.DSAPublicKey):
        dnum = key.public_numbers()
        params = dnum.parameter_numbers
        return {
            "kty": "DSA",
            "y": b64url_encode(_unsigned_bytes(dnum.y)),
            "p": b64url_encode(_unsigned_bytes(params.p)),
            "q": b64url_encode(_unsigned_bytes(params.q)),
            "g": b64url_encode(_unsigned_bytes(params.g)),
        }
    return {"kty": "SM2", "d": b64url_encode(key.to_der())}


def key_from_jwk(jwk: Any) -> PublicKey:
    """A ``publicKey`` claim: RSA ``n``/``e``, DSA ``y``/``p``/``q``/``g``, SM2 as
    SubjectPublicKeyInfo in ``d`` (IDIS SDK) or as coordinates ``x``/``y``."""
    if not isinstance(jwk, dict):
        raise KeyFormatError("publicKey is not a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise KeyFormatError("publicKey has no kty")
    kind = kty.upper()
    try:
        if kind == "RSA":
            n, e = _number(jwk, "n", kind), _number(jwk, "e", kind)
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kind == "DSA":
            y, p, q, g = (_number(jwk, name, kind) for name in ("y", "p", "q", "g"))
            return dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)).public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, KeyFormatError):
            raise
        raise KeyFormatError(f"{kind} publicKey numbers are not a key: {exc}") from None
    if kind == "SM2":
        if "d" in jwk:
            return Sm2PublicKey.from_spki(b64url_decode(jwk["d"], "publicKey 'd'"))
        x_bytes = b64url_decode(jwk.get("x", ""), "publicKey 'x'")
        y_bytes = b64url_decode(jwk.get("y", ""), "publicKey 'y'")
        if len(x_bytes) != 32 or len(y_bytes) != 32:
            raise KeyFormatError("SM2 publicKey needs 'd', or 32-byte 'x' and 'y'")
        try:
            return Sm2PublicKey(b"\x04" + x_bytes + y_bytes)
        except crypto.CryptoError as exc:
            raise KeyFormatError(f"SM2 publicKey: {exc}") from None
    raise KeyFormatError(f"unsupported publicKey kty {kty!r}")


# --- PEM and DER (trust-root keys) --------------------------------------------------


def load_public_key(data: bytes) -> PublicKey:
    """A public key from PEM (``BEGIN PUBLIC KEY``) or DER SubjectPublicKeyInfo:
    RSA, DSA or SM2, the kinds a JWS of trusted resolution is signed with."""
    try:
        key = crypto.load_public_key(data)
    except crypto.CryptoError as exc:
        raise KeyFormatError(str(exc)) from None
    if not isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey | crypto.Sm2PublicKey):
        raise KeyFormatError(f"unsupported public key type {type(key).__name__}")
    return key


def public_key_pem(key: PublicKey) -> bytes:
    """PEM SubjectPublicKeyInfo of any supported key."""
    if isinstance(key, crypto.Sm2PublicKey):
        return key.to_pem()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
