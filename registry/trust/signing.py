"""The three signature algorithms of trusted resolution, over raw messages.

``RS256`` is RSASSA-PKCS1-v1_5 with SHA-256; ``DS256`` is DSA with SHA-256, the
signature DER ``(r, s)`` as Java writes it; ``SM2256`` (IDIS) is SM2 with SM3
and the distinguishing ID ``1234567812345678``, DER ``(r, s)`` too. A check
says *why* a signature fails, so a report can tell a forged signature from one
of the wrong shape.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from registry import crypto
from registry.crypto.sm2 import signature_to_raw

from .keys import PublicKey, key_kind

RS256 = "RS256"
DS256 = "DS256"
SM2256 = "SM2256"
ALGORITHMS = (RS256, DS256, SM2256)
KEY_KIND_OF = {RS256: "RSA", DS256: "DSA", SM2256: "SM2"}
SM2_DEFAULT_ID = b"1234567812345678"
"""The SM2 distinguishing ID of a JWS (GB/T 32918 default; the IDIS SDK uses it)."""


class SigningError(ValueError):
    """A key that cannot make the signature asked for."""


@runtime_checkable
class Sm2Signer(Protocol):
    """An SM2 private key able to sign with a distinguishing ID (DER ``r, s``):
    :class:`registry.crypto.Sm2PrivateKey`, or a hardware signer with its interface."""

    def public_key(self) -> crypto.Sm2PublicKey: ...

    def sign(self, message: bytes, distinguishing_id: bytes) -> bytes: ...


PrivateKey = rsa.RSAPrivateKey | dsa.DSAPrivateKey | crypto.Sm2PrivateKey | Sm2Signer


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """The JWS ``alg`` a key signs with."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return RS256
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return DS256
    if isinstance(key, crypto.Sm2PublicKey | crypto.Sm2PrivateKey | Sm2Signer):
        return SM2256
    raise SigningError(f"no JWS algorithm for a {type(key).__name__}")


def sign_message(private_key: PrivateKey, message: bytes) -> bytes:
    """The signature of ``message`` in the algorithm of the key."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, dsa.DSAPrivateKey):
        return private_key.sign(message, hashes.SHA256())
    if isinstance(private_key, crypto.Sm2PrivateKey | Sm2Signer):
        return private_key.sign(message, SM2_DEFAULT_ID)
    raise SigningError(f"cannot sign with a {type(private_key).__name__}")


def signature_problem(alg: str, key: PublicKey, message: bytes, signature: bytes) -> str | None:
    """None when ``signature`` is ``alg``'s signature of ``message`` by ``key``;
    otherwise why not, in words for a report."""
    wanted = KEY_KIND_OF.get(alg)
    if wanted is None:
        return f"unsupported algorithm {alg!r}"
    if key_kind(key) != wanted:
        return f"{alg} needs a {wanted} key; the signer's key is {key_kind(key)}"
    if isinstance(key, rsa.RSAPublicKey):
        size = (key.key_size + 7) // 8
        if len(signature) != size:
            return f"RS256 signature is {len(signature)} bytes; the signer's key makes {size}"
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "RS256 signature does not match"
        return None
    if isinstance(key, dsa.DSAPublicKey):
        try:
            decode_dss_signature(signature)
        except ValueError:
            return "DS256 signature is not DER (r, s)"
        try:
            key.verify(signature, message, hashes.SHA256())
        except InvalidSignature:
            return "DS256 signature does not match"
        return None
    return _sm2_problem(key, message, signature)


def _sm2_problem(key: crypto.Sm2PublicKey, message: bytes, signature: bytes) -> str | None:
    if len(signature) != 64:  # raw r || s is accepted too, as hardware signers write it
        try:
            signature_to_raw(signature)
        except crypto.CryptoError:
            return "SM2256 signature is neither DER (r, s) nor 64-byte r||s"
    try:
        good = key.verify(signature, message, SM2_DEFAULT_ID)
    except crypto.CryptoError as exc:
        return f"SM2256 signatures cannot be checked here: {exc}"
    return None if good else "SM2256 signature does not match"
