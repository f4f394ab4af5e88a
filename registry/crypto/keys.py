"""Every kind of key the node meets, behind one loader and one sign/verify pair.

RSA (PKCS#1 v1.5), DSA and ECDSA (DER signatures) and Ed25519 through
``cryptography``; SM2 through :mod:`.sm2` (``cryptography`` cannot load a key on
the SM2 curve, so such keys are recognised first). Pure, no I/O.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from . import der
from .errors import BadKey, CryptoError
from .sm2 import DEFAULT_ID, SM2_CURVE_OID, Sm2PrivateKey, Sm2PublicKey, UserId

PublicKey = (
    rsa.RSAPublicKey
    | dsa.DSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | Sm2PublicKey
)
PrivateKey = (
    rsa.RSAPrivateKey
    | dsa.DSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | Sm2PrivateKey
)

_PRIVATE_TYPES = (
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
)
_PUBLIC_TYPES = (
    rsa.RSAPublicKey,
    dsa.DSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
)


def kind(key: PrivateKey | PublicKey) -> str:
    """``RSA``, ``DSA``, ``EC``, ``Ed25519`` or ``SM2``."""
    if isinstance(key, Sm2PrivateKey | Sm2PublicKey):
        return "SM2"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "DSA"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "EC"
    return "Ed25519"


def names_sm2(data: bytes) -> bool:
    """Does this DER key (SubjectPublicKeyInfo, PKCS#8 or SEC1) name the SM2 curve?"""
    try:
        body = der.DerReader(data, "key").sequence()
        if body.peek() == der.INTEGER:
            version = body.integer()
            if version == 1 and body.peek() == der.OCTET_STRING:  # SEC1
                body.octet_string()
                parameters = body.optional(der.CONTEXT_0)
                return parameters is not None and _has_sm2_oid(parameters)
        return _has_sm2_oid(body.element(der.SEQUENCE))  # the AlgorithmIdentifier
    except der.DerError:
        return False


def _has_sm2_oid(content: bytes) -> bool:
    reader = der.DerReader(content, "algorithm")
    while reader.peek() == der.OBJECT_IDENTIFIER:
        if reader.oid() == SM2_CURVE_OID:
            return True
    return False


def _der_of(data: bytes, what: str) -> tuple[str | None, bytes]:
    if not der.is_pem(data):
        return None, bytes(data)
    try:
        return der.pem_decode(data)
    except der.DerError as exc:
        raise BadKey(f"{what}: {exc}") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A private key from PEM or DER (PKCS#8, or the traditional RSA, DSA, EC and SEC1
    forms); BadKey saying why if it is none we can use."""
    label, body = _der_of(data, "private key")
    if label == "SM2 PRIVATE KEY" or names_sm2(body):
        if password is not None or label == "ENCRYPTED PRIVATE KEY":
            raise BadKey("encrypted SM2 private keys are not supported")
        return Sm2PrivateKey.load(data)
    try:
        if label is None:
            key = serialization.load_der_private_key(body, password)
        else:
            key = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"not a usable private key: {_one_line(exc)}") from None
    if not isinstance(key, _PRIVATE_TYPES):
        raise BadKey(f"unsupported private key type {type(key).__name__}")
    return key


def load_public_key(data: bytes) -> PublicKey:
    """A public key from PEM or DER SubjectPublicKeyInfo (``PUBLIC KEY``, or the
    traditional ``RSA PUBLIC KEY``); BadKey saying why if it is none we can use."""
    label, body = _der_of(data, "public key")
    if names_sm2(body):
        return Sm2PublicKey.load(data)
    try:
        if label is None:
            key = serialization.load_der_public_key(body)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"not a usable public key: {_one_line(exc)}") from None
    if not isinstance(key, _PUBLIC_TYPES):
        raise BadKey(f"unsupported public key type {type(key).__name__}")
    return key


def public_key_of(key: PrivateKey) -> PublicKey:
    return key.public_key()


def public_der(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo."""
    if isinstance(key, Sm2PublicKey):
        return key.to_der()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_pem(key: PublicKey) -> bytes:
    """PEM SubjectPublicKeyInfo (64 columns, LF)."""
    if isinstance(key, Sm2PublicKey):
        return key.to_pem()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: PrivateKey) -> bytes:
    """Unencrypted PEM PKCS#8, for a key file of mode 0600."""
    if isinstance(key, Sm2PrivateKey):
        return key.to_pem()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _checked_hash(
    key: PrivateKey | PublicKey, algorithm: hashes.HashAlgorithm | None
) -> hashes.HashAlgorithm:
    chosen = algorithm or hashes.SHA256()
    if isinstance(chosen, hashes.SM3):
        raise CryptoError(f"{kind(key)} keys do not sign with SM3")
    return chosen


def sign(
    key: PrivateKey,
    data: bytes,
    algorithm: hashes.HashAlgorithm | None = None,
    *,
    user_id: UserId = DEFAULT_ID,
) -> bytes:
    """A signature of ``data``: RSA PKCS#1 v1.5, DSA and ECDSA DER ``(r, s)`` with
    ``algorithm`` (SHA-256 if None); Ed25519 (its own hash); SM2 with SM3 under
    ``user_id``, DER."""
    if isinstance(key, Sm2PrivateKey):
        if algorithm is not None and not isinstance(algorithm, hashes.SM3):
            raise CryptoError(f"SM2 signs with SM3, not {algorithm.name}")
        return key.sign(data, user_id)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    chosen = _checked_hash(key, algorithm)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), chosen)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(chosen))
    return key.sign(data, chosen)


def verify(
    key: PublicKey,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | None = None,
    *,
    user_id: UserId = DEFAULT_ID,
) -> bool:
    """Does ``signature`` sign ``data`` (see :func:`sign`)? False for a wrong or
    malformed signature, or a hash the key does not sign with."""
    if isinstance(key, Sm2PublicKey):
        if algorithm is not None and not isinstance(algorithm, hashes.SM3):
            return False
        return key.verify(signature, data, user_id)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        chosen = _checked_hash(key, algorithm)
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), chosen)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(chosen))
        else:
            key.verify(signature, data, chosen)
    except (InvalidSignature, CryptoError, UnsupportedAlgorithm, ValueError):
        return False
    return True
