"""Block ciphers the native protocol's sessions use: SM4 and AES in CBC mode with
PKCS#7 padding (IDIS session algorithm 4 is SM4-CBC; HANDLE.NET's is AES-128-CBC).
Pure, over ``cryptography``."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import BadCiphertext, CryptoError

BLOCK = 16
"""Bytes in an SM4 or AES block (and in the IV)."""

_CIPHERS = {"SM4": algorithms.SM4, "AES": algorithms.AES}
_KEY_SIZES = {"SM4": (16,), "AES": (16, 24, 32)}


def _cipher(name: str, key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    kind = name.upper()
    if kind not in _CIPHERS:
        raise CryptoError(f"unknown cipher {name!r} (SM4 or AES)")
    if len(key) not in _KEY_SIZES[kind]:
        raise CryptoError(f"{kind} key of {len(key)} bytes")
    if len(iv) != BLOCK:
        raise CryptoError(f"CBC IV of {len(iv)} bytes (expected {BLOCK})")
    return Cipher(_CIPHERS[kind](key), modes.CBC(iv))


def cbc_encrypt(name: str, key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """``plaintext`` padded (PKCS#7) and encrypted with cipher ``name`` (SM4, AES) in CBC."""
    padder = padding.PKCS7(BLOCK * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = _cipher(name, key, iv).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def cbc_decrypt(name: str, key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """The plaintext of :func:`cbc_encrypt`; BadCiphertext if the length or padding is wrong
    (the one message for both, so a padding oracle learns nothing more)."""
    cipher = _cipher(name, key, iv)
    if not ciphertext or len(ciphertext) % BLOCK:
        raise BadCiphertext("ciphertext does not decrypt")
    decryptor = cipher.decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise BadCiphertext("ciphertext does not decrypt") from None


def sm4_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    return cbc_encrypt("SM4", key, iv, plaintext)


def sm4_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    return cbc_decrypt("SM4", key, iv, ciphertext)


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    return cbc_encrypt("AES", key, iv, plaintext)


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    return cbc_decrypt("AES", key, iv, ciphertext)


def sm4_ecb_block(key: bytes, block: bytes) -> bytes:
    """One SM4 block encrypted alone (the standard's example; no padding, no mode)."""
    if len(key) != BLOCK or len(block) != BLOCK:
        raise CryptoError("SM4 key and block are 16 bytes")
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305 - one block
    return encryptor.update(block) + encryptor.finalize()
