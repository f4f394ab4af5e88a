"""Password and secret-key hashes: argon2id now, older hashes upgraded at login."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import func, select

from registry import passwords, schema, store
from registry.models import Role
from registry.passwords import (
    PARAMETERS,
    StoredSecret,
    check_plain,
    hash_secret,
    needs_rehash,
    verify_plain,
    verify_secret,
)
from registry.secrets import NodeKey, dated_digest, sha256_hex
from registry.services import SYSTEM_ACTOR, Registry
from registry.services import accounts as accounts_module
from tests.conftest import ApiClient
from tests.factories import ADMIN_AK, ADMIN_SK
from tests.test_rest import basic

CURRENT_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


def scrypt_hash(plain: str) -> str:
    """A hash as releases before argon2id stored it: scrypt (N=2^14) of the sha256 hex."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(sha256_hex(plain).encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return "$".join(
        [
            "scrypt",
            "16384",
            "8",
            "1",
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def weak_argon2_hash(plain: str) -> str:
    """argon2id, but far below the current parameters."""
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, hash_len=16, salt_len=8)
    return weak.hash(sha256_hex(plain))


def is_current(stored: str) -> bool:
    return stored.startswith(CURRENT_PREFIX) and extract_parameters(stored) == PARAMETERS


# --- the hashes themselves ----------------------------------------------------------


def test_new_hashes_are_argon2id_at_the_chosen_parameters() -> None:
    stored = hash_secret("s3cret")
    assert is_current(stored)
    assert not needs_rehash(stored)
    assert PARAMETERS.memory_cost == 19 * 1024 and PARAMETERS.time_cost == 2
    assert PARAMETERS.parallelism == 1
    assert verify_secret("s3cret", stored) and not verify_secret("s3cret!", stored)
    kept = StoredSecret.from_plain("hunter2", NodeKey.generate())
    assert is_current(kept.hash)
    assert check_plain("hunter2", kept.hash) == passwords.Verdict(ok=True)  # nothing to redo


@pytest.mark.parametrize("older", [scrypt_hash, weak_argon2_hash], ids=["scrypt", "weak-argon2"])
def test_older_hashes_verify_and_are_hashed_anew(older: Any) -> None:
    stored = older("pa55")
    assert needs_rehash(stored)
    assert verify_plain("pa55", stored) and not verify_plain("pa56", stored)
    assert check_plain("pa56", stored) == passwords.Verdict(ok=False)
    verdict = check_plain("pa55", stored)
    assert verdict.ok and verdict.rehashed is not None
    assert is_current(verdict.rehashed) and verify_plain("pa55", verdict.rehashed)


