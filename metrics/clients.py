"""Client addresses as the node counts and limits them: an IPv4 address is a
client, an IPv6 client is its /64 (one host can hold a whole /64), and addresses
in exempt networks (the node's own tooling) are not limited at all.

One definition for the per-client traffic table here and for the limiters (login
lockout, request rates and quotas, DNS response rate limiting), so a client is the
same client in every count; it lives in ``metrics`` because that package imports
nothing else of ours, so the others can all import it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

MAX_KEYS = 100_000
EXEMPT = ""
"""The client key of an exempt address."""


class ClientKeys:
    """Address → the key it is limited under: itself, its /64, or EXEMPT."""

    def __init__(self, exempt: Sequence[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self._keys: dict[str, str] = {}

    def key(self, address: str) -> str:
        found = self._keys.get(address)
        if found is not None:
            return found
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            found = address
        else:
            if any(ip in network for network in self.networks):
                found = EXEMPT
            elif isinstance(ip, ipaddress.IPv6Address):
                found = str(ipaddress.ip_network(f"{ip}/64", strict=False))
            else:
                found = address
        if len(self._keys) >= MAX_KEYS:
            self._keys.clear()  # a cache of a pure function: clearing only costs time
        self._keys[address] = found
        return found
