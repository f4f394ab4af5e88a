"""The cryptography of native sessions, as HANDLE.NET and the IDIS SDKs do it.

* Diffie-Hellman (mode 4) in the group the client sends, with bounds on its
  size; the session key is derived from the shared secret as HANDLE.NET does:
  for AES the first 32 bytes of the secret (leading zero bytes skipped), of
  which the cipher uses 16 and the MACs all 32.
* Session keys wrapped for the client (modes 1 and 3): ``int4 cipher ‖ key``
  encrypted to its RSA key (PKCS#1 v1.5, an AES key, as HANDLE.NET) or to its
  SM2 key (C1C3C2, an SM4 key, as IDIS "cipher HDL"); or unwrapped from it
  (mode 2), with implicit rejection so that the server is no padding oracle.
* Message encryption: AES-128-CBC with a random IV sent ahead of the
  ciphertext (HANDLE.NET from 2.4); SM4-CBC with the key as IV and nothing
  ahead (IDIS).
* HS_MAC: HMAC-SHA256 from 2.7, HANDLE.NET's SHA-1 constructions before, over
  what :func:`.session_codec.mac_covered` lays out.

The primitives are :mod:`registry.crypto`'s.
"""

from __future__ import annotations

import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from registry.crypto import BadCiphertext, CryptoError, Sm2PublicKey, ciphers, digests
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
MAX_DH_BITS = 2048
"""Groups a client may ask for: HANDLE.NET's clients send 1024-bit ones (RFC 2409's
second group). A 2048-bit exchange costs the server some 5 ms of one core, a
4096-bit one 25 ms: more than a session is worth to anyone but a flooder."""
DH_EXPONENT_BITS = 256
"""The server's private exponent: twice the strength of the largest group taken."""
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 8192
MAX_RSA_EXPONENT_BITS = 64
"""A public exponent past this (OpenSSL's own bound for large keys) would make each
encryption a full-size exponentiation."""
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


def wrap_new_key(record: bytes) -> tuple[int, bytes, bytes] | None:
    """A fresh session key for the holder of the HS_PUBKEY ``record``: its cipher, the
    key, and ``int4 cipher ‖ key`` encrypted to the record's key — AES under RSA
    PKCS#1 v1.5 (HANDLE.NET from 2.2), SM4 under SM2 C1C3C2 (IDIS). None for a key
    that cannot encrypt (DSA); keys that cannot be read, or of absurd sizes, are
    refused (:class:`InvalidSetup`)."""
    try:
        key = decode_public_key(record)
    except ValueFormatError as exc:
        raise InvalidSetup(f"the exchange key cannot be read: {exc}") from None
    if isinstance(key, Sm2PublicKey):
        session_key = new_session_key(CIPHER_SM4)
        return CIPHER_SM4, session_key, key.encrypt(with_cipher(CIPHER_SM4, session_key))
    if not isinstance(key, rsa.RSAPublicKey):
        return None
    if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        raise InvalidSetup(f"a {key.key_size}-bit RSA key (from {MIN_RSA_BITS} to {MAX_RSA_BITS})")
    if key.public_numbers().e.bit_length() > MAX_RSA_EXPONENT_BITS:
        raise InvalidSetup(f"an RSA public exponent over {MAX_RSA_EXPONENT_BITS} bits")
    session_key = new_session_key(CIPHER_AES)
    wrapped = key.encrypt(with_cipher(CIPHER_AES, session_key), padding.PKCS1v15())
    return CIPHER_AES, session_key, wrapped


def rsa_unwrap(key: rsa.RSAPrivateKey, ciphertext: bytes, secret: bytes) -> tuple[int, bytes]:
    """The cipher and session key a client sent in op 402, encrypted to the server's
    RSA key; HANDLE.NET clients send the bare key (AES unless it is 8 or 24
    bytes), a later one may name its cipher first. A ciphertext that does not
    decrypt to a key yields a key derived from it and ``secret`` instead of an
    error (implicit rejection): no answer tells a forger whether its padding held."""
    decoy = digests.hmac(hashes.SHA256(), secret, ciphertext)[:SESSION_KEY_BYTES]
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


def encrypt(cipher: int, key: bytes, plaintext: bytes) -> bytes:
    """What follows the envelope of an encrypted message: AES-128-CBC behind a
    random IV (the cipher keys with the first 16 bytes of a longer session key,
    as HANDLE.NET's does), or SM4-CBC with the key as IV."""
    if cipher == CIPHER_AES:
        iv = os.urandom(AES_BLOCK)
        return iv + ciphers.aes_cbc_encrypt(key[:16], iv, plaintext)
    if cipher == CIPHER_SM4:
        return ciphers.sm4_cbc_encrypt(key[:16], key[:16], plaintext)
    raise CipherUnavailable(f"no encryption with cipher {cipher}")


def decrypt(cipher: int, key: bytes, ciphertext: bytes) -> bytes:
    """An encrypted message's header, body and credential (CodecError: it does not
    decrypt under this key)."""
    try:
        if cipher == CIPHER_AES:
            iv, rest = ciphertext[:AES_BLOCK], ciphertext[AES_BLOCK:]
            if len(iv) < AES_BLOCK:
                raise BadCiphertext("no IV")
            return ciphers.aes_cbc_decrypt(key[:16], iv, rest)
        if cipher == CIPHER_SM4:
            return ciphers.sm4_cbc_decrypt(key[:16], key[:16], ciphertext)
    except CryptoError:  # BadCiphertext, or a key of the wrong size
        raise CodecError("the encrypted message does not decrypt under the session key") from None
    raise CipherUnavailable(f"no decryption with cipher {cipher}")


# --- HS_MAC ----------------------------------------------------------------------------

_HMACS: dict[bytes, type[hashes.HashAlgorithm]] = {
    b"HMAC-SHA256": hashes.SHA256,
    b"HMAC-SHA1": hashes.SHA1,
    b"\x13": hashes.SHA256,
    b"\x12": hashes.SHA1,
}


def _keyed_digest(name: bytes) -> hashes.HashAlgorithm | None:
    """A hash HANDLE.NET keys by hand (``key ‖ data ‖ key``): SHA-1 or SHA-256,
    by name or code; never MD5."""
    algorithm = digests.hash_by_name(name)
    return algorithm if algorithm is not None and algorithm.name in ("sha1", "sha256") else None


def mac(message: Message, counter: int, key: bytes, name: bytes) -> bytes | None:
    """The MAC named ``name`` over ``message`` with the session counter; None for
    a name HANDLE.NET would not compute at the message's version."""
    covered = mac_covered(message, counter, key)
    version = message.envelope.version
    keyed = _keyed_digest(name)
    if (2, 5) <= version < (2, 7):  # the key is already in the buffer: a plain digest
        return digests.digest(keyed, covered) if keyed else None
    if name in _HMACS:
        return digests.hmac(_HMACS[name](), key, covered)
    return digests.digest(keyed, key + covered + key) if keyed else None


def mac_holds(message: Message, counter: int, key: bytes, name: bytes, claimed: bytes) -> bool:
    expected = mac(message, counter, key, name)
    return expected is not None and hmac.compare_digest(expected, claimed)
