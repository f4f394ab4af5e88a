"""SM2 (GB/T 32918) keys, signatures and encryption over the system's OpenSSL 3.

Keys are parsed and written here (SubjectPublicKeyInfo, PKCS#8, SEC1, raw points
and scalars), checked on the recommended curve, then handed to libcrypto, which
signs, verifies, encrypts and decrypts. Every signature binds a user ID into ZA;
OpenSSL 3.0's default ID is empty where every other implementation uses
``1234567812345678``, so the ID is always set explicitly.

Signatures: DER ``SEQUENCE {r, s}`` by default, or the raw 64-byte ``r ‖ s``
hardware signers and DNSSEC use; verification takes either. Ciphertexts:
``encrypt`` writes the raw ``04 ‖ C1 ‖ C3 ‖ C2`` the IDIS SDK (BouncyCastle,
hutool) decrypts, ``encrypt_asn1`` the GM/T 0009 DER form OpenSSL and GmSSL
write; ``decrypt`` reads both.
"""

from __future__ import annotations

import ctypes
import secrets
import weakref
from ctypes import byref, c_size_t, c_void_p

from . import der
from ._openssl import (
    EVP_PKEY_KEYPAIR,
    EVP_PKEY_PUBLIC_KEY,
    NID_SM2,
    POINT_CONVERSION_UNCOMPRESSED,
    failure,
    libcrypto,
)
from .errors import BadCiphertext, BadKey, CryptoError

DEFAULT_ID = b"1234567812345678"
"""The user ID of GB/T 35276 when none is agreed (IDIS tokens, JWS "SM2256", DNSSEC)."""
MAX_ID_BYTES = 8191
"""ENTL, the ID's length in bits, is a 16-bit field."""

EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
SM2_CURVE_OID = "1.2.156.10197.1.301"

# The recommended curve (GB/T 32918.5): y² = x³ + ax + b over GF(p), order n.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SIZE = 32
"""Bytes of a coordinate, a scalar, r or s."""

_SPKI_ALGORITHM = der.sequence(der.oid(EC_PUBLIC_KEY_OID), der.oid(SM2_CURVE_OID))
_MAX_SIGNATURE = 72
_SEC1_LABELS = ("EC PRIVATE KEY", "SM2 PRIVATE KEY")
"""PEM labels of SEC1 keys: OpenSSL 3 writes an SM2 one under the second."""


UserId = bytes | str


def _user_id(user_id: UserId) -> bytes:
    value = user_id.encode("utf-8") if isinstance(user_id, str) else bytes(user_id)
    if len(value) > MAX_ID_BYTES:
        raise CryptoError(f"SM2 user ID longer than {MAX_ID_BYTES} bytes")
    return value


# --- points and encodings (pure) -----------------------------------------------------


