"""Accounts: users, the credentials behind a login, and access keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..models import Role, User
from .rows import insert_returning_id, record_of, utcnow


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored secret and the user it belongs to."""

    user: User
    secret_hash: str
    digest_sealed: bytes | None
    access_key_id: int | None


def _user(row: Row[Any]) -> User:
    return record_of(User, row, role=Role(row.role))


def _new_credential(secret_hash: str, digest_sealed: bytes | None) -> dict[str, Any]:
    """The columns a user and an access key share: the secret's hash and sealed
    digest, enabled, created now."""
    return {
        "secret_hash": secret_hash,
        "secret_digest_sealed": digest_sealed,
        "status": 1,
        "created_at": utcnow(),
    }


async def insert_user(
    conn: AsyncConnection,
    *,
    username: str,
    role: Role,
    enterprise_id: int | None,
    email: str | None,
    mobile: str | None,
    secret_hash: str,
    digest_sealed: bytes | None,
) -> int:
    return await insert_returning_id(
        conn,
        t.users,
        username=username,
        role=str(role),
        enterprise_id=enterprise_id,
        email=email,
        mobile=mobile,
        **_new_credential(secret_hash, digest_sealed),
    )


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(select(t.users).where(t.users.c.id == user_id))).first()
    return _user(row) if row else None


async def bind_user_to_enterprise(conn: AsyncConnection, user_id: int, enterprise_id: int) -> None:
    await conn.execute(
        update(t.users).where(t.users.c.id == user_id).values(enterprise_id=enterprise_id)
    )


async def find_user(
    conn: AsyncConnection,
    *,
    username: str | None = None,
    email: str | None = None,
    mobile: str | None = None,
) -> User | None:
    conditions: list[ColumnElement[bool]] = []
    if username is not None:
        conditions.append(t.users.c.username == username)
    if email is not None:
        conditions.append(t.users.c.email == email)
    if mobile is not None:
        conditions.append(t.users.c.mobile == mobile)
    if not conditions:
        return None
    row = (await conn.execute(select(t.users).where(or_(*conditions)).limit(1))).first()
    return _user(row) if row else None


async def credential_for_login(conn: AsyncConnection, login: str) -> Credential | None:
    """The secret behind a login name: an access key first, else a username."""
    row = (
        await conn.execute(
            select(t.access_keys, t.users)
            .select_from(t.access_keys.join(t.users, t.access_keys.c.user_id == t.users.c.id))
            .where(t.access_keys.c.access_key == login, t.access_keys.c.status == 1)
        )
    ).first()
    if row is not None:
        key = row._mapping
        user = await get_user(conn, key[t.users.c.id])
        assert user is not None
        return Credential(
            user=user,
            secret_hash=key[t.access_keys.c.secret_hash],
            digest_sealed=key[t.access_keys.c.secret_digest_sealed],
            access_key_id=key[t.access_keys.c.id],
        )
    user_row = (await conn.execute(select(t.users).where(t.users.c.username == login))).first()
    if user_row is None:
        return None
    return Credential(
        user=_user(user_row),
        secret_hash=user_row.secret_hash,
        digest_sealed=user_row.secret_digest_sealed,
        access_key_id=None,
    )


async def insert_access_key(
    conn: AsyncConnection, *, access_key: str, user_id: int, secret_hash: str, digest_sealed: bytes
) -> int:
    return await insert_returning_id(
        conn,
        t.access_keys,
        access_key=access_key,
        user_id=user_id,
        **_new_credential(secret_hash, digest_sealed),
    )


async def update_access_key_secret(
    conn: AsyncConnection, key_id: int, *, secret_hash: str, digest_sealed: bytes
) -> None:
    await conn.execute(
        update(t.access_keys)
        .where(t.access_keys.c.id == key_id)
        .values(secret_hash=secret_hash, secret_digest_sealed=digest_sealed, status=1)
    )


async def find_access_key(conn: AsyncConnection, access_key: str) -> tuple[int, int] | None:
    """``(key id, user id)`` of an access key, enabled or not."""
    row = (
        await conn.execute(
            select(t.access_keys.c.id, t.access_keys.c.user_id).where(
                t.access_keys.c.access_key == access_key
            )
        )
    ).first()
    return (row.id, row.user_id) if row else None


async def credential_hash(
    conn: AsyncConnection, user_id: int, access_key_id: int | None
) -> str | None:
    """The current secret hash behind a token: its enabled access key, or the user's."""
    if access_key_id is None:
        query = select(t.users.c.secret_hash).where(t.users.c.id == user_id)
    else:
        query = select(t.access_keys.c.secret_hash).where(
            t.access_keys.c.id == access_key_id,
            t.access_keys.c.user_id == user_id,
            t.access_keys.c.status == 1,
        )
    value = (await conn.execute(query)).scalar_one_or_none()
    return str(value) if value is not None else None


async def replace_secret_hash(
    conn: AsyncConnection, user_id: int, access_key_id: int | None, *, old: str, new: str
) -> bool:
    """Put ``new`` in place of a credential's hash only if it still is ``old``
    (compare-and-set: a re-hash never undoes a concurrent change of the secret)."""
    table = t.users if access_key_id is None else t.access_keys
    row = t.users.c.id == user_id if access_key_id is None else t.access_keys.c.id == access_key_id
    result = await conn.execute(
        update(table).where(row, table.c.secret_hash == old).values(secret_hash=new)
    )
    return result.rowcount == 1


async def touch_access_key(conn: AsyncConnection, key_id: int) -> None:
    await conn.execute(
        update(t.access_keys).where(t.access_keys.c.id == key_id).values(last_used_at=utcnow())
    )
