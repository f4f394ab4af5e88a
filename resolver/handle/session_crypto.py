"""The cryptography of native sessions, as HANDLE.NET and the IDIS SDKs do it.

* Diffie-Hellman (mode 4) in the group the client sends, with bounds on its
  size; the session key is derived from the shared secret as HANDLE.NET does:
  for AES the first 32 bytes of the secret (leading zero bytes skipped), of
  which the cipher uses 16 and the MACs all 32.
* Session keys wrapped for the client (modes 1 and 3: RSA PKCS#1 v1.5 over
  ``int4 cipher ‖ key``) or unwrapped from it (mode 2), with implicit
  rejection so that the server is no padding oracle.
* Message encryption: AES-128-CBC with a random IV sent ahead of the
  ciphertext (HANDLE.NET from 2.4); SM4-CBC with the key as IV and nothing
  ahead (IDIS).
* HS_MAC: HMAC-SHA256 from 2.7, HANDLE.NET's SHA-1 constructions before, over
  what :func:`.session_codec.mac_covered` lays out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from registry.values import ValueFormatError, decode_public_key

from .codec import CodecError, Message
from .session_codec import (
    CIPHER_AES,
    CIPHER_SM4,
    DhPublicKey,
    InvalidSetup,
    mac_covered,
    split_cipher,
    with_cipher,
)

MIN_DH_BITS = 1024
MAX_DH_BITS = 4096
"""Groups a client may ask for: HANDLE.NET's clients send 1024-bit ones; past
4096 bits a key exchange costs the server more than any client needs."""
DH_EXPONENT_BITS = 320
"""The server's private exponent: twice the strength of the largest group taken."""
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 8192
SESSION_KEY_BYTES = 16
AES_DH_KEY_BYTES = 32
"""HANDLE.NET keeps 32 bytes of a Diffie-Hellman secret for an AES session."""
AES_BLOCK = 16


class CipherUnavailable(Exception):
    """A session asks for a cipher this server does not offer (DES, 3DES)."""


# --- Diffie-Hellman ----------------------------------------------------------------


def check_dh(client: DhPublicKey) -> None:
    """Refuse groups out of bounds and degenerate public values (0, 1, p-1, ≥ p):
    each would hand out a session key anyone can compute."""
    p, g, y = client.p, client.g, client.y
    if not MIN_DH_BITS <= p.bit_length() <= MAX_DH_BITS:
        raise InvalidSetup(
            f"a {p.bit_length()}-bit Diffie-Hellman group (from {MIN_DH_BITS} to {MAX_DH_BITS})"
        )
    if p % 2 == 0:
        raise InvalidSetup("the Diffie-Hellman modulus is even")
    if not 1 < g < p - 1:
        raise InvalidSetup("the Diffie-Hellman generator is out of range")
    if not 1 < y < p - 1:
        raise InvalidSetup("the Diffie-Hellman public value is out of range (0, 1 or p-1)")


def dh_exchange(client: DhPublicKey) -> tuple[DhPublicKey, int]:
    """The server's public value in the client's group, and the shared secret."""
    check_dh(client)
    private = secrets.randbits(DH_EXPONENT_BITS) | (1 << (DH_EXPONENT_BITS - 1))
    ours = DhPublicKey(pow(client.g, private, client.p), client.p, client.g)
    return ours, pow(client.y, private, client.p)


def dh_private_public(p: int, g: int) -> tuple[int, DhPublicKey]:
    """A client's key pair in a group (tests and our client)."""
    private = secrets.randbits(DH_EXPONENT_BITS) | (1 << (DH_EXPONENT_BITS - 1))
    return private, DhPublicKey(pow(g, private, p), p, g)