@pytest.mark.parametrize(
    "stored", ["", "garbage", "md5$1$2$3$x$y", "scrypt$x$8$1$AA==$AA==", "$argon2id$v=19$nonsense"]
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not verify_secret("s3cret", stored)
    assert check_plain("s3cret", stored) == passwords.Verdict(ok=False)


# --- upgrades at login, over the real HTTP API ------------------------------------------


async def insert_user(registry: Registry, username: str, plain: str, secret_hash: str) -> None:
    async with registry.services.change(SYSTEM_ACTOR) as change:
        await store.insert_user(
            change.conn,
            username=username,
            role=Role.NODE_ADMIN,
            enterprise_id=None,
            email=None,
            mobile=None,
            secret_hash=secret_hash,
            digest_sealed=registry.services.node_key.seal(sha256_hex(plain).encode()),
        )


async def insert_access_key(
    registry: Registry, access_key: str, plain: str, secret_hash: str
) -> None:
    async with registry.services.change(SYSTEM_ACTOR) as change:
        admin = await store.find_user(change.conn, username="admin")
        assert admin is not None
        await store.insert_access_key(
            change.conn,
            access_key=access_key,
            user_id=admin.id,
            secret_hash=secret_hash,
            digest_sealed=registry.services.node_key.seal(sha256_hex(plain).encode()),
        )


async def stored_hash(registry: Registry, login: str) -> str:
    keys, users = schema.access_keys, schema.users
    async with registry.services.read() as conn:
        found = (
            await conn.execute(select(keys.c.secret_hash).where(keys.c.access_key == login))
        ).scalar_one_or_none()
        if found is None:
            found = (
                await conn.execute(select(users.c.secret_hash).where(users.c.username == login))
            ).scalar_one()
    return str(found)


async def login(api: ApiClient, name: str, password: str, *, path: str = "/identity/token") -> Any:
    """The token of a login, or None when it was refused."""
    status, body = await api.call(
        "POST", path, json={"username": name, "password": password}, token=""
    )
    assert status == 200, body
    return body["data"]["token"] if body["status"] == 1 else None


async def token_works(api: ApiClient, token: str) -> bool:
    status, body = await api.call("GET", "/snms/api/prefix/page", token=token)
    assert status == 200, body
    return bool(body["status"] == 1)


@pytest.mark.parametrize("older", [scrypt_hash, weak_argon2_hash], ids=["scrypt", "weak-argon2"])
async def test_an_older_password_hash_is_upgraded_at_login(
    api: ApiClient, registry: Registry, older: Any
) -> None:
    old = older("old-scheme-pw")
    await insert_user(registry, "legacy", "old-scheme-pw", old)
    assert await login(api, "legacy", "wrong-pw") is None
    assert await stored_hash(registry, "legacy") == old  # a failed login changes nothing

    token = await login(api, "legacy", "old-scheme-pw")
    assert token is not None
    upgraded = await stored_hash(registry, "legacy")
    assert is_current(upgraded) and verify_plain("old-scheme-pw", upgraded)
    assert await token_works(api, token)  # bound to the hash that was stored

    again = await login(api, "legacy", "old-scheme-pw")
    assert again is not None and await token_works(api, again)
    assert await stored_hash(registry, "legacy") == upgraded  # upgraded once, not every time
    assert await login(api, "legacy", "wrong-pw") is None
    # The v1 login uses the sealed digest, which the upgrade leaves as it was.
    dated = dated_digest(sha256_hex("old-scheme-pw"), registry.services.local_date())
    assert await login(api, "legacy", dated, path="/identity/token/v1") is not None


async def test_an_older_access_key_hash_is_upgraded_at_login(
    api: ApiClient, registry: Registry
) -> None:
    old = scrypt_hash("legacy-sk")
    await insert_access_key(registry, "AKLEGACY0001", "legacy-sk", old)
    assert await login(api, "AKLEGACY0001", "not-the-sk") is None
    assert await stored_hash(registry, "AKLEGACY0001") == old
    token = await login(api, "AKLEGACY0001", "legacy-sk")
    assert token is not None and await token_works(api, token)
    upgraded = await stored_hash(registry, "AKLEGACY0001")
    assert is_current(upgraded) and verify_plain("legacy-sk", upgraded)
    assert await login(api, "AKLEGACY0001", "legacy-sk") is not None


async def test_an_older_access_key_hash_is_upgraded_over_basic(
    api: ApiClient, registry: Registry
) -> None:
    old = scrypt_hash("basic-sk")
    await insert_access_key(registry, "AKLEGACY0002", "basic-sk", old)
    record = "/api/handles/0.NA/88.100"
    wrong = await api.call("GET", record, token="", headers=basic("AKLEGACY0002", "nope"))
    assert wrong[0] == 401
    assert await stored_hash(registry, "AKLEGACY0002") == old
    right = await api.call("GET", record, token="", headers=basic("AKLEGACY0002", "basic-sk"))
    assert right[0] == 200, right
    upgraded = await stored_hash(registry, "AKLEGACY0002")
    assert is_current(upgraded) and verify_plain("basic-sk", upgraded)


async def test_bootstrap_upgrades_the_admin_key_without_rotating_it(registry: Registry) -> None:
    async with registry.services.change(SYSTEM_ACTOR) as change:
        await change.conn.execute(
            schema.access_keys.update()
            .where(schema.access_keys.c.access_key == ADMIN_AK)
            .values(secret_hash=scrypt_hash(ADMIN_SK))
        )
    await registry.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
    upgraded = await stored_hash(registry, ADMIN_AK)
    assert is_current(upgraded) and verify_plain(ADMIN_SK, upgraded)
    audit = schema.audit_log
    async with registry.services.read() as conn:
        rotations = (
            await conn.execute(select(func.count()).where(audit.c.action == "access_key.rotated"))
        ).scalar_one()
    assert rotations == 0  # the same secret: no rotation recorded
    assert (await registry.accounts.login(ADMIN_AK, ADMIN_SK)).principal.is_admin


async def test_unknown_logins_are_checked_against_a_current_hash(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = accounts_module.check_plain

    def spy(secret: str, stored: str) -> passwords.Verdict:
        checked.append(stored)
        return real(secret, stored)

    monkeypatch.setattr(accounts_module, "check_plain", spy)
    assert await login(api, "nobody-here", "whatever") is None
    assert len(checked) == 1 and is_current(checked[0])


# --- races ------------------------------------------------------------------------------


class HashGate:
    """Holds re-hashing on its worker threads until opened: a login then stands
    between checking its secret and storing the new hash."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, holds: int) -> None:
        loop = asyncio.get_running_loop()
        self._holds = holds
        self._arrived = 0
        self._all_in = asyncio.Event()
        self._release = threading.Event()
        real = passwords.hash_secret

        def held(secret: str) -> str:
            loop.call_soon_threadsafe(self._arrive)
            if not self._release.wait(30):
                raise TimeoutError("the hash gate was never opened")
            return real(secret)

        monkeypatch.setattr(passwords, "hash_secret", held)

    def _arrive(self) -> None:
        self._arrived += 1
        if self._arrived >= self._holds:
            self._all_in.set()

    async def all_held(self) -> None:
        await asyncio.wait_for(self._all_in.wait(), 30)

    def open(self) -> None:
        self._release.set()


@pytest.fixture
def gates() -> Iterator[list[HashGate]]:
    made: list[HashGate] = []
    yield made
    for gate in made:  # never leave a worker thread waiting
        gate.open()


async def test_a_password_change_racing_an_upgrade_is_kept(
    api: ApiClient, registry: Registry, monkeypatch: pytest.MonkeyPatch, gates: list[HashGate]
) -> None:
    await insert_user(registry, "racer", "old-password", scrypt_hash("old-password"))
    changed = StoredSecret.from_plain("new-password", registry.services.node_key)
    gate = HashGate(monkeypatch, holds=1)
    gates.append(gate)
    racing = asyncio.create_task(login(api, "racer", "old-password"))
    await gate.all_held()  # the old password checked out; its new hash is not stored yet
    async with registry.services.change(SYSTEM_ACTOR) as change:
        await change.conn.execute(
            schema.users.update()
            .where(schema.users.c.username == "racer")
            .values(secret_hash=changed.hash, secret_digest_sealed=changed.digest_sealed)
        )
    gate.open()
    token = await asyncio.wait_for(racing, 30)
    assert token is not None  # the password was right when it was checked
    assert await stored_hash(registry, "racer") == changed.hash  # the change stands
    assert not await token_works(api, token)  # and the old password's token died with it
    assert await login(api, "racer", "old-password") is None
    assert await login(api, "racer", "new-password") is not None


async def test_concurrent_upgrades_of_one_secret_keep_every_token(
    api: ApiClient, registry: Registry, monkeypatch: pytest.MonkeyPatch, gates: list[HashGate]
) -> None:
    await insert_access_key(registry, "AKLEGACY0003", "shared-sk", scrypt_hash("shared-sk"))
    gate = HashGate(monkeypatch, holds=2)
    gates.append(gate)
    first = asyncio.create_task(login(api, "AKLEGACY0003", "shared-sk"))
    second = asyncio.create_task(login(api, "AKLEGACY0003", "shared-sk"))
    await gate.all_held()  # both checked the scrypt hash; both will try to store a new one
    gate.open()
    tokens = await asyncio.wait_for(asyncio.gather(first, second), 30)
    upgraded = await stored_hash(registry, "AKLEGACY0003")
    assert is_current(upgraded)
    for token in tokens:
        assert token is not None and await token_works(api, token)
