"""Users, access keys, logins and the bootstrap administrator."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import string
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    LoginFailed,
    Unauthenticated,
)
from ..grammar import prefix_handle
from ..models import (
    PERM_PUBLIC,
    PERM_RESTRICTED,
    EnterpriseStatus,
    HandleValue,
    Principal,
    Role,
)
from ..passwords import StoredSecret, check_plain, dummy_hash, needs_rehash, verify_plain
from ..secrets import (
    NodeKey,
    credential_fingerprint,
    dated_digest,
    open_value,
    seal_value,
    sha256_hex,
)
from ..values import HS_ADMIN, HS_SECKEY, AdminRef
from .base import SYSTEM_ACTOR, Actor, Change, Services

log = logging.getLogger("idnode.accounts")

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


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login: the caller, and the credential a token is bound to."""

    principal: Principal
    access_key_id: int | None
    fingerprint: str


class Accounts:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._dummy_sealed = services.node_key.seal(sha256_hex("no such user").encode())
        self._dummy_hash = dummy_hash()  # made now rather than at the first unknown login
        self._background: set[asyncio.Task[None]] = set()

    async def login(
        self, login: str, password: str, *, dated: bool = False, remote: str = ""
    ) -> Login:
        """Check a user name or access key and its secret.

        ``dated`` is the ``/identity/token/v1`` form, where the password is
        ``sha256(sha256(secret) + "yyyy-MM-dd")``. The day is the node's local
        date; the neighbouring days are accepted too, so a client whose clock
        is on the other side of midnight can still log in. An unknown login
        costs the same work as a known one, so timing tells no names. An
        outdated hash (an older scheme or parameters) is replaced by a new one
        once the secret checked out against it.
        """
        if not login or not password or len(login) > 64 or len(password) > 255:
            self.s.auth_failed("password")
            raise LoginFailed(LOGIN_FAILED)
        self.s.refuse_if_locked(login, remote, "password")
        async with self.s.read() as conn:
            credential = await store.credential_for_login(conn, login)
        rehashed = None
        if dated:
            sealed = credential.digest_sealed if credential else self._dummy_sealed
            ok = self._check_dated(password, sealed)
        else:
            stored = credential.secret_hash if credential else self._dummy_hash
            verdict = await asyncio.to_thread(check_plain, password, stored)
            ok, rehashed = verdict.ok, verdict.rehashed
        if credential is None or not ok or credential.user.status != 1:
            self.s.auth_failed("password")
            self.s.lockout.failed(login, remote)
            raise LoginFailed(LOGIN_FAILED)
        self.s.lockout.succeeded(login)
        key_id = credential.access_key_id
        principal = await self.principal(credential.user.id, "ak" if key_id is not None else "user")
        if key_id is not None:
            self._in_background(self._touch(key_id))
        in_force = credential.secret_hash
        if rehashed is not None:
            in_force = await self._rehash(credential, rehashed, password)
        return Login(principal, key_id, credential_fingerprint(in_force))

    def _check_dated(self, password: str, sealed: bytes | None) -> bool:
        if sealed is None:
            return False
        digest = self.s.node_key.unseal(sealed).decode()
        candidates = [dated_digest(digest, self.s.local_date(d)) for d in (0, -1, 1)]
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
        given = password.lower().encode("utf-8", "surrogatepass")
        return any(hmac.compare_digest(given, c.encode()) for c in candidates)

    async def _rehash(self, credential: store.Credential, rehashed: str, password: str) -> str:
        """Store a proven secret's new hash in place of its outdated one; the hash
        in force afterwards, which the login's token is bound to.

        Inline rather than in the background: tokens carry the hash's fingerprint,
        so this login's token must be made for the hash that stays.
        """
        user_id, key_id = credential.user.id, credential.access_key_id
        try:
            async with self.s.change(SYSTEM_ACTOR) as change:
                if await store.replace_secret_hash(
                    change.conn, user_id, key_id, old=credential.secret_hash, new=rehashed
                ):
                    log.info("re-hashed the secret of user %s (access key %s)", user_id, key_id)
                    return rehashed
                current = await store.credential_hash(change.conn, user_id, key_id)
        except Exception as exc:  # the login stands; the next one tries again
            log.warning("could not re-hash the secret of user %s: %s", user_id, exc)
            return credential.secret_hash
        # Written meanwhile: by another login that re-hashed the same secret (this
        # token lives on with that hash), or by a change of the secret (it dies).
        if current is not None and await asyncio.to_thread(verify_plain, password, current):
            return current
        return credential.secret_hash

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _touch(self, key_id: int) -> None:
        """Record when an access key was last used, off the login's own path."""
        try:
            async with self.s.change(SYSTEM_ACTOR) as change:
                await store.touch_access_key(change.conn, key_id)
        except Exception as exc:  # bookkeeping only: never fail a login over it
            log.warning("could not record use of access key %s: %s", key_id, exc)

    async def drain(self) -> None:
        """Finish background bookkeeping (before the database engine is disposed of)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def principal(
        self,
        user_id: int,
        via: str,
        *,
        access_key_id: int | None = None,
        fingerprint: str | None = None,
    ) -> Principal:
        """The caller behind a token, as of now.

        A disabled user or enterprise drops out, and with ``fingerprint`` a
        token also dies with its credential: a disabled or re-keyed access
        key, a changed password.
        """
        async with self.s.read() as conn:
            user = await store.get_user(conn, user_id)
            if user is None or user.status != 1:
                raise Unauthenticated("用户不存在或已停用 (user unknown or disabled)")
            if fingerprint is not None:
                secret_hash = await store.credential_hash(conn, user_id, access_key_id)
                if secret_hash is None or not hmac.compare_digest(
                    credential_fingerprint(secret_hash), fingerprint
                ):
                    raise Unauthenticated("token已失效，请重新登录 (credential changed)")
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
        secret = await stored_secret(digest, self.s.node_key)
        async with self.s.change(actor) as change:
            await self.ensure_user_is_new(change.conn, username, email, mobile)
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
        if not principal.is_admin and username != principal.username:
            raise Forbidden("没有权限 (may create keys only for yourself)")
        access_key, secret_key = new_access_key_pair()
        secret = await stored_secret(sha256_hex(secret_key), self.s.node_key)
        async with self.s.change(actor) as change:
            user = await store.find_user(change.conn, username=username)
            if user is None:
                raise InvalidRequest(f"用户{username}不存在 (unknown user)")
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
        secret = await stored_secret(sha256_hex(secret_key), self.s.node_key)
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
                if credential is None or not await asyncio.to_thread(
                    verify_plain, secret_key, credential.secret_hash
                ):
                    await store.update_access_key_secret(
                        conn, key_id, secret_hash=secret.hash, digest_sealed=secret.digest_sealed
                    )
                    await change.audit("access_key.rotated", access_key, {})
                elif needs_rehash(credential.secret_hash):  # the same secret, hashed as now
                    await store.replace_secret_hash(
                        conn,
                        credential.user.id,
                        key_id,
                        old=credential.secret_hash,
                        new=secret.hash,
                    )
            await self._write_handle_identity(change, secret_key)

    async def _write_handle_identity(self, change: Change, secret_key: str) -> None:
        name = prefix_handle(self.s.node_prefix)
        parsed = self.s.grammar.parse(name)
        key = parsed.key
        now = int(change.now.timestamp())
        admin = HandleValue(
            index=HANDLE_ADMIN_INDEX,
            type=HS_ADMIN,
            data=AdminRef(handle=name, index=HANDLE_SECKEY_INDEX).to_bytes(),
            timestamp=now,
            permissions=PERM_PUBLIC,
        )
        existing = await store.get_identifier(change.conn, key)
        current = {v.index: v for v in existing.values} if existing else {}
        old_secret = current.get(HANDLE_SECKEY_INDEX)
        if (
            old_secret is not None
            and old_secret.type == HS_SECKEY
            and open_value(
                self.s.node_key, old_secret.data, name_key=key, index=HANDLE_SECKEY_INDEX
            )
            == secret_key.encode()
            and HANDLE_ADMIN_INDEX in current
            and current[HANDLE_ADMIN_INDEX].same_content(admin)
        ):
            return
        # The protocol needs the secret itself back (HS_SECKEY proofs are MACs
        # keyed with it), so it is sealed at rest rather than hashed.
        seckey = HandleValue(
            index=HANDLE_SECKEY_INDEX,
            type=HS_SECKEY,
            data=seal_value(
                self.s.node_key, secret_key.encode(), name_key=key, index=HANDLE_SECKEY_INDEX
            ),
            timestamp=now,
            permissions=PERM_RESTRICTED,
        )
        if existing is None:
            await store.insert_identifier(
                change.conn,
                name=name,
                name_key=key,
                prefix_id=None,
                template_id=None,
                values=(admin, seckey),
                dns_path=self.s.dns_path(parsed),
            )
        else:
            kept = [v for v in existing.values if v.index not in (admin.index, seckey.index)]
            await store.replace_identifier_values(
                change.conn,
                existing,
                template_id=existing.template_id,
                values=sorted([*kept, admin, seckey], key=lambda v: v.index),
            )
        await change.record(
            "identity.bootstrapped", name, {"handle": name, "index": HANDLE_SECKEY_INDEX}
        )


async def stored_secret(digest_hex: str, key: NodeKey) -> StoredSecret:
    """Hash a secret off the event loop: argon2id takes tens of milliseconds."""
    return await asyncio.to_thread(StoredSecret.from_digest, digest_hex, key)
