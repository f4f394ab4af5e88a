"""Users, access keys, logins and the bootstrap administrator."""

from __future__ import annotations

import hmac
import re
import secrets
import string

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import AlreadyExists, Forbidden, InvalidRequest, LoginFailed, Unauthenticated
from ..grammar import prefix_handle
from ..models import (
    PERM_PUBLIC,
    PERM_RESTRICTED,
    EnterpriseStatus,
    HandleValue,
    Principal,
    Role,
)
from ..secrets import StoredSecret, dated_digest, sha256_hex, verify_plain, verify_secret
from ..values import HS_ADMIN, HS_SECKEY, AdminRef
from .base import SYSTEM_ACTOR, Actor, Change, Services

LOGIN_FAILED = "用户名/密码错误！"
BOOTSTRAP_USERNAME = "admin"
HANDLE_ADMIN_INDEX = 100
HANDLE_SECKEY_INDEX = 300
MAX_USERNAME = 50
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits


def new_access_key_pair() -> tuple[str, str]:
    access_key = "AK" + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(18))
    return access_key, secrets.token_urlsafe(30)


def check_password_digest(digest: str) -> str:
    if not _SHA256_HEX.fullmatch(digest):
        raise InvalidRequest("password 应为 sha256 十六进制摘要 (64 hex characters)")
    return digest.lower()


