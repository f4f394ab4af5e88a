"""Trusted resolution: ``HS_CERT`` and ``HS_SIGNATURE`` values (HANDLE.NET 8+, IDIS).

Pure modules, no I/O: :mod:`.jws` (the JWS codec, sign and verify over the
received segments), :mod:`.keys` (the ``publicKey`` JWK, trust-root PEM keys),
:mod:`.claims` (certificate and signature claims), :mod:`.digests` (value
digests), :mod:`.chain` (the walk up to a self-issued root, through a callable
that fetches records) and :mod:`.verify` (the verdict, in HANDLE.NET's order).
"""

from .chain import (
    HS_CERT,
    HS_SIGNATURE,
    MAX_LINKS,
    ChainError,
    Link,
    ResolutionFailed,
    ValuesOf,
    build_chain,
)
from .claims import (
    DERIVED_PREFIXES,
    EVERYTHING,
    HANDLES_UNDER_THIS_PREFIX,
    THIS_HANDLE,
    Claims,
    ClaimsError,
    Digests,
    Permission,
    ValueDigest,
    ValueRef,
)
from .digests import SHA256, DigestComparison, UnknownDigest, compare, digests_claim, value_digest
from .jws import MAX_JWS_BYTES, Jws, JwsError, parse_jws, sign_jws
from .keys import (
    KeyFormatError,
    PublicKey,
    Sm2PublicKey,
    key_from_jwk,
    key_to_jwk,
    load_public_key,
    public_key_pem,
    same_key,
)
from .signing import DS256, RS256, SM2_DEFAULT_ID, SM2256, PrivateKey, SigningError, Sm2Signer
from .verify import (
    CNRI_TRUST_ROOT,
    IDIS_TRUST_ROOT,
    LinkReport,
    SignatureReport,
    TrustReport,
    TrustRoot,
    Verdict,
    authorizes,
    needs_signature,
    verify_record,
)

__all__ = [
    "CNRI_TRUST_ROOT",
    "DERIVED_PREFIXES",
    "DS256",
    "EVERYTHING",
    "HANDLES_UNDER_THIS_PREFIX",
    "HS_CERT",
    "HS_SIGNATURE",
    "IDIS_TRUST_ROOT",
    "MAX_JWS_BYTES",
    "MAX_LINKS",
    "RS256",
    "SHA256",
    "SM2_DEFAULT_ID",
    "SM2256",
    "THIS_HANDLE",
    "ChainError",
    "Claims",
    "ClaimsError",
    "DigestComparison",
    "Digests",
    "Jws",
    "JwsError",
    "KeyFormatError",
    "Link",
    "LinkReport",
    "Permission",
    "PrivateKey",
    "PublicKey",
    "ResolutionFailed",
    "SignatureReport",
    "SigningError",
    "Sm2PublicKey",
    "Sm2Signer",
    "TrustReport",
    "TrustRoot",
    "UnknownDigest",
    "ValueDigest",
    "ValueRef",
    "ValuesOf",
    "Verdict",
    "authorizes",
    "build_chain",
    "compare",
    "digests_claim",
    "key_from_jwk",
    "key_to_jwk",
    "load_public_key",
    "needs_signature",
    "parse_jws",
    "public_key_pem",
    "same_key",
    "sign_jws",
    "value_digest",
    "verify_record",
]
