"""The node's cryptography in one place, pure (no I/O): SM2, SM3 and SM4 beside RSA,
DSA, ECDSA, Ed25519, SHA and AES.

* :mod:`.sm2` — SM2 keys (``Sm2PrivateKey``, ``Sm2PublicKey``): load and write
  PEM/DER/raw, sign and verify with a user ID, encrypt and decrypt (C1C3C2), over the
  system's OpenSSL 3.
* :mod:`.keys` — every key kind: ``load_private_key``, ``load_public_key``, ``sign``,
  ``verify``.
* :mod:`.digests` — ``sm3``, hashes by their protocol names, HMAC.
* :mod:`.ciphers` — SM4-CBC and AES-CBC with PKCS#7 padding.

Every refusal is a :class:`CryptoError` (a ``ValueError``): ``BadKey``,
``BadCiphertext``, ``Unavailable``.
"""

from .errors import BadCiphertext, BadKey, CryptoError, Unavailable
from .keys import PrivateKey, PublicKey, load_private_key, load_public_key, sign, verify
from .sm2 import DEFAULT_ID, Sm2PrivateKey, Sm2PublicKey

__all__ = [
    "DEFAULT_ID",
    "BadCiphertext",
    "BadKey",
    "CryptoError",
    "PrivateKey",
    "PublicKey",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "Unavailable",
    "load_private_key",
    "load_public_key",
    "sign",
    "verify",
]
