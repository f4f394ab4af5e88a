"""What both sides of sync/PROTOCOL.md compute alike: the reconciliation
summary (§9) of a node's identifier names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any


def prefix_of(name: str) -> str:
    """What a summary groups a name under: the text before its ``/``."""
    return name.partition("/")[0]


def digests(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per prefix: how many live names, and the SHA-256 of them sorted, one a line."""
    by_prefix: dict[str, list[str]] = {}
    for name in names:
        by_prefix.setdefault(prefix_of(name), []).append(name)
    out = {}
    for prefix, group in sorted(by_prefix.items()):
        text = "".join(n + "\n" for n in sorted(group, key=lambda n: n.encode("utf-8")))
        out[prefix] = {
            "identifiers": len(group),
            "digest": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    return out