def _on_curve(x: int, y: int) -> bool:
    return x < P and y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _point(data: bytes) -> bytes:
    """The uncompressed ``04 ‖ x ‖ y`` of a point given as that, as 64-byte ``x ‖ y``, or
    compressed (``02``/``03 ‖ x``); BadKey unless it is a point of the curve."""
    if len(data) == 2 * SIZE:
        data = b"\x04" + data
    if len(data) == 1 + SIZE and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        if x >= P:
            raise BadKey("SM2 point: x is not a field element")
        y = pow((x * x * x + A * x + B) % P, (P + 1) // 4, P)  # p ≡ 3 (mod 4)
        if y & 1 != data[0] & 1:
            y = P - y
        data = b"\x04" + data[1:] + y.to_bytes(SIZE, "big")
    if len(data) != 1 + 2 * SIZE or data[0] != 4:
        raise BadKey(f"SM2 point of {len(data)} bytes (expected 65-byte 04‖x‖y or 64-byte x‖y)")
    x, y = int.from_bytes(data[1 : 1 + SIZE], "big"), int.from_bytes(data[1 + SIZE :], "big")
    if not _on_curve(x, y):
        raise BadKey("SM2 point is not on the curve")
    return data


def _algorithm(reader: der.DerReader, what: str) -> None:
    """An AlgorithmIdentifier that names the SM2 curve, or BadKey saying what it names."""
    algorithm = reader.sequence(f"{what} algorithm")
    kind = algorithm.oid()
    curve = algorithm.oid() if algorithm.peek() == der.OBJECT_IDENTIFIER else None
    if algorithm.peek() == der.SEQUENCE:
        raise BadKey(f"{what}: explicit curve parameters are not supported")
    algorithm.end()
    if kind == EC_PUBLIC_KEY_OID and curve == SM2_CURVE_OID:
        return
    if kind == SM2_CURVE_OID and curve in (None, SM2_CURVE_OID):
        return  # some tools name the curve as the key's algorithm
    if kind == EC_PUBLIC_KEY_OID:
        raise BadKey(f"{what}: curve {curve} is not SM2 ({SM2_CURVE_OID})")
    raise BadKey(f"{what}: algorithm {kind} is not an SM2 key")


def _spki_point(spki: bytes) -> bytes:
    try:
        outer = der.DerReader(spki, "SM2 SubjectPublicKeyInfo")
        body = outer.sequence()
        outer.end()
        _algorithm(body, "SM2 SubjectPublicKeyInfo")
        point = body.bit_string()
        body.end()
    except der.DerError as exc:
        raise BadKey(str(exc)) from None
    return _point(point)


def _ec_private_key(sec1: bytes, what: str, *, curve_required: bool) -> tuple[int, bytes | None]:
    """The scalar and the (optional) public point of an ECPrivateKey (RFC 5915)."""
    outer = der.DerReader(sec1, what)
    body = outer.sequence()
    outer.end()
    if body.integer() != 1:
        raise BadKey(f"{what}: version is not 1")
    scalar = body.octet_string()
    parameters = body.optional(der.CONTEXT_0)
    if parameters is not None:
        params = der.DerReader(parameters, f"{what} parameters")
        if params.peek() != der.OBJECT_IDENTIFIER:
            raise BadKey(f"{what}: explicit curve parameters are not supported")
        curve = params.oid()
        params.end()
        if curve != SM2_CURVE_OID:
            raise BadKey(f"{what}: curve {curve} is not SM2 ({SM2_CURVE_OID})")
    elif curve_required:
        raise BadKey(f"{what}: names no curve")
    public = body.optional(der.CONTEXT_1)
    point = der.DerReader(public, f"{what} public key").bit_string() if public is not None else None
    body.end()
    if len(scalar) > SIZE:
        raise BadKey(f"{what}: private scalar of {len(scalar)} bytes")
    return int.from_bytes(scalar, "big"), point


def _pkcs8_scalar(pkcs8: bytes) -> tuple[int, bytes | None]:
    outer = der.DerReader(pkcs8, "SM2 PKCS#8 key")
    body = outer.sequence()
    outer.end()
    if body.integer() not in (0, 1):
        raise BadKey("SM2 PKCS#8 key: unknown version")
    _algorithm(body, "SM2 PKCS#8 key")
    key = body.octet_string()
    body.optional(der.CONTEXT_0)  # attributes
    body.optional(0x81)  # the v2 public key, [1] IMPLICIT BIT STRING
    body.end()
    return _ec_private_key(key, "SM2 PKCS#8 key", curve_required=False)


def _pem_or_der(data: bytes, labels: tuple[str, ...], what: str) -> tuple[str | None, bytes]:
    if not der.is_pem(data):
        return None, bytes(data)
    try:
        label, body = der.pem_decode(data)
    except der.DerError as exc:
        raise BadKey(f"{what}: {exc}") from None
    if label not in labels:
        raise BadKey(f"{what}: PEM block {label!r} (expected {' or '.join(labels)})")
    return label, body


def _pem_text(pem: bytes | str, what: str) -> bytes:
    """``pem`` as bytes, refused unless it is PEM (``from_pem`` takes no DER or raw forms)."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if not der.is_pem(data):
        raise BadKey(f"{what}: not PEM text")
    return data


def signature_to_der(raw: bytes) -> bytes:
    """DER ``SEQUENCE {r, s}`` of a raw 64-byte ``r ‖ s``; CryptoError if out of range."""
    if len(raw) != 2 * SIZE:
        raise CryptoError(f"raw SM2 signature of {len(raw)} bytes (expected 64)")
    r, s = int.from_bytes(raw[:SIZE], "big"), int.from_bytes(raw[SIZE:], "big")
    if not (0 < r < N and 0 < s < N):
        raise CryptoError("SM2 signature: r or s is out of range")
    return der.sequence(der.integer(r), der.integer(s))


def _der_signature(signature: bytes) -> tuple[int, int]:
    outer = der.DerReader(signature, "SM2 signature")
    body = outer.sequence()
    outer.end()
    r, s = body.integer(), body.integer()
    body.end()
    return r, s


def signature_to_raw(signature: bytes) -> bytes:
    """Raw 64-byte ``r ‖ s`` of a DER signature; CryptoError if malformed or out of range."""
    r, s = _der_signature(signature)
    if not (0 < r < N and 0 < s < N):
        raise CryptoError("SM2 signature: r or s is out of range")
    return r.to_bytes(SIZE, "big") + s.to_bytes(SIZE, "big")


def _as_der_signature(signature: bytes) -> bytes | None:
    """The canonical DER form of a DER or raw signature; None if it is neither, or
    r or s is out of range."""
    try:
        r, s = _der_signature(signature)
    except der.DerError:
        if len(signature) != 2 * SIZE:
            return None
        r, s = int.from_bytes(signature[:SIZE], "big"), int.from_bytes(signature[SIZE:], "big")
    if not (0 < r < N and 0 < s < N):
        return None
    return der.sequence(der.integer(r), der.integer(s))


def ciphertext_to_asn1(raw: bytes) -> bytes:
    """GM/T 0009 DER ``SEQUENCE {x, y, C3, C2}`` of a raw ``04 ‖ C1 ‖ C3 ‖ C2``."""
    head = 1 + 2 * SIZE + 32
    if len(raw) <= head or raw[0] != 4:
        raise BadCiphertext("raw SM2 ciphertext is not 04‖C1‖C3‖C2")
    x = int.from_bytes(raw[1 : 1 + SIZE], "big")
    y = int.from_bytes(raw[1 + SIZE : 1 + 2 * SIZE], "big")
    c3, c2 = raw[1 + 2 * SIZE : head], raw[head:]
    return der.sequence(der.integer(x), der.integer(y), der.octet_string(c3), der.octet_string(c2))


def ciphertext_to_raw(asn1: bytes) -> bytes:
    """Raw ``04 ‖ C1 ‖ C3 ‖ C2`` of a GM/T 0009 DER ciphertext."""
    try:
        outer = der.DerReader(asn1, "SM2 ciphertext")
        body = outer.sequence()
        outer.end()
        x, y, c3, c2 = body.integer(), body.integer(), body.octet_string(), body.octet_string()
        body.end()
    except der.DerError as exc:
        raise BadCiphertext(str(exc)) from None
    if x >= P or y >= P or len(c3) != 32 or not c2:
        raise BadCiphertext("SM2 ciphertext: C1 or C3 malformed")
    return b"\x04" + x.to_bytes(SIZE, "big") + y.to_bytes(SIZE, "big") + c3 + c2


# --- libcrypto objects -----------------------------------------------------------------


def _new_pkey(point: bytes, scalar: int | None) -> int:
    """An EVP_PKEY of type SM2 from a checked point (and scalar). The caller frees it."""
    lib = libcrypto
    builder = lib.OSSL_PARAM_BLD_new()
    bignum = params = context = None
    try:
        ok = lib.OSSL_PARAM_BLD_push_utf8_string(builder, b"group", b"SM2", 0)
        ok = ok and lib.OSSL_PARAM_BLD_push_octet_string(builder, b"pub", point, len(point))
        if scalar is not None:
            bignum = lib.BN_bin2bn(scalar.to_bytes(SIZE, "big"), SIZE, None)
            ok = ok and bignum and lib.OSSL_PARAM_BLD_push_BN(builder, b"priv", bignum)
        params = ok and lib.OSSL_PARAM_BLD_to_param(builder)
        context = lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
        pkey = c_void_p()
        selection = EVP_PKEY_PUBLIC_KEY if scalar is None else EVP_PKEY_KEYPAIR
        if not (
            params
            and context
            and lib.EVP_PKEY_fromdata_init(context) == 1
            and lib.EVP_PKEY_fromdata(context, byref(pkey), selection, params) == 1
            and pkey.value
        ):
            raise failure("OpenSSL refused the SM2 key", BadKey)
        return pkey.value
    finally:
        lib.EVP_PKEY_CTX_free(context)
        lib.OSSL_PARAM_free(params or None)
        lib.BN_clear_free(bignum)
        lib.OSSL_PARAM_BLD_free(builder)


def _public_point_of(scalar: int) -> bytes:
    lib = libcrypto
    group = lib.EC_GROUP_new_by_curve_name(NID_SM2)
    point = lib.EC_POINT_new(group) if group else None
    bignum = lib.BN_bin2bn(scalar.to_bytes(SIZE, "big"), SIZE, None)
    try:
        out = ctypes.create_string_buffer(1 + 2 * SIZE)
        if not (
            point
            and bignum
            and lib.EC_POINT_mul(group, point, bignum, None, None, None) == 1
            and lib.EC_POINT_point2oct(
                group, point, POINT_CONVERSION_UNCOMPRESSED, out, len(out), None
            )
            == len(out)
        ):
            raise failure("cannot compute the SM2 public key", BadKey)
        return out.raw
    finally:
        lib.BN_clear_free(bignum)
        lib.EC_POINT_free(point)
        lib.EC_GROUP_free(group)


class _Key:
    """Owns one EVP_PKEY, freed when the key object goes."""

    __slots__ = ("__weakref__", "_pkey")
    _pkey: int

    def _own(self, pkey: int) -> None:
        self._pkey = pkey
        finalizer = weakref.finalize(self, libcrypto.EVP_PKEY_free, pkey)
        finalizer.atexit = False  # OpenSSL cleans up after itself at exit

    def _pkey_context(self, user_id: bytes | None = None) -> int:
        context = libcrypto.EVP_PKEY_CTX_new(self._pkey, None)
        if not context:
            raise failure("cannot make an SM2 key context")
        set_id = libcrypto.EVP_PKEY_CTX_set1_id
        if user_id is not None and set_id(context, user_id, len(user_id)) != 1:
            libcrypto.EVP_PKEY_CTX_free(context)
            raise failure("cannot set the SM2 user ID")
        return int(context)


class Sm2PublicKey(_Key):
    """An SM2 public key: verifies signatures, encrypts."""

    __slots__ = ("point",)

    def __init__(self, point: bytes) -> None:
        """From a point: 65-byte ``04 ‖ x ‖ y``, 64-byte ``x ‖ y`` or 33-byte compressed."""
        self.point: bytes = _point(bytes(point))
        """Uncompressed, ``04 ‖ x ‖ y``."""
        self._own(_new_pkey(self.point, None))

    @classmethod
    def from_der(cls, spki: bytes) -> Sm2PublicKey:
        """From DER SubjectPublicKeyInfo."""
        return cls(_spki_point(bytes(spki)))

    @classmethod
    def from_pem(cls, pem: bytes | str) -> Sm2PublicKey:
        return cls.load(_pem_text(pem, "SM2 public key"))

    @classmethod
    def load(cls, data: bytes) -> Sm2PublicKey:
        """From PEM (``PUBLIC KEY``), DER SubjectPublicKeyInfo or a raw point."""
        label, body = _pem_or_der(bytes(data), ("PUBLIC KEY",), "SM2 public key")
        if label is None and body[:1] != b"\x30":
            return cls(body)
        return cls.from_der(body)

    @property
    def xy(self) -> bytes:
        """64-byte ``x ‖ y`` (DNSSEC algorithm 17, some hardware)."""
        return self.point[1:]

    def to_der(self) -> bytes:
        """DER SubjectPublicKeyInfo (id-ecPublicKey, curve SM2)."""
        return der.sequence(_SPKI_ALGORITHM, der.bit_string(self.point))

    def to_pem(self, *, width: int = 64, newline: bytes = b"\n") -> bytes:
        return der.pem_encode("PUBLIC KEY", self.to_der(), width=width, newline=newline)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2PublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)

    def __repr__(self) -> str:
        return f"Sm2PublicKey({self.point[1:9].hex()}…)"

    def verify(self, signature: bytes, data: bytes, user_id: UserId = DEFAULT_ID) -> bool:
        """Does ``signature`` (DER, or raw ``r ‖ s``) sign ``data`` under ``user_id``?
        False for any malformed or out-of-range signature."""
        identity = _user_id(user_id)
        canonical = _as_der_signature(bytes(signature))
        if canonical is None:
            return False
        lib = libcrypto
        context = self._pkey_context(identity)
        digest = lib.EVP_MD_CTX_new()
        try:
            lib.EVP_MD_CTX_set_pkey_ctx(digest, context)
            if lib.EVP_DigestVerifyInit(digest, None, lib.sm3, None, self._pkey) != 1:
                raise failure("cannot start an SM2 verification")
            valid = bool(
                lib.EVP_DigestVerify(digest, canonical, len(canonical), data, len(data)) == 1
            )
            if not valid:
                lib.ERR_clear_error()
            return valid
        finally:
            lib.EVP_MD_CTX_free(digest)
            lib.EVP_PKEY_CTX_free(context)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Raw ``04 ‖ C1 ‖ C3 ‖ C2``, what the IDIS SDK decrypts (SM3 inside)."""
        return ciphertext_to_raw(self.encrypt_asn1(plaintext))

    def encrypt_asn1(self, plaintext: bytes) -> bytes:
        """GM/T 0009 DER ``SEQUENCE {x, y, C3, C2}`` (what OpenSSL and GmSSL write)."""
        if not plaintext:
            raise CryptoError("SM2 cannot encrypt an empty message")
        return _crypt(self, plaintext, encrypt=True)


class Sm2PrivateKey(_Key):
    """An SM2 private key: signs, decrypts."""

    __slots__ = ("_public", "_scalar")

    def __init__(self, scalar: int) -> None:
        """From the private scalar d, 1 ≤ d ≤ n − 2."""
        if not 0 < scalar < N - 1:
            raise BadKey("SM2 private scalar out of range")
        self._scalar = scalar
        self._public = Sm2PublicKey(_public_point_of(scalar))
        self._own(_new_pkey(self._public.point, scalar))

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        return cls(secrets.randbelow(N - 2) + 1)

    @classmethod
    def from_bytes(cls, scalar: bytes) -> Sm2PrivateKey:
        """From the 32-byte big-endian scalar."""
        if len(scalar) != SIZE:
            raise BadKey(f"SM2 private scalar of {len(scalar)} bytes (expected 32)")
        return cls(int.from_bytes(scalar, "big"))

    @classmethod
    def from_der(cls, data: bytes) -> Sm2PrivateKey:
        """From DER PKCS#8 or SEC1 (ECPrivateKey)."""
        return cls._from(None, bytes(data))

    @classmethod
    def from_pem(cls, pem: bytes | str) -> Sm2PrivateKey:
        return cls.load(_pem_text(pem, "SM2 private key"))

    @classmethod
    def load(cls, data: bytes) -> Sm2PrivateKey:
        """From PEM or DER, PKCS#8 or SEC1, or the 32-byte scalar."""
        label, body = _pem_or_der(bytes(data), ("PRIVATE KEY", *_SEC1_LABELS), "SM2 private key")
        if label is None and len(body) == SIZE:
            return cls.from_bytes(body)
        return cls._from(label, body)

    @classmethod
    def _from(cls, label: str | None, body: bytes) -> Sm2PrivateKey:
        try:
            if label in _SEC1_LABELS:
                scalar, point = _ec_private_key(body, "SM2 SEC1 key", curve_required=True)
            elif label == "PRIVATE KEY":
                scalar, point = _pkcs8_scalar(body)
            else:  # DER: PKCS#8 starts with version 0, SEC1 with version 1
                try:
                    scalar, point = _pkcs8_scalar(body)
                except der.DerError:
                    scalar, point = _ec_private_key(body, "SM2 SEC1 key", curve_required=True)
        except der.DerError as exc:
            raise BadKey(str(exc)) from None
        key = cls(scalar)
        if point is not None and _point(point) != key._public.point:
            raise BadKey("SM2 private key: its public point does not match the scalar")
        return key

    def public_key(self) -> Sm2PublicKey:
        return self._public

    def to_bytes(self) -> bytes:
        """The 32-byte big-endian scalar."""
        return self._scalar.to_bytes(SIZE, "big")

    def to_der(self) -> bytes:
        """DER PKCS#8, with the public point inside (as OpenSSL writes it)."""
        sec1 = der.sequence(
            der.integer(1),
            der.octet_string(self.to_bytes()),
            der.explicit(1, der.bit_string(self._public.point)),
        )
        return der.sequence(der.integer(0), _SPKI_ALGORITHM, der.octet_string(sec1))

    def to_pem(self, *, width: int = 64, newline: bytes = b"\n") -> bytes:
        return der.pem_encode("PRIVATE KEY", self.to_der(), width=width, newline=newline)

    def __repr__(self) -> str:
        return f"Sm2PrivateKey(public={self._public!r})"

    def sign(self, data: bytes, user_id: UserId = DEFAULT_ID, *, raw: bool = False) -> bytes:
        """Sign ``data`` as the message: e = SM3(ZA ‖ data), ZA over ``user_id`` and the key.
        DER ``SEQUENCE {r, s}``, or with ``raw`` the 64-byte ``r ‖ s``."""
        identity = _user_id(user_id)
        lib = libcrypto
        context = self._pkey_context(identity)
        digest = lib.EVP_MD_CTX_new()
        try:
            lib.EVP_MD_CTX_set_pkey_ctx(digest, context)
            out = ctypes.create_string_buffer(_MAX_SIGNATURE)
            size = c_size_t(len(out))
            if not (
                lib.EVP_DigestSignInit(digest, None, lib.sm3, None, self._pkey) == 1
                and lib.EVP_DigestSign(digest, out, byref(size), data, len(data)) == 1
            ):
                raise failure("SM2 signing failed")
            signature = out.raw[: size.value]
        finally:
            lib.EVP_MD_CTX_free(digest)
            lib.EVP_PKEY_CTX_free(context)
        return signature_to_raw(signature) if raw else signature

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext of a raw ``04 ‖ C1 ‖ C3 ‖ C2`` or a GM/T 0009 DER ciphertext;
        BadCiphertext if it is neither, or was not made for this key."""
        data = bytes(ciphertext)
        if data[:1] == b"\x04":
            data = ciphertext_to_asn1(data)
        else:
            ciphertext_to_raw(data)  # checks the structure before OpenSSL sees it
        return _crypt(self, data, encrypt=False)


def _crypt(key: _Key, data: bytes, *, encrypt: bool) -> bytes:
    lib = libcrypto
    context = key._pkey_context()
    init = lib.EVP_PKEY_encrypt_init if encrypt else lib.EVP_PKEY_decrypt_init
    run = lib.EVP_PKEY_encrypt if encrypt else lib.EVP_PKEY_decrypt
    error = CryptoError if encrypt else BadCiphertext
    what = "SM2 encryption failed" if encrypt else "SM2 ciphertext does not decrypt"
    try:
        size = c_size_t(0)
        if init(context) != 1 or run(context, None, byref(size), data, len(data)) != 1:
            raise failure(what, error)
        out = ctypes.create_string_buffer(size.value)
        if run(context, out, byref(size), data, len(data)) != 1:
            raise failure(what, error)
        return out.raw[: size.value]
    finally:
        lib.EVP_PKEY_CTX_free(context)
