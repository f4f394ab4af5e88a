"""Certificate chains for the trusted-resolution tests, and an independent verifier.

:class:`Pki` issues ``HS_CERT`` and ``HS_SIGNATURE`` values with the node's own
signer (``registry.trust.sign_jws``) into an in-memory set of records. The
checks at the bottom (:func:`independent_verdict`) re-implement the digest and
the chain walk from the published rules, with PyJWT for RS256 and OpenSSL's
command line for DS256 and SM2256, so that a mistake shared by our signer and our
verifier cannot pass unseen; tests/issuing_tools.py checks what the node issues
with the same JWS primitives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from registry.crypto import Sm2PrivateKey
from registry.models import HandleValue
from registry.trust import Claims, Permission, digests_claim, sign_jws
from registry.trust.signing import PrivateKey
from tests.sm2_tools import openssl_verifies

ROOT = "0.0/0.0"
ROOT_ID = f"300:{ROOT}"
SIG_INDEX = 400
CERT_INDEX = 400

SM2_ID = "1234567812345678"
_KEYS: dict[tuple[str, int], PrivateKey] = {}


def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    """RSA-2048 keys, made once per test session (key generation is slow)."""
    key = _KEYS.get(("rsa", n))
    if key is None:
        key = _KEYS[("rsa", n)] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def dsa_key(n: int = 0) -> dsa.DSAPrivateKey:
    key = _KEYS.get(("dsa", n))
    if key is None:
        key = _KEYS[("dsa", n)] = dsa.generate_private_key(2048)
    assert isinstance(key, dsa.DSAPrivateKey)
    return key


def sm2_key(n: int = 0) -> Sm2PrivateKey:
    key = _KEYS.get(("sm2", n))
    if key is None:
        key = _KEYS[("sm2", n)] = Sm2PrivateKey.generate()
    assert isinstance(key, Sm2PrivateKey)
    return key


@dataclass
class Pki:
    """Records keyed by handle, and a root of trust (at ``0.0/0.0`` unless told)."""

    root_key: PrivateKey = field(default_factory=rsa_key)
    records: dict[str, list[HandleValue]] = field(default_factory=dict)
    now: int = field(default_factory=lambda: int(time.time()))
    root: str = ROOT

    @property
    def root_id(self) -> str:
        return f"300:{self.root}"

    def __post_init__(self) -> None:
        self.certify(self.root_id, self.root_key, issuer=self.root_id, signer=self.root_key)

    def put(self, handle: str, value: HandleValue) -> None:
        kept = [v for v in self.records.get(handle, []) if v.index != value.index]
        self.records[handle] = [*kept, value]

    def certify(
        self,
        subject: str,
        key: PrivateKey,
        *,
        issuer: str | None = None,
        signer: PrivateKey | None = None,
        perms: Sequence[Permission] = (Permission("everything"),),
        index: int = CERT_INDEX,
        chain: Sequence[str] | None = None,
        lifetime: int = 3600,
        nbf: int | None = None,
        as_json: bool = False,
    ) -> str:
        """An ``HS_CERT`` about ``subject`` (``index:handle``), put at its handle."""
        claims = Claims(
            iss=issuer or self.root_id,
            sub=subject,
            iat=self.now,
            nbf=nbf,
            exp=self.now + lifetime,
            perms=tuple(perms),
            chain=tuple(chain) if chain is not None else None,
            public_key=key.public_key(),
        )
        jws = sign_jws(claims.to_json(), signer or self.root_key)
        data = jws.json_serialization() if as_json else jws.compact()
        handle = subject.partition(":")[2]
        self.put(handle, HandleValue(index=index, type="HS_CERT", data=data.encode()))
        return data

    def sign_record(
        self,
        handle: str,
        values: Sequence[HandleValue],
        key: PrivateKey,
        issuer: str,
        *,
        lifetime: int = 3600,
        subject: str | None = None,
        index: int = SIG_INDEX,
        as_json: bool = False,
    ) -> list[HandleValue]:
        """``values`` and an ``HS_SIGNATURE`` over them; the record is stored too."""
        claims = Claims(
            iss=issuer,
            sub=subject or handle,
            iat=self.now,
            exp=self.now + lifetime,
            digests=digests_claim(values),
        )
        jws = sign_jws(claims.to_json(), key)
        data = jws.json_serialization() if as_json else jws.compact()
        signature = HandleValue(index=index, type="HS_SIGNATURE", data=data.encode())
        record = [*values, signature]
        self.records[handle] = record
        return record

    async def values_of(self, handle: str) -> list[HandleValue] | None:
        return self.records.get(handle)


def url(index: int, text: str) -> HandleValue:
    return HandleValue(index=index, type="URL", data=text.encode())


# --- the independent verifier ----------------------------------------------------------


def rfc3651_digest(value: HandleValue) -> str:
    """SHA-256 of TTL type, TTL, permissions, type, data, references (RFC 3651
    §3.1 without index and timestamp), standard base64 — written from the RFC."""
    out = bytearray()
    out += bytes([value.ttl_type]) + value.ttl.to_bytes(4, "big") + bytes([value.permissions])
    for part in (value.type.encode(), value.data):
        out += len(part).to_bytes(4, "big") + part
    out += len(value.references).to_bytes(4, "big")
    for handle, index in value.references:
        out += struct.pack(">I", len(handle.encode())) + handle.encode() + struct.pack(">I", index)
    return base64.b64encode(hashlib.sha256(bytes(out)).digest()).decode()


def digests_verdict(claims: dict[str, Any], values: Sequence[HandleValue]) -> str | None:
    """A signature's ``digests`` claim against the record (RFC 3651 digests):
    ``digest_mismatch``, ``values_missing``, or None when every signed value is there
    as it was signed."""
    signed = {d["index"]: d["digest"] for d in claims["digests"]["digests"]}
    present = {v.index: v for v in values}
    if any(i in present and rfc3651_digest(present[i]) != d for i, d in signed.items()):
        return "digest_mismatch"
    if any(i not in present for i in signed):
        return "values_missing"
    return None


def leaves_public_values_unsigned(claims: dict[str, Any], values: Sequence[HandleValue]) -> bool:
    """Does the record hold a publicly readable value, not a signature, that the
    signature's ``digests`` claim leaves out?"""
    signed = {d["index"] for d in claims["digests"]["digests"]}
    public = [v.index for v in values if v.type != "HS_SIGNATURE" and v.permissions & 2]
    return any(i not in signed for i in public)


