"""The few libcrypto (OpenSSL ≥ 3.0) functions SM2 needs, bound through ctypes.

``cryptography`` has SM3 and SM4 but no SM2; the system's libcrypto has all three.
This module only declares prototypes and turns OpenSSL's error queue into
exceptions; :mod:`.sm2` owns the objects and frees each one it makes. ctypes
releases the GIL around every call, and no state is shared between calls but
immutable keys, so callers may use keys from several threads at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_ulong, c_void_p
from typing import Any

from .errors import CryptoError, Unavailable

MINIMUM_VERSION = 0x30000000
NID_SM2 = 1172
POINT_CONVERSION_UNCOMPRESSED = 4
EVP_PKEY_PUBLIC_KEY = 0x86
"""Selection for EVP_PKEY_fromdata: the parameters and the public key."""
EVP_PKEY_KEYPAIR = 0x87
"""Selection for EVP_PKEY_fromdata: the parameters and both halves of the key."""

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "OpenSSL_version_num": (c_ulong, []),
    "ERR_get_error": (c_ulong, []),
    "ERR_error_string_n": (None, [c_ulong, c_char_p, c_size_t]),
    "ERR_clear_error": (None, []),
    "EVP_MD_fetch": (c_void_p, [c_void_p, c_char_p, c_char_p]),
    "EVP_MD_CTX_new": (c_void_p, []),
    "EVP_MD_CTX_free": (None, [c_void_p]),
    "EVP_MD_CTX_set_pkey_ctx": (None, [c_void_p, c_void_p]),
    "EVP_PKEY_CTX_new": (c_void_p, [c_void_p, c_void_p]),
    "EVP_PKEY_CTX_new_from_name": (c_void_p, [c_void_p, c_char_p, c_char_p]),
    "EVP_PKEY_CTX_free": (None, [c_void_p]),
    "EVP_PKEY_CTX_set1_id": (c_int, [c_void_p, c_char_p, c_int]),
    "EVP_DigestSignInit": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
    "EVP_DigestSign": (c_int, [c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t]),
    "EVP_DigestVerifyInit": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
    "EVP_DigestVerify": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t]),
    "EVP_PKEY_encrypt_init": (c_int, [c_void_p]),
    "EVP_PKEY_encrypt": (c_int, [c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t]),
    "EVP_PKEY_decrypt_init": (c_int, [c_void_p]),
    "EVP_PKEY_decrypt": (c_int, [c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t]),
    "EVP_PKEY_fromdata_init": (c_int, [c_void_p]),
    "EVP_PKEY_fromdata": (c_int, [c_void_p, POINTER(c_void_p), c_int, c_void_p]),
    "EVP_PKEY_free": (None, [c_void_p]),
    "OSSL_PARAM_BLD_new": (c_void_p, []),
    "OSSL_PARAM_BLD_free": (None, [c_void_p]),
    "OSSL_PARAM_BLD_push_utf8_string": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "OSSL_PARAM_BLD_push_octet_string": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "OSSL_PARAM_BLD_push_BN": (c_int, [c_void_p, c_char_p, c_void_p]),
    "OSSL_PARAM_BLD_to_param": (c_void_p, [c_void_p]),
    "OSSL_PARAM_free": (None, [c_void_p]),
    "BN_bin2bn": (c_void_p, [c_char_p, c_int, c_void_p]),
    "BN_clear_free": (None, [c_void_p]),
    "EC_GROUP_new_by_curve_name": (c_void_p, [c_int]),
    "EC_GROUP_free": (None, [c_void_p]),
    "EC_POINT_new": (c_void_p, [c_void_p]),
    "EC_POINT_free": (None, [c_void_p]),
    "EC_POINT_mul": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
    "EC_POINT_point2oct": (c_size_t, [c_void_p, c_void_p, c_int, c_char_p, c_size_t, c_void_p]),
}


def _load() -> ctypes.CDLL:
    """The system's libcrypto 3 (the one Python's own ``ssl`` module uses)."""
    names = ["libcrypto.so.3", ctypes.util.find_library("crypto"), "libcrypto.3.dylib"]
    failures = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            failures.append(str(exc))
            continue
        lib.OpenSSL_version_num.restype = c_ulong
        if lib.OpenSSL_version_num() >= MINIMUM_VERSION:
            return lib
        failures.append(f"{name} is older than OpenSSL 3.0")
    raise Unavailable("SM2 needs OpenSSL 3's libcrypto: " + "; ".join(failures or ["not found"]))


class _Library:
    """libcrypto, loaded on first use (importing this module costs nothing)."""

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None
        self._sm3: int = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.lib, name)

    @property
    def lib(self) -> ctypes.CDLL:
        if self._lib is None:
            lib = _load()
            for name, (restype, argtypes) in _PROTOTYPES.items():
                function = getattr(lib, name)
                function.restype = restype
                function.argtypes = argtypes
            sm3 = lib.EVP_MD_fetch(None, b"SM3", None)
            if not sm3:
                lib.ERR_clear_error()
                raise Unavailable("this OpenSSL has no SM3")
            self._sm3 = sm3
            self._lib = lib
        return self._lib

    @property
    def sm3(self) -> int:
        """The fetched SM3 EVP_MD, kept for the life of the process."""
        if self._lib is None:
            self.lib  # noqa: B018 - loading fetches it
        return self._sm3


libcrypto = _Library()


def failure(what: str, error: type[CryptoError] = CryptoError) -> CryptoError:
    """An exception naming what failed and OpenSSL's first reason; clears the queue
    (a failed call's errors stay queued on the thread until someone does)."""
    code = libcrypto.ERR_get_error()
    reason = ""
    if code:
        buffer = ctypes.create_string_buffer(256)
        libcrypto.ERR_error_string_n(code, buffer, len(buffer))
        reason = ": " + buffer.value.decode("ascii", "replace")
    libcrypto.ERR_clear_error()
    return error(f"{what}{reason}")


def clear_errors() -> None:
    libcrypto.ERR_clear_error()
