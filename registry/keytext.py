"""Public keys written as text, as the SNMS API carries them in a value, and the
``HS_PUBKEY`` data they become.

SNMS values are strings of at most 255 characters, so a key arrives as one of the
texts IDIS tools print: PEM (``PUBLIC KEY``, or ``RSA PUBLIC KEY``; line breaks
optional, as when a form field swallowed them), the base64 of the DER
SubjectPublicKeyInfo (what Java's ``getEncoded`` gives), or an SM2 point in hex as
hutool prints it (``04 ‖ x ‖ y``, ``x ‖ y`` or compressed; hex of the DER is read
too). RSA, DSA and SM2 keys are accepted — the kinds an ``HS_PUBKEY`` holds — and
written as HANDLE.NET's binary record (RSA, DSA) or the IDIS SDK's
``SM2_PUB_KEY`` record with PEM text (SM2). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from .crypto import keys
from .crypto.der import pem_encode
from .crypto.errors import CryptoError
from .crypto.sm2 import Sm2PublicKey
from .values import PublishedKey, ValueFormatError, decode_public_key, encode_public_key

_PEM = re.compile(
    r"\s*-----BEGIN ((?:RSA )?PUBLIC KEY)-----([A-Za-z0-9+/=\s]*?)-----END \1-----\s*"
)
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")
_POINT_HEX_DIGITS = (66, 128, 130)
"""An SM2 point in hex: compressed, ``x ‖ y``, uncompressed."""


class KeyTextError(ValueError):
    """Text that holds no public key an ``HS_PUBKEY`` can carry; says why."""


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _from_der(der: bytes) -> PublishedKey:
    try:
        key = keys.load_public_key(der)
    except CryptoError as exc:
        if keys.names_sm2(der):  # the SM2 reader's reason is precise (curve, point, length)
            raise KeyTextError(_one_line(exc)) from None
        raise KeyTextError("not the DER SubjectPublicKeyInfo of an RSA, DSA or SM2 key") from None
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey | Sm2PublicKey):
        return key
    raise KeyTextError(f"{keys.kind(key)} keys have no HS_PUBKEY record (RSA, DSA and SM2 have)")


def _sm2_point(raw: bytes) -> PublishedKey:
    try:
        return Sm2PublicKey(raw)
    except CryptoError as exc:
        raise KeyTextError(_one_line(exc)) from None


def parse_key_text(text: str) -> PublishedKey:
    """The key a text holds (PEM, base64 DER, hex SM2 point); KeyTextError saying why not."""
    if not text.strip():
        raise KeyTextError("empty key text")
    pem = _PEM.fullmatch(text)
    if pem is not None:
        label, body = pem.groups()
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise KeyTextError("PEM body is not base64") from None
        if label == "PUBLIC KEY":
            return _from_der(der)
        return _from_der(pem_encode(label, der))  # PKCS#1 RSA: the loader reads it as PEM
    if "-----" in text:
        raise KeyTextError("PEM text must be one BEGIN PUBLIC KEY ... END PUBLIC KEY block")
    compact = "".join(text.split())
    hex_digits = _HEX.fullmatch(compact)
    if hex_digits is not None and len(hex_digits.group(1)) % 2 == 0:
        raw = bytes.fromhex(hex_digits.group(1))
        if raw[:1] == b"\x30":
            return _from_der(raw)
        if len(hex_digits.group(1)) in _POINT_HEX_DIGITS:
            return _sm2_point(raw)
        raise KeyTextError(f"{len(raw)} bytes in hex are neither an SM2 point nor DER")
    if _BASE64.fullmatch(compact) is None:
        raise KeyTextError("not PEM, base64 or hex")
    standard = compact.rstrip("=").replace("-", "+").replace("_", "/")  # either alphabet
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyTextError("not valid base64") from None
    if raw[:1] == b"\x30":
        return _from_der(raw)
    if len(raw) in (33, 64, 65):
        return _sm2_point(raw)
    raise KeyTextError(f"{len(raw)} bytes in base64 are neither DER nor an SM2 point")


def hs_pubkey_data(text: str) -> bytes:
    """The ``HS_PUBKEY`` data of a key given as text: HANDLE.NET's record for RSA
    and DSA, the IDIS SDK's ``SM2_PUB_KEY`` record for SM2."""
    return encode_public_key(parse_key_text(text))


def key_text(data: bytes) -> str | None:
    """The PEM text (``PUBLIC KEY``, 64 columns, LF) of the key in ``HS_PUBKEY`` data,
    whatever form it is stored in; None when the data holds no key."""
    try:
        return keys.public_pem(decode_public_key(data)).decode("ascii")
    except ValueFormatError:
        return None