def jws_segments(data: bytes) -> tuple[str, str, str]:
    """Protected header, payload and signature of a compact or (its first signature)
    JSON-serialized JWS, as they were sent."""
    text = data.decode()
    if text.startswith("{"):
        doc = json.loads(text)
        first = doc["signatures"][0]
        return first["protected"], doc["payload"], first["signature"]
    head, payload, signature = text.split(".")
    return head, payload, signature


def b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims_of(data: bytes) -> dict[str, Any]:
    claims = json.loads(b64url(jws_segments(data)[1]))
    assert isinstance(claims, dict)
    return claims


def jwk_pem(jwk: dict[str, str]) -> bytes:
    """PEM of a ``publicKey`` claim: RSA from n, e; DSA from y, p, q, g; SM2 from the
    SubjectPublicKeyInfo in ``d`` (as the IDIS SDK writes it)."""

    def num(name: str) -> int:
        return int.from_bytes(b64url(jwk[name]), "big")

    if jwk["kty"] == "SM2":
        spki = base64.encodebytes(b64url(jwk["d"])).decode().replace("\n", "")
        lines = "\n".join(spki[i : i + 64] for i in range(0, len(spki), 64))
        return f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----\n".encode()
    if jwk["kty"] == "RSA":
        key: rsa.RSAPublicKey | dsa.DSAPublicKey = rsa.RSAPublicNumbers(
            num("e"), num("n")
        ).public_key()
    else:
        params = dsa.DSAParameterNumbers(num("p"), num("q"), num("g"))
        key = dsa.DSAPublicNumbers(num("y"), params).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def independently_verifies(data: bytes, jwk: dict[str, str]) -> bool:
    """RS256 through PyJWT; DS256 through ``openssl dgst -sha256 -verify``; SM2256
    through ``openssl pkeyutl -verify`` with the distinguishing ID 1234567812345678.
    An SM2 key never verifies another algorithm, nor another key SM2256."""
    head, payload, signature = jws_segments(data)
    alg = json.loads(b64url(head))["alg"]
    if (alg == "SM2256") != (jwk.get("kty") == "SM2"):
        return False
    pem = jwk_pem(jwk)
    if alg == "SM2256":
        with tempfile.TemporaryDirectory() as folder:
            return openssl_verifies(
                Path(folder), pem, b64url(signature), f"{head}.{payload}".encode(), SM2_ID
            )
    if alg == "RS256":
        try:
            jwt.PyJWS().decode(f"{head}.{payload}.{signature}", pem, algorithms=["RS256"])
        except jwt.InvalidTokenError:
            return False
        return True
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        (where / "pub.pem").write_bytes(pem)
        (where / "sig.der").write_bytes(b64url(signature))
        (where / "in.bin").write_bytes(f"{head}.{payload}".encode())
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "in.bin"],
            cwd=where,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0


