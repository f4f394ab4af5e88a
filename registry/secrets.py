"""Secrets at rest: sealed digests and the node key.

Passwords and secret keys are kept as salted hashes (:mod:`registry.passwords`). The SNMS
``/identity/token/v1`` login proves knowledge of ``sha256(secret)`` mixed with
the date, so the server must be able to recompute that digest: it is kept
sealed (AES-256-GCM) under a key derived from the node key, never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .crypto import keys
from .crypto.errors import BadKey

_NONCE_BYTES = 12
NODE_KEY_BYTES = 32


class NodeKeyError(RuntimeError):
    """The node key file is missing, unreadable, malformed or too open."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def create_private_file(path: Path, content: bytes) -> bool:
    """Write a new mode-0600 file all at once; False if another process made it
    first (two node processes starting together), whose file is then complete."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic, and fails if the name exists
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


@dataclass(frozen=True)
class NodeKey:
    """The node's master secret; purpose-specific keys are derived from it."""

    material: bytes

    def derive(self, purpose: str) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            self.material
        )

    def seal(self, plaintext: bytes, *, purpose: str = "idnode secret digest") -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self.derive(purpose)).encrypt(nonce, plaintext, purpose.encode())

    def unseal(self, sealed: bytes, *, purpose: str = "idnode secret digest") -> bytes:
        nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        return AESGCM(self.derive(purpose)).decrypt(nonce, ciphertext, purpose.encode())

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(secrets.token_bytes(NODE_KEY_BYTES))

    @classmethod
    def load_or_create(cls, path: Path) -> NodeKey:
        """Read the key file, creating it (mode 0600) on first start."""
        if not path.exists():
            key = cls.generate()
            if create_private_file(path, base64.b64encode(key.material) + b"\n"):
                return key
        _refuse_if_open(path, "node key file")
        try:
            material = base64.b64decode(path.read_text().strip(), validate=True)
        except (OSError, ValueError) as exc:
            raise NodeKeyError(f"cannot read node key file {path}: {exc}") from None
        if len(material) != NODE_KEY_BYTES:
            raise NodeKeyError(f"node key file {path} does not hold a {NODE_KEY_BYTES}-byte key")
        return cls(material)


SEALED_VALUE_MARK = b"\x00idnode-sealed-v1\x00"
"""Leads the data of a Handle value kept sealed at rest (``HS_SECKEY``)."""


def _value_purpose(name_key: str, index: int) -> str:
    # Bound to its place: a sealed blob copied into another record or index
    # (from a backup, say) does not open there.
    return f"idnode sealed handle value {index}:{name_key}"


def seal_value(key: NodeKey, data: bytes, *, name_key: str, index: int) -> bytes:
    """Value data as stored when it is a secret the protocol needs back in clear."""
    return SEALED_VALUE_MARK + key.seal(data, purpose=_value_purpose(name_key, index))


def is_sealed_value(data: bytes) -> bool:
    return data.startswith(SEALED_VALUE_MARK)


def open_value(key: NodeKey, data: bytes, *, name_key: str, index: int) -> bytes | None:
    """The clear data of a stored value (unchanged if not sealed); None when the seal
    does not open — another node key, or a blob that was moved from its place."""
    if not is_sealed_value(data):
        return data
    try:
        return key.unseal(data[len(SEALED_VALUE_MARK) :], purpose=_value_purpose(name_key, index))
    except InvalidTag:
        return None


def credential_fingerprint(secret_hash: str) -> str:
    """Changes whenever the secret does: tokens carry it, so re-keying revokes them."""
    return hashlib.sha256(secret_hash.encode()).hexdigest()[:16]


def dated_digest(secret_sha256_hex: str, day: str) -> str:
    """SNMS ``/identity/token/v1`` password: ``sha256(sha256(pw) + "yyyy-MM-dd")``."""
    return sha256_hex(secret_sha256_hex + day)


def _refuse_if_open(path: Path, what: str) -> None:
    """A key file others can read is a leaked key: refuse to use it."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NodeKeyError(
            f"{what} {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it"
        )


ServerKey = rsa.RSAPrivateKey | dsa.DSAPrivateKey
"""What a node signs certified answers with: RSA (made on first start), or the DSA
site key an operator brings over from HANDLE.NET."""


def load_or_create_server_key(path: Path) -> ServerKey:
    """The node's signing key (published in its HS_SITE): PEM, mode 0600, made on first start."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if create_private_file(path, keys.private_pem(key)):
            return key
    _refuse_if_open(path, "server key file")
    try:
        loaded = keys.load_private_key(path.read_bytes())
    except (OSError, BadKey) as exc:
        # One line: the reason an OS or a key parser gives may span several.
        reason = " ".join(str(exc).split())
        raise NodeKeyError(f"cannot read server key file {path}: {reason}") from None
    if not isinstance(loaded, rsa.RSAPrivateKey | dsa.DSAPrivateKey):
        raise NodeKeyError(
            f"server key file {path} holds an unsupported {keys.kind(loaded)} key (Handle "
            "signatures are RSA or DSA)"
        )
    return loaded
