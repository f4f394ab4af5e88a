"""Who may do what to a Handle record (pure functions over values).

A record's ``HS_ADMIN`` values name its administrators: an identity
``index:handle``, or a group — an ``HS_VLIST`` value listing identities and
further groups. Each grant carries the 12 permission bits of RFC 3651.
Callers that are registry users (an access key or SNMS login) are mapped
onto the same bits: a node administrator holds all of them everywhere, an
enterprise user all of them under its own prefixes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .grammar import Grammar, GrammarError
from .models import ADMIN_READ, PUBLIC_READ, HandleValue, Principal
from .secrets import is_sealed_value
from .values import (
    ADD_ADMIN,
    ADD_VALUE,
    ALL_ADMIN_PERMISSIONS,
    HS_ADMIN,
    HS_VLIST,
    MODIFY_ADMIN,
    MODIFY_VALUE,
    REMOVE_ADMIN,
    REMOVE_VALUE,
    AdminRef,
    ValueFormatError,
    decode_vlist,
)

MAX_GROUP_DEPTH = 5


@dataclass(frozen=True, slots=True)
class HandleIdentity:
    """A caller proven to hold the secret or key at ``index`` of ``handle``."""

    handle: str
    index: int
    key: str
    """The handle's normalized form, for comparisons."""

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"


@dataclass(frozen=True, slots=True)
class ReadAccess:
    """Which values of one record a caller may read beside the public ones.

    ``full``: every value, sealed secrets included (the record's administrators).
    ``granted``: the restricted data values (admin-readable, not public) another
    enterprise was granted (:mod:`registry.services.grants`) — of the types in
    ``types`` (upper case; None: of every type), never ``HS_*`` values, never
    sealed secrets.
    """

    full: bool = False
    granted: bool = False
    types: frozenset[str] | None = None

    def may_read(self, value: HandleValue) -> bool:
        if self.full or value.permissions & PUBLIC_READ:
            return True
        if not self.granted or not value.permissions & ADMIN_READ:
            return False
        if is_sealed_value(value.data):
            return False
        kind = value.type.upper()
        if kind.startswith("HS_"):
            return False
        return self.types is None or kind in self.types


NO_ACCESS = ReadAccess()
FULL_ACCESS = ReadAccess(full=True)


def principal_rights(principal: Principal, handled_prefix_key: str) -> int:
    if principal.is_admin or handled_prefix_key in principal.prefix_keys:
        return ALL_ADMIN_PERMISSIONS
    return 0


def _admin_bit(value_type: str, plain: int, admin: int) -> int:
    return admin if value_type.upper() == HS_ADMIN else plain


def required_bits(
    current: dict[int, HandleValue],
    written: Sequence[HandleValue],
    *,
    removed: Sequence[int] = (),
) -> int:
    """The HS_ADMIN rights a change to a record needs: ADD_VALUE for a new index,
    MODIFY_VALUE for a changed one, REMOVE_VALUE for a dropped one — and the
    ADD/MODIFY/REMOVE_ADMIN rights where an HS_ADMIN value is involved."""
    bits = 0
    for value in written:
        old = current.get(value.index)
        if old is None:
            bits |= _admin_bit(value.type, ADD_VALUE, ADD_ADMIN)
        elif not old.same_content(value):
            bits |= _admin_bit(old.type, MODIFY_VALUE, MODIFY_ADMIN)
            bits |= _admin_bit(value.type, MODIFY_VALUE, MODIFY_ADMIN)
    for index in removed:
        if index in current:
            bits |= _admin_bit(current[index].type, REMOVE_VALUE, REMOVE_ADMIN)
    return bits


def admin_refs(values: Iterable[HandleValue]) -> list[AdminRef]:
    refs = []
    for value in values:
        if value.type.upper() != HS_ADMIN:
            continue
        try:
            refs.append(AdminRef.from_bytes(value.data))
        except ValueFormatError:
            continue  # a broken HS_ADMIN grants nothing
    return refs


def _same(ref_key: str, ref_index: int, identity: HandleIdentity) -> bool:
    return ref_key == identity.key and (ref_index in (0, identity.index))


RecordLoader = Callable[[str], Awaitable[tuple[HandleValue, ...] | None]]
"""Loads the values of a record by normalized name, or None if there is none."""


MAX_GROUP_LOADS = 64
"""Records one access decision may load while expanding groups."""
MAX_GROUP_MEMBERS = 1024


@dataclass
class _Walk:
    """The state of one access decision: what was visited, what it may still load."""

    visited: set[tuple[str, int]] = field(default_factory=set)
    loads: int = 0


async def identity_rights(
    identity: HandleIdentity,
    values: Iterable[HandleValue],
    grammar: Grammar,
    load: RecordLoader,
) -> int:
    """The permission bits ``values``' HS_ADMIN entries give ``identity``."""
    granted = 0
    walk = _Walk()
    for ref in admin_refs(values):
        if await _holds(identity, ref.handle, ref.index, grammar, load, 0, walk):
            granted |= ref.permissions
    return granted


async def _holds(
    identity: HandleIdentity,
    handle: str,
    index: int,
    grammar: Grammar,
    load: RecordLoader,
    depth: int,
    walk: _Walk,
) -> bool:
    """Whether ``index:handle`` is ``identity`` itself or a group containing it.

    Groups may nest and even cycle: each (group, index) is expanded once, to a
    bounded depth and a bounded number of loads, so no record can make one
    access decision expensive.
    """
    try:
        key = grammar.parse(handle).key
    except GrammarError:
        return False
    if _same(key, index, identity):
        return True
    if depth >= MAX_GROUP_DEPTH or (key, index) in walk.visited:
        return False
    walk.visited.add((key, index))
    if walk.loads >= MAX_GROUP_LOADS:
        return False
    walk.loads += 1
    values = await load(key)
    for value in values or ():
        if value.type.upper() != HS_VLIST or index not in (0, value.index):
            continue
        try:
            members = decode_vlist(value.data)
        except ValueFormatError:
            continue
        for member in members[:MAX_GROUP_MEMBERS]:
            if await _holds(identity, member.handle, member.index, grammar, load, depth + 1, walk):
                return True
    return False
