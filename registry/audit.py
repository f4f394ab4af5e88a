"""The hash chain of the audit log (pure functions).

Each entry stores the hash of the entry before it, and its own hash covers
that link plus every field of the entry. Editing, deleting or reordering any
entry therefore breaks every hash after it, which :func:`verify_chain` finds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .models import AuditEntry

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    remote: str,
    prev_hash: str,
) -> str:
    body = canonical_json([seq, at.isoformat(), actor, action, target, detail, remote, prev_hash])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    reason: str


def verify_chain(entries: Iterable[AuditEntry]) -> list[ChainProblem]:
    """Check an audit log read in ``seq`` order; an empty list means intact."""
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for entry in entries:
        if entry.seq != expected_seq:
            problems.append(
                ChainProblem(entry.seq, f"sequence jumps from {expected_seq - 1} to {entry.seq}")
            )
        if entry.prev_hash != expected_prev:
            problems.append(ChainProblem(entry.seq, "link to the previous entry is broken"))
        recomputed = entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            detail=entry.detail,
            remote=entry.remote,
            prev_hash=entry.prev_hash,
        )
        if recomputed != entry.hash:
            problems.append(ChainProblem(entry.seq, "entry content does not match its hash"))
        expected_prev = entry.hash
        expected_seq = entry.seq + 1
    return problems