class Accounts:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def login(self, login: str, password: str, *, dated: bool = False) -> Principal:
        """Check a user name or access key and its secret.

        ``dated`` is the ``/identity/token/v1`` form, where the password is
        ``sha256(sha256(secret) + "yyyy-MM-dd")``. The day is the node's local
        date; the neighbouring days are accepted too, so a client whose clock
        is on the other side of midnight can still log in.
        """
        if not login or not password or len(login) > 64 or len(password) > 255:
            raise LoginFailed(LOGIN_FAILED)
        async with self.s.read() as conn:
            credential = await store.credential_for_login(conn, login)
        if credential is None:
            # Spend the same time as a real check: no user-name oracle.
            verify_plain(password, _DUMMY_HASH)
            raise LoginFailed(LOGIN_FAILED)
        if dated:
            ok = self._check_dated(password, credential.digest_sealed)
        else:
            ok = verify_plain(password, credential.secret_hash)
        if not ok or credential.user.status != 1:
            raise LoginFailed(LOGIN_FAILED)
        via = "ak" if credential.access_key_id is not None else "user"
        principal = await self.principal(credential.user.id, via)
        if credential.access_key_id is not None:
            async with self.s.change(SYSTEM_ACTOR) as change:
                await store.touch_access_key(change.conn, credential.access_key_id)
        return principal

    def _check_dated(self, password: str, sealed: bytes | None) -> bool:
        if sealed is None:
            return False
        digest = self.s.node_key.unseal(sealed).decode()
        candidates = (dated_digest(digest, self.s.local_date(d)) for d in (0, -1, 1))
        return any(hmac.compare_digest(password.lower(), c) for c in candidates)

    async def principal(self, user_id: int, via: str) -> Principal:
        """The caller behind a verified token, as of now (disabled users drop out)."""
        async with self.s.read() as conn:
            user = await store.get_user(conn, user_id)
            if user is None or user.status != 1:
                raise Unauthenticated("用户不存在或已停用 (user unknown or disabled)")
            keys: frozenset[str] = frozenset()
            if user.role is Role.ENTERPRISE and user.enterprise_id is not None:
                enterprise = await store.get_enterprise(conn, user.enterprise_id)
                if enterprise is None or enterprise.status is not EnterpriseStatus.ACTIVE:
                    raise Unauthenticated("企业已停用 (enterprise disabled)")
                prefixes = await store.prefixes_of_enterprise(conn, user.enterprise_id)
                keys = frozenset(p.prefix_key for p in prefixes)
        return Principal(
            user_id=user.id,
            username=user.username,
            role=user.role,
            enterprise_id=user.enterprise_id,
            via=via,
            prefix_keys=keys,
        )

    async def register_user(
        self,
        actor: Actor,
        *,
        username: str,
        password_digest: str,
        email: str | None,
        mobile: str | None,
        role: Role = Role.ENTERPRISE,
    ) -> int:
        """``/identity/registry``: a new UI user, by a node administrator."""
        actor.require_admin()
        if not username or len(username) > MAX_USERNAME:
            raise InvalidRequest(f"用户名长度应为1~{MAX_USERNAME}")
        if not mobile:
            raise InvalidRequest("缺少必要的请求参数: mobile")
        digest = check_password_digest(password_digest)
        async with self.s.change(actor) as change:
            await self.ensure_user_is_new(change.conn, username, email, mobile)
            secret = StoredSecret.from_digest(digest, self.s.node_key)
            user_id = await store.insert_user(
                change.conn,
                username=username,
                role=role,
                enterprise_id=None,
                email=email or None,
                mobile=mobile,
                secret_hash=secret.hash,
                digest_sealed=secret.digest_sealed,
            )
            await change.audit("user.registered", username, {"role": str(role)})
        return user_id

    @staticmethod
    async def ensure_user_is_new(
        conn: AsyncConnection, username: str, email: str | None, mobile: str | None
    ) -> None:
        for field, value in (("userName", username), ("email", email), ("mobile", mobile)):
            if not value:
                continue
            found = await store.find_user(
                conn,
                username=value if field == "userName" else None,
                email=value if field == "email" else None,
                mobile=value if field == "mobile" else None,
            )
            if found is not None:
                raise AlreadyExists(f"{field} {value} 已存在 (already registered)")

    async def create_access_key(self, actor: Actor, username: str) -> tuple[str, str]:
        """A new AK/SK pair for a user; the secret is shown only this once."""
        principal = actor.require()
        async with self.s.change(actor) as change:
            user = await store.find_user(change.conn, username=username)
            if user is None:
                raise InvalidRequest(f"用户{username}不存在 (unknown user)")
            if not principal.is_admin and principal.user_id != user.id:
                raise Forbidden("没有权限 (may create keys only for yourself)")
            access_key, secret_key = new_access_key_pair()
            secret = StoredSecret.from_plain(secret_key, self.s.node_key)
            await store.insert_access_key(
                change.conn,
                access_key=access_key,
                user_id=user.id,
                secret_hash=secret.hash,
                digest_sealed=secret.digest_sealed,
            )
            await change.audit("access_key.created", username, {"accessKey": access_key})
        return access_key, secret_key

    async def bootstrap_admin(self, access_key: str, secret_key: str) -> None:
        """Create or refresh the node administrator named by ``IDNODE_BOOTSTRAP_ADMIN``.

        Also writes the Handle identity ``300:0.NA/<node prefix>`` whose
        ``HS_SECKEY`` is the same secret, administrator of every prefix here.
        """
        if not access_key or not secret_key or len(access_key) > 64:
            raise InvalidRequest("IDNODE_BOOTSTRAP_ADMIN must be <access-key>:<secret-key>")
        secret = StoredSecret.from_plain(secret_key, self.s.node_key)
        async with self.s.change(SYSTEM_ACTOR) as change:
            conn = change.conn
            existing_key = await store.find_access_key(conn, access_key)
            if existing_key is None:
                user = await store.find_user(conn, username=BOOTSTRAP_USERNAME)
                if user is None:
                    user_id = await store.insert_user(
                        conn,
                        username=BOOTSTRAP_USERNAME,
                        role=Role.NODE_ADMIN,
                        enterprise_id=None,
                        email=None,
                        mobile=None,
                        secret_hash=secret.hash,
                        digest_sealed=secret.digest_sealed,
                    )
                elif user.role is Role.NODE_ADMIN:
                    user_id = user.id
                else:
                    raise InvalidRequest(f"user {BOOTSTRAP_USERNAME!r} exists and is no admin")
                await store.insert_access_key(
                    conn,
                    access_key=access_key,
                    user_id=user_id,
                    secret_hash=secret.hash,
                    digest_sealed=secret.digest_sealed,
                )
                await change.audit("access_key.bootstrapped", access_key, {})
            else:
                key_id, _ = existing_key
                credential = await store.credential_for_login(conn, access_key)
                if credential is None or not verify_secret(
                    sha256_hex(secret_key), credential.secret_hash
                ):
                    await store.update_access_key_secret(
                        conn, key_id, secret_hash=secret.hash, digest_sealed=secret.digest_sealed
                    )
                    await change.audit("access_key.rotated", access_key, {})
            await self._write_handle_identity(change, secret_key)

    async def _write_handle_identity(self, change: Change, secret_key: str) -> None:
        name = prefix_handle(self.s.node_prefix)
        key = self.s.grammar.parse(name).key
        now = int(change.now.timestamp())
        values = (
            HandleValue(
                index=HANDLE_ADMIN_INDEX,
                type=HS_ADMIN,
                data=AdminRef(handle=name, index=HANDLE_SECKEY_INDEX).to_bytes(),
                timestamp=now,
                permissions=PERM_PUBLIC,
            ),
            HandleValue(
                index=HANDLE_SECKEY_INDEX,
                type=HS_SECKEY,
                data=secret_key.encode("utf-8"),
                timestamp=now,
                permissions=PERM_RESTRICTED,
            ),
        )
        existing = await store.get_identifier(change.conn, key)
        if existing is None:
            await store.insert_identifier(
                change.conn,
                name=name,
                name_key=key,
                prefix_id=None,
                template_id=None,
                values=values,
            )
        else:
            current = {v.index: v for v in existing.values}
            if all(v.index in current and current[v.index].same_content(v) for v in values):
                return
            kept = [v for v in existing.values if v.index not in {x.index for x in values}]
            await store.replace_identifier_values(
                change.conn,
                existing,
                template_id=existing.template_id,
                values=sorted([*kept, *values], key=lambda v: v.index),
            )
        await change.audit("identity.bootstrapped", f"{HANDLE_SECKEY_INDEX}:{name}", {})


_DUMMY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)
