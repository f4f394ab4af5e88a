"""This node's HS_SITE — where and how it answers, and the key its signed
answers verify with — and the signing keys themselves: the server key of
certified answers, the optional SM2 site key published beside it, and the
issuer key of trusted resolution.

The HS_SITE's server key field holds one key, the RSA (or DSA) key CNRI clients
check certified answers with; the SM2 site key (``site_sm2_key_file``) is
published as an ``HS_PUBKEY`` of the node's prefix record instead, at
``registry.records.SITE_SM2_KEY_INDEX`` (302), in the IDIS SDK's ``SM2_PUB_KEY``
record. When ``issuer_key_file`` names the same file, that one key also signs
the node's certificates and records (SM2256)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from registry.crypto import CryptoError, Sm2PrivateKey
from registry.crypto.keys import PrivateKey, kind, load_private_key, private_pem
from registry.secrets import ServerKey, create_private_file, load_or_create_server_key
from registry.services.trust import NodeIssuer, new_signing_key
from registry.trust.issue import IssueError, SigningKey, check_algorithm
from registry.values import (
    INTERFACE_BOTH,
    INTERFACE_QUERY,
    PROTOCOL_HTTP,
    PROTOCOL_HTTPS,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    Interface,
    SiteInfo,
    SiteServer,
    encode_public_key,
)

from .config import Config, Endpoint
from .listen import StartupError


def node_site(
    config: Config,
    http: Endpoint,
    *,
    tls: bool,
    handle: Endpoint | None = None,
    public_key: bytes = b"",
    description: str = "",
) -> SiteInfo:
    """This node's HS_SITE: where and how it answers (the interfaces it serves),
    and the key its signed answers verify with."""
    address = config.site_address or (handle or http).host
    if address in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard is no address to publish
        address = "127.0.0.1"
    interfaces = []
    if handle is not None:
        interfaces += [
            Interface(INTERFACE_BOTH, PROTOCOL_TCP, handle.port),
            Interface(INTERFACE_QUERY, PROTOCOL_UDP, handle.port),
        ]
    interfaces.append(
        Interface(INTERFACE_BOTH, PROTOCOL_HTTPS if tls else PROTOCOL_HTTP, http.port)
    )
    server = SiteServer(1, SiteServer.pack_address(address), public_key, tuple(interfaces))
    desc = description or f"idnode {config.node_prefix}"
    return SiteInfo(servers=(server,), attributes=(("desc", desc),))


def load_server_key(config: Config) -> ServerKey:
    """The key the node signs answers with: RSA made on first start, or a DSA
    site key brought from HANDLE.NET."""
    try:
        return load_or_create_server_key(Path(config.server_key_file))
    except (OSError, RuntimeError) as exc:
        raise StartupError(str(exc)) from None


def configured_site(config: Config) -> bytes:
    """This node's HS_SITE from its configuration (for processes that serve nothing)."""
    site = node_site(
        config,
        config.http,
        tls=bool(config.tls_cert),
        handle=config.handle,
        public_key=encode_public_key(load_server_key(config).public_key()),
    )
    return site.to_bytes()


def _private_key_file(path: Path, setting: str) -> PrivateKey:
    """The key in a private key file that only its owner may read; StartupError in one
    line naming ``setting`` otherwise."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read {setting} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupError(
            f"{setting} {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it"
        )
    try:
        return load_private_key(data)
    except CryptoError as exc:
        raise StartupError(f"{setting} {path}: {exc}") from None


def load_site_sm2_key(config: Config) -> Sm2PrivateKey | None:
    """The node's SM2 site key (``site_sm2_key_file``, PEM, mode 0600): made on first
    start, else read and checked; None when the setting is empty."""
    if not config.site_sm2_key_file:
        return None
    path = Path(config.site_sm2_key_file)
    if not path.exists():
        made = Sm2PrivateKey.generate()
        if create_private_file(path, private_pem(made)):
            return made
    key = _private_key_file(path, "site_sm2_key_file")
    if not isinstance(key, Sm2PrivateKey):
        raise StartupError(f"site_sm2_key_file {path} holds a {kind(key)} key, not an SM2 key")
    return key


def site_sm2_pubkey(config: Config) -> bytes:
    """The ``HS_PUBKEY`` data the node publishes for its SM2 site key (the IDIS SDK's
    ``SM2_PUB_KEY`` record); empty when it has none."""
    key = load_site_sm2_key(config)
    return b"" if key is None else encode_public_key(key.public_key())


def load_or_create_issuer_key(path: Path, algorithm: str) -> SigningKey:
    """The node's issuer key (PEM, mode 0600): made on first start in ``algorithm``
    (RS256: RSA-2048; SM2256: SM2), else read and checked to sign with it."""
    if not path.exists():
        made = new_signing_key(algorithm)
        if create_private_file(path, private_pem(made)):
            return made
    key = _private_key_file(path, "issuer_key_file")
    if not isinstance(key, rsa.RSAPrivateKey | Sm2PrivateKey):
        raise StartupError(
            f"issuer_key_file {path} holds a {kind(key)} key; trusted resolution signs with "
            "RSA (RS256) or SM2 (SM2256)"
        )
    try:
        check_algorithm(key, algorithm)
    except IssueError as exc:
        raise StartupError(f"issuer_key_file {path}: issuer_algorithm {exc}") from None
    return key


def load_issuer(config: Config) -> NodeIssuer | None:
    """The node as an issuer of trust (the ``issuer_*`` settings): its key, identity
    and certificate, checked; None when ``issuer_key_file`` is not set."""
    if not config.issuer_key_file:
        return None
    algorithm = config.issuer_algorithm.upper()
    key = load_or_create_issuer_key(Path(config.issuer_key_file), algorithm)
    imported = None
    if config.issuer_cert_file:
        try:
            imported = Path(config.issuer_cert_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise StartupError(
                f"cannot read issuer_cert_file {config.issuer_cert_file}: {reason}"
            ) from None
    try:
        return NodeIssuer.configured(
            key,
            algorithm=algorithm,
            identity=config.issuer_identity,
            node_prefix=config.node_prefix,
            imported=imported,
            cert_days=config.issuer_cert_days,
            resign_on_change=config.resign_on_change,
            now=int(time.time()),
        )
    except IssueError as exc:
        raise StartupError(str(exc)) from None
