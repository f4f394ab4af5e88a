"""This node's HS_SITE — where and how it answers, and the key its signed
answers verify with — and the signing key itself."""

from __future__ import annotations

from pathlib import Path

from registry.secrets import ServerKey, load_or_create_server_key
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
