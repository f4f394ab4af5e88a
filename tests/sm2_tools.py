"""Independent SM2 implementations for the tests: the ``openssl`` tool (its own
code path: the command line, distid option, files) and ``gmalg`` (pure Python).
Every signature the node makes is checked by one of them, and theirs by the node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import gmalg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

OPENSSL = shutil.which("openssl")


def p256_spki() -> bytes:
    """DER SubjectPublicKeyInfo of a key on NIST P-256: the same shape as an SM2 key but
    another curve, which SM2 readers must refuse by name. Always the same key: tests
    are parametrized with it, and every xdist worker must collect the same ones."""
    return (
        ec.derive_private_key(0x1D0DE, ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _openssl(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *args], cwd=directory, capture_output=True, timeout=30, check=False
    )


def openssl_verifies(
    directory: Path, public_pem: bytes, signature: bytes, data: bytes, user_id: bytes | str
) -> bool:
    """``openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:ID`` over DER."""
    identity = user_id.decode() if isinstance(user_id, bytes) else user_id
    (directory / "pub.pem").write_bytes(public_pem)
    (directory / "sig.der").write_bytes(signature)
    (directory / "data.bin").write_bytes(data)
    done = _openssl(
        directory,
        *("pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "data.bin"),
        *("-sigfile", "sig.der", "-digest", "sm3", "-pkeyopt", f"distid:{identity}"),
    )
    return done.returncode == 0 and b"Signature Verified Successfully" in done.stdout


def openssl_signs(directory: Path, private_pem: bytes, data: bytes, user_id: bytes | str) -> bytes:
    """A DER signature made by ``openssl pkeyutl -sign``."""
    identity = user_id.decode() if isinstance(user_id, bytes) else user_id
    (directory / "key.pem").write_bytes(private_pem)
    (directory / "data.bin").write_bytes(data)
    done = _openssl(
        directory,
        *("pkeyutl", "-sign", "-inkey", "key.pem", "-rawin", "-in", "data.bin"),
        *("-digest", "sm3", "-pkeyopt", f"distid:{identity}", "-out", "sig.der"),
    )
    assert done.returncode == 0, done.stderr
    return (directory / "sig.der").read_bytes()


def openssl_run(directory: Path, *args: str) -> bytes:
    """Any other openssl command; its standard output."""
    done = _openssl(directory, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def gmalg_signs(scalar: bytes, data: bytes, user_id: bytes) -> bytes:
    """A raw 64-byte ``r ‖ s`` made by gmalg."""
    r, s = gmalg.SM2(sk=scalar, uid=user_id).sign(data)
    return r.rjust(32, b"\0") + s.rjust(32, b"\0")


def gmalg_verifies(point: bytes, raw_signature: bytes, data: bytes, user_id: bytes) -> bool:
    return bool(
        gmalg.SM2(pk=point, uid=user_id).verify(data, raw_signature[:32], raw_signature[32:])
    )
