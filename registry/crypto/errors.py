"""The exceptions of the cryptography module: one family, all ``ValueError``s, so a
caller that already refuses bad input on ``ValueError`` keeps doing so."""

from __future__ import annotations


class CryptoError(ValueError):
    """Input the cryptography module cannot use: a malformed key, ciphertext or parameter."""


class BadKey(CryptoError):
    """Bytes that are not a usable key: malformed PEM or DER, a wrong curve or
    algorithm, a point off the curve, a scalar out of range."""


class BadCiphertext(CryptoError):
    """A ciphertext that does not decrypt: malformed, truncated, or not for this key."""


class Unavailable(CryptoError):
    """The system's OpenSSL cannot do this (missing, older than 3.0, or without SM2)."""