def independent_verdict(
    handle: str,
    values: Sequence[HandleValue],
    records: dict[str, list[HandleValue]],
    root_keys: Sequence[dict[str, str]],
    now: float,
) -> str:
    """The verdict for a record with one HS_SIGNATURE whose chain follows ``iss``
    handles only (no ``chain`` claims): the rules of trust.md §3, written afresh."""
    signature = next(v for v in values if v.type == "HS_SIGNATURE")
    claims = claims_of(signature.data)
    links = [(signature.data, claims)]
    seen: set[str] = set()
    while claims["sub"] != claims["iss"]:
        if len(links) > 50:
            return "chain_not_built"
        parent_handle = claims["iss"].partition(":")[2]
        if parent_handle in seen:
            return "chain_not_built"
        seen.add(parent_handle)
        certs = [
            (v.data, claims_of(v.data))
            for v in records.get(parent_handle, [])
            if v.type == "HS_CERT"
        ]
        about = [c for c in certs if c[1]["sub"] == claims["iss"]]
        if not about:
            return "chain_not_built"
        links.append(max(about, key=lambda c: c[1].get("iat", 0)))
        claims = links[-1][1]
    if links[0][1]["sub"] != handle:
        return "wrong_handle"
    checks = []
    for position, (data, link) in enumerate(links):
        issuer = links[min(position + 1, len(links) - 1)][1]
        good = independently_verifies(data, issuer["publicKey"])
        dated = link.get("nbf", 0) <= now <= link.get("exp", now)
        perms = issuer.get("perms", [])
        allowed = any(
            p["perm"] == "everything"
            or (p["perm"] == "handlesUnderThisPrefix" and handle.startswith(p["handle"][5:] + "/"))
            or (p["perm"] == "thisHandle" and p["handle"] == handle)
            or (
                p["perm"] == "derivedPrefixes"
                and ("0.NA/" + handle.split("/")[0]).startswith(p["handle"] + ".")
            )
            for p in perms
        )
        checks.append((good, dated, allowed))
    if not checks[0][0]:
        return "bad_signature"
    if not checks[0][1]:
        return "outside_dates"
    problem = digests_verdict(links[0][1], values)
    if problem is not None:
        return problem
    root = links[-1][1]
    root_ok = root["sub"].partition(":")[2] == ROOT and root["publicKey"] in root_keys
    if not all(good and dated for good, dated, _ in checks[1:]) or not root_ok:
        return "chain_not_trusted"
    if leaves_public_values_unsigned(links[0][1], values):
        return "unsigned_values"
    if not all(allowed for _, _, allowed in checks):
        return "not_authorized"
    return "trusted"
