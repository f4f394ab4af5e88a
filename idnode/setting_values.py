"""Parsers of single settings' values, and the error every bad setting raises."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from registry.trust import KeyFormatError, PublicKey, load_public_key


class ConfigError(ValueError):
    pass


def ipv6_twin(setting: str, host: str) -> str | None:
    """The IPv6 address to serve beside ``host`` (``listen_ipv6``): ``auto``
    pairs loopback with ``::1`` and the IPv4 wildcard with ``::``; ``off`` pairs
    nothing; an address is used as given. An IPv6 host needs no twin."""
    choice = setting.strip().lower()
    if choice in ("", "off", "no", "false") or ":" in host:
        return None
    if choice != "auto":
        try:
            return str(ipaddress.IPv6Address(setting.strip().strip("[]")))
        except ValueError:
            raise ConfigError(
                f"listen_ipv6: {setting!r} is not auto, off or an IPv6 address"
            ) from None
    if host == "0.0.0.0":  # noqa: S104 - the wildcard's twin is the IPv6 wildcard
        return "::"
    try:
        return "::1" if ipaddress.ip_address(host).is_loopback else None
    except ValueError:  # a host name: its addresses are the operator's to list
        return "::1" if host == "localhost" else None


def parse_networks(text: str, setting: str) -> tuple[str, ...]:
    """``10.0.0.0/8, ::1/128``: the networks listed, each checked (ConfigError
    naming ``setting`` if one is not a network)."""
    listed = tuple(n.strip() for n in text.split(",") if n.strip())
    for network in listed:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ConfigError(f"{setting}: {exc}") from None
    return listed


_PEM_KEY_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def trust_root_keys(setting: str) -> tuple[PublicKey, ...]:
    """``trust_root_keys``: PEM text (any number of keys), or PEM files separated by commas."""
    if "-----BEGIN" in setting:
        blocks = [block.encode("ascii", "replace") for block in _PEM_KEY_BLOCK.findall(setting)]
        sources = [("trust_root_keys", block) for block in blocks] or [
            ("trust_root_keys", setting.encode("utf-8", "replace"))
        ]
    else:
        sources = []
        for path in (p.strip() for p in setting.split(",") if p.strip()):
            try:
                text = Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigError(f"trust_root_keys: cannot read {path}: {exc.strerror}") from None
            found = _PEM_KEY_BLOCK.findall(text.decode("ascii", "replace"))
            sources += [(path, b.encode("ascii")) for b in found] or [(path, text)]
    keys = []
    for origin, data in sources:
        try:
            keys.append(load_public_key(data))
        except KeyFormatError as exc:
            raise ConfigError(f"trust_root_keys: {origin}: {exc}") from None
    return tuple(keys)
