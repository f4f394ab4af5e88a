"""Cryptography throughput on one core: what a node process can sign and check.

* SM2 (over the system's OpenSSL) signs and verifications with a user ID;
* SM2 login proofs checked end to end through the native protocol's proof
  function (``verify_public_key_proof``: the HS_PUBKEY value in IDIS form 1, the
  proof record, SM3 of nonce ‖ digest, the signature), for an identity seen before
  (its key decoded once) and for the first proof of an identity (key decoded too);
* RSA-2048 (PKCS#1 v1.5, SHA-256) and ECDSA P-256 for comparison; SM3 and SM4-CBC.

Each figure is a bounded run (``--seconds`` each) in this one thread, counted
per second of wall time and per second of the thread's CPU time (one core's rate
on a shared machine; the targets are judged on it); every signature is checked
once before timing. Prints a table, compares with the targets and writes
``results/bench-crypto.json``.

    python -m loadtest.bench_crypto [--seconds 2] [--out results/bench-crypto.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from loadtest.demo_node import write_results
from registry.crypto import keys
from registry.crypto._openssl import libcrypto
from registry.crypto.ciphers import sm4_cbc_encrypt
from registry.crypto.digests import sm3
from registry.crypto.sm2 import Sm2PrivateKey
from registry.values import SM2_KEY_TYPE, encode_public_key
from registry.wire import blob, text
from resolver.handle.proofs import public_key_proof, verify_public_key_proof

TARGETS = {"sm2_verify": 2000.0, "sm2_login_proof": 1000.0}
"""Operations per second one core must reach."""
IDENTITY = "88.111.1/admin"


@dataclass
class Figure:
    name: str
    what: str
    operations: int
    seconds: float
    per_second: float
    """Operations per second of wall time."""
    per_cpu_second: float
    """Operations per second of this thread's CPU time: one core's rate, whatever else
    the machine runs meanwhile (the targets are judged on it)."""
    target: float | None = None

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.per_cpu_second >= self.target


def measure(name: str, what: str, operation: Callable[[], object], seconds: float) -> Figure:
    """Calls ``operation`` in batches until ``seconds`` have passed."""
    operation()  # warm: first-use costs (loading, fetching algorithms) are not the rate
    batch = 20
    done = 0
    start, cpu_start = time.perf_counter(), time.thread_time()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            operation()
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed, cpu = now - start, max(time.thread_time() - cpu_start, 1e-9)
    return Figure(
        name,
        what,
        done,
        round(elapsed, 3),
        round(done / elapsed, 1),
        round(done / cpu, 1),
        TARGETS.get(name),
    )


def _checked(result: object, what: str) -> None:
    if result is not True:
        raise SystemExit(f"{what} did not verify: the benchmark would measure a failure")


def run(seconds: float) -> list[Figure]:
    data = os.urandom(48)  # a nonce and a SHA-256 request digest
    sm2_key = Sm2PrivateKey.generate()
    sm2_public = sm2_key.public_key()
    sm2_signature = sm2_key.sign(data, IDENTITY)
    _checked(sm2_public.verify(sm2_signature, data, IDENTITY), "SM2")

    published = encode_public_key(sm2_public)  # IDIS form 1
    proof = public_key_proof(sm2_key, data, identity=IDENTITY)
    _checked(verify_public_key_proof(published, proof, data, identity=IDENTITY), "SM2 proof")
    # First proofs of identities: a distinct HS_PUBKEY value each call (a comment
    # after the PEM's END line), so the published key is decoded every time.
    pem = sm2_public.to_pem(width=76, newline=b"\r\n")
    serial = iter(range(10**12))

    def first_proof() -> bool:
        value = text(SM2_KEY_TYPE) + b"\x00\x00" + blob(pem + b"%d" % next(serial))
        return verify_public_key_proof(value, proof, data, identity=IDENTITY)

    _checked(first_proof(), "SM2 proof with a fresh key value")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_signature = keys.sign(rsa_key, data, hashes.SHA256())
    p256_key = ec.generate_private_key(ec.SECP256R1())
    p256_signature = keys.sign(p256_key, data, hashes.SHA256())
    _checked(keys.verify(rsa_key.public_key(), rsa_signature, data, hashes.SHA256()), "RSA")
    _checked(keys.verify(p256_key.public_key(), p256_signature, data, hashes.SHA256()), "P-256")
    sm4_key, sm4_iv, kilobyte = os.urandom(16), os.urandom(16), os.urandom(1024)

    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("sm2_verify", "SM2 verifications (SM3, user ID)", lambda: sm2_public.verify(
            sm2_signature, data, IDENTITY)),
        ("sm2_sign", "SM2 signatures (SM3, user ID, DER)", lambda: sm2_key.sign(data, IDENTITY)),
        ("sm2_login_proof", "SM2 login proofs verified (known identity)", lambda: (
            verify_public_key_proof(published, proof, data, identity=IDENTITY))),
        ("sm2_first_proof", "SM2 login proofs, HS_PUBKEY decoded each time", first_proof),
        ("rsa2048_verify", "RSA-2048 verifications (PKCS#1 v1.5)", lambda: keys.verify(
            rsa_key.public_key(), rsa_signature, data, hashes.SHA256())),
        ("rsa2048_sign", "RSA-2048 signatures", lambda: keys.sign(rsa_key, data, hashes.SHA256())),
        ("p256_verify", "ECDSA P-256 verifications", lambda: keys.verify(
            p256_key.public_key(), p256_signature, data, hashes.SHA256())),
        ("p256_sign", "ECDSA P-256 signatures", lambda: keys.sign(
            p256_key, data, hashes.SHA256())),
        ("sm3_1k", "SM3 of 1 KiB", lambda: sm3(kilobyte)),
        ("sm4_cbc_1k", "SM4-CBC encryptions of 1 KiB", lambda: sm4_cbc_encrypt(
            sm4_key, sm4_iv, kilobyte)),
    ]  # fmt: skip
    return [measure(name, what, operation, seconds) for name, what, operation in cases]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per figure (0.05 to 60)")
    parser.add_argument("--out", default="results/bench-crypto.json")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.05), 60.0)
    figures = run(seconds)
    print(f"{'operation':48} {'per s':>9} {'per CPU s':>10}  target (per CPU second)")
    for figure in figures:
        verdict = ""
        if figure.target is not None:
            verdict = f"≥ {figure.target:,.0f} {'met' if figure.meets_target else 'MISSED'}"
        print(
            f"{figure.what:48} {figure.per_second:>9,.0f} {figure.per_cpu_second:>10,.0f}  "
            f"{verdict}"
        )
    report = {
        "openssl": libcrypto.lib.OpenSSL_version_num(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds_per_figure": seconds,
        "load_average": os.getloadavg()[0],
        "figures": [asdict(f) | {"meets_target": f.meets_target} for f in figures],
    }
    report["openssl"] = f"0x{report['openssl']:08x}"
    print(f"written to {write_results(args.out, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
