"""Public keys as trusted resolution carries them: the ``publicKey`` claim of a
certificate (a JWK), and the PEM files an operator configures as trust roots.

Pure: bytes and JSON in, key objects out, and back. RSA and DSA keys are
``cryptography`` objects; SM2 keys (curve 1.2.156.10197.1.301, which
``cryptography`` cannot load) are :class:`Sm2PublicKey`, the uncompressed point.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa


class KeyFormatError(ValueError):
    """A key (JWK, PEM or DER) that cannot be read."""


SM2_CURVE_OID = "1.2.156.10197.1.301"
_SPKI_SM2_HEAD = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
"""SubjectPublicKeyInfo of an SM2 key up to its point: id-ecPublicKey with the SM2
curve, then a 66-byte BIT STRING (no unused bits, ``04 || x || y``)."""
_SPKI_SM2_ALGORITHM_HEAD = bytes.fromhex("3059301306082a811ccf5501822d06082a811ccf5501822d034200")
"""The same with the algorithm also spelt as the SM2 OID, as some Chinese toolkits write it."""


@dataclass(frozen=True, slots=True)
class Sm2PublicKey:
    """An SM2 public key: the uncompressed point ``04 || x || y`` (65 bytes)."""

    point: bytes

    def __post_init__(self) -> None:
        if len(self.point) != 65 or self.point[0] != 4:
            raise KeyFormatError("an SM2 public key is the 65-byte uncompressed point 04||x||y")

    @classmethod
    def from_spki(cls, der: bytes) -> Sm2PublicKey:
        """From DER SubjectPublicKeyInfo (what Java's ``getEncoded`` writes)."""
        for head in (_SPKI_SM2_HEAD, _SPKI_SM2_ALGORITHM_HEAD):
            if der.startswith(head) and len(der) == len(head) + 65:
                return cls(der[len(head) :])
        raise KeyFormatError("not the SubjectPublicKeyInfo of an SM2 key (uncompressed point)")

    def spki(self) -> bytes:
        return _SPKI_SM2_HEAD + self.point

    def pem(self) -> bytes:
        body = base64.encodebytes(self.spki()).replace(b"\n", b"")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + b"\n-----END PUBLIC KEY-----\n"


PublicKey = rsa.RSAPublicKey | dsa.DSAPublicKey | Sm2PublicKey


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
    if isinstance(a, Sm2PublicKey) and isinstance(b, Sm2PublicKey):
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
    return {"kty": "SM2", "d": b64url_encode(key.spki())}


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
        return Sm2PublicKey(b"\x04" + x_bytes + y_bytes)
    raise KeyFormatError(f"unsupported publicKey kty {kty!r}")


# --- PEM and DER (trust-root keys) --------------------------------------------------

_PEM_BLOCK = re.compile(
    rb"-----BEGIN PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END PUBLIC KEY-----"
)


def load_public_key(data: bytes) -> PublicKey:
    """A public key from PEM (``BEGIN PUBLIC KEY``) or DER SubjectPublicKeyInfo:
    RSA, DSA, or SM2 (which ``cryptography`` cannot load, so it is read here)."""
    text = data.strip()
    der: bytes | None = None
    if text.startswith(b"-----"):
        match = _PEM_BLOCK.fullmatch(text)
        if match:
            try:
                der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
            except (binascii.Error, ValueError):
                raise KeyFormatError("PEM public key body is not base64") from None
    else:
        der = text
    if der is not None and (
        der.startswith(_SPKI_SM2_HEAD) or der.startswith(_SPKI_SM2_ALGORITHM_HEAD)
    ):
        return Sm2PublicKey.from_spki(der)
    try:
        key = (
            serialization.load_der_public_key(der)
            if der is not None
            else serialization.load_pem_public_key(text)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        raise KeyFormatError(f"unsupported public key type {type(key).__name__}")
    return key


def public_key_pem(key: PublicKey) -> bytes:
    """PEM SubjectPublicKeyInfo of any supported key."""
    if isinstance(key, Sm2PublicKey):
        return key.pem()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