def dh_session_key(shared: int, p: int, cipher: int) -> bytes:
    """The session key both sides derive from the shared secret (HANDLE.NET's
    ``getKeyFromDH``): for AES, 32 bytes of the secret written to the modulus'
    length, leading zero bytes skipped as long as 32 remain."""
    if cipher != CIPHER_AES:
        raise CipherUnavailable(f"cipher {cipher} from a Diffie-Hellman secret")
    secret = shared.to_bytes((p.bit_length() + 7) // 8, "big")
    start = 0
    while start + AES_DH_KEY_BYTES < len(secret) and secret[start] == 0:
        start += 1
    return secret[start : start + AES_DH_KEY_BYTES]


# --- wrapped session keys ------------------------------------------------------------


def new_session_key(cipher: int) -> bytes:
    if cipher not in (CIPHER_AES, CIPHER_SM4):
        raise CipherUnavailable(f"no keys for cipher {cipher}")
    return os.urandom(SESSION_KEY_BYTES)


def rsa_key_of(record: bytes) -> rsa.RSAPublicKey | None:
    """The RSA key in an HS_PUBKEY record; None for another kind of key. Keys of
    absurd sizes are refused (:class:`InvalidSetup`)."""
    try:
        key = decode_public_key(record)
    except ValueFormatError as exc:
        raise InvalidSetup(f"the exchange key cannot be read: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        return None
    if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        raise InvalidSetup(f"a {key.key_size}-bit RSA key (from {MIN_RSA_BITS} to {MAX_RSA_BITS})")
    return key


def rsa_wrap(key: rsa.RSAPublicKey, cipher: int, session_key: bytes) -> bytes:
    """``int4 cipher ‖ key`` encrypted to ``key`` (RSA PKCS#1 v1.5), as HANDLE.NET
    answers modes 1 and 3 to clients from 2.2 on."""
    return key.encrypt(with_cipher(cipher, session_key), padding.PKCS1v15())


def rsa_unwrap(key: rsa.RSAPrivateKey, ciphertext: bytes, secret: bytes) -> tuple[int, bytes]:
    """The cipher and session key a client sent in op 402, encrypted to the server's
    RSA key; HANDLE.NET clients send the bare key (AES unless it is 8 or 24
    bytes), a later one may name its cipher first. A ciphertext that does not
    decrypt to a key yields a key derived from it and ``secret`` instead of an
    error (implicit rejection): no answer tells a forger whether its padding held."""
    decoy = hmac.digest(secret, ciphertext, "sha256")[:SESSION_KEY_BYTES]
    try:
        plain = key.decrypt(ciphertext, padding.PKCS1v15())
    except ValueError:
        return CIPHER_AES, decoy
    if len(plain) in (16, 32):
        return CIPHER_AES, plain
    if len(plain) in (20, 36):
        cipher, session_key = split_cipher(plain)
        if cipher == CIPHER_AES:
            return cipher, session_key
    return CIPHER_AES, decoy


# --- message encryption ----------------------------------------------------------------


def _aes(key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key[:16]), modes.CBC(iv))


def _sm4(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.SM4(key[:16]), modes.CBC(key[:16]))


def _pad(data: bytes) -> bytes:
    padder = block_padding.PKCS7(128).padder()
    return padder.update(data) + padder.finalize()


def _unpad(data: bytes) -> bytes:
    unpadder = block_padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise CodecError("the encrypted message does not decrypt") from None


def encrypt(cipher: int, key: bytes, plaintext: bytes) -> bytes:
    """What follows the envelope of an encrypted message."""
    if cipher == CIPHER_AES:
        iv = os.urandom(AES_BLOCK)
        encryptor = _aes(key, iv).encryptor()
        return iv + encryptor.update(_pad(plaintext)) + encryptor.finalize()
    if cipher == CIPHER_SM4:
        encryptor = _sm4(key).encryptor()
        return encryptor.update(_pad(plaintext)) + encryptor.finalize()
    raise CipherUnavailable(f"no encryption with cipher {cipher}")


def decrypt(cipher: int, key: bytes, ciphertext: bytes) -> bytes:
    """An encrypted message's header, body and credential (CodecError: it does not
    decrypt under this key)."""
    if cipher == CIPHER_AES:
        iv, ciphertext = ciphertext[:AES_BLOCK], ciphertext[AES_BLOCK:]
        if len(iv) < AES_BLOCK or not ciphertext or len(ciphertext) % AES_BLOCK:
            raise CodecError("an encrypted message that is no whole AES-CBC ciphertext")
        decryptor = _aes(key, iv).decryptor()
    elif cipher == CIPHER_SM4:
        if not ciphertext or len(ciphertext) % AES_BLOCK:
            raise CodecError("an encrypted message that is no whole SM4-CBC ciphertext")
        decryptor = _sm4(key).decryptor()
    else:
        raise CipherUnavailable(f"no decryption with cipher {cipher}")
    return _unpad(decryptor.update(ciphertext) + decryptor.finalize())


# --- HS_MAC ----------------------------------------------------------------------------

_KEYED_DIGESTS = {b"SHA1": "sha1", b"SHA-1": "sha1", b"\x02": "sha1", b"\x03": "sha256"}
_KEYED_DIGESTS |= {b"SHA-256": "sha256", b"SHA256": "sha256"}
_HMACS = {b"HMAC-SHA256": "sha256", b"HMAC-SHA1": "sha1", b"\x13": "sha256", b"\x12": "sha1"}


def mac(message: Message, counter: int, key: bytes, name: bytes) -> bytes | None:
    """The MAC named ``name`` over ``message`` with the session counter; None for
    a name HANDLE.NET would not compute at the message's version."""
    covered = mac_covered(message, counter, key)
    version = message.envelope.version
    if (2, 5) <= version < (2, 7):  # the key is already in the buffer: a plain digest
        digest = _KEYED_DIGESTS.get(name)
        return hashlib.new(digest, covered).digest() if digest else None
    if name in _HMACS:
        return hmac.digest(key, covered, _HMACS[name])
    digest = _KEYED_DIGESTS.get(name)
    return hashlib.new(digest, key + covered + key).digest() if digest else None


def mac_holds(message: Message, counter: int, key: bytes, name: bytes, claimed: bytes) -> bool:
    expected = mac(message, counter, key, name)
    return expected is not None and hmac.compare_digest(expected, claimed)
