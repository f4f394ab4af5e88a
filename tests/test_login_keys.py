"""The identities' records a native login checks its proof against are kept between
logins, and a key replaced or removed stops proving at once: at the next login after a
change made in this process, and as soon as the change feed brings one made in
another. The keep is bounded, and a change landing while a record is read keeps what
was read out of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from registry.crypto.sm2 import Sm2PrivateKey
from registry.db import create_engine
from registry.models import HandleValue
from registry.secrets import load_or_create_server_key
from registry.services import Actor, Registry, Services
from registry.services.base import ChangeEvent
from registry.values import HS_PUBKEY, encode_public_key
from resolver.feed import ChangeFeed
from resolver.handle import client as cl
from resolver.handle.identities import IdentityRecords
from tests.factories import handle_value as text
from tests.native_node import Native, native_server, seed

INDEX = 300


def _key_value(key: Sm2PrivateKey, index: int = INDEX) -> HandleValue:
    return HandleValue(index, HS_PUBKEY, encode_public_key(key.public_key()))


async def _login(native: Native, handle: str, key: Sm2PrivateKey) -> int:
    session = await native.session(cl.KeyPair(handle, INDEX, key))
    try:
        return (await session.login()).header.response_code
    finally:
        await session.close()


async def _identity(native: Native, admin: Actor) -> tuple[str, Sm2PrivateKey]:
    prefix = await seed(native.registry, admin)
    handle = f"{prefix}/keyholder"
    key = Sm2PrivateKey.generate()
    await native.registry.handles.create(
        admin, handle, [_key_value(key), text(1, "URL", "https://keyholder")], overwrite=False
    )
    return handle, key


async def test_a_login_reads_the_record_once_then_keeps_it(native: Native, admin: Actor) -> None:
    handle, key = await _identity(native, admin)
    kept = native.service.identities.cache
    assert await _login(native, handle, key) == 1
    hits = kept.stats.hits
    assert await _login(native, handle, key) == 1
    assert kept.stats.hits == hits + 1, "the second login read the record again"


async def test_a_replaced_key_no_longer_logs_in(native: Native, admin: Actor) -> None:
    handle, old = await _identity(native, admin)
    assert await _login(native, handle, old) == 1  # the record is now kept
    new = Sm2PrivateKey.generate()
    await native.registry.handles.modify_values(admin, handle, [_key_value(new)])
    assert await _login(native, handle, old) == 403
    assert await _login(native, handle, new) == 1


async def test_a_removed_key_or_identity_no_longer_logs_in(native: Native, admin: Actor) -> None:
    handle, key = await _identity(native, admin)
    assert await _login(native, handle, key) == 1
    await native.registry.handles.remove_values(admin, handle, [INDEX])
    assert await _login(native, handle, key) == 403
    await native.registry.handles.set_values(admin, handle, [_key_value(key)], overwrite=True)
    assert await _login(native, handle, key) == 1
    await native.registry.handles.delete(admin, handle)
    assert await _login(native, handle, key) == 403


@contextlib.asynccontextmanager
async def _another_process(
    registry: Registry, database_url: str, tmp_path: Path
) -> AsyncIterator[Native]:
    """The native service over a registry of its own connection pool, following the
    change feed: another process of the node."""
    engine = create_engine(database_url)
    services = registry.services
    other = Registry(
        Services(
            engine,
            node_prefix=services.node_prefix,
            node_key=services.node_key,
            grammar=services.grammar,
        )
    )
    try:
        server_key = load_or_create_server_key(tmp_path / "elsewhere.pem")
        async with native_server(other, server_key) as native:
            feed = ChangeFeed(engine, native.resolver.on_changes)
            await feed.start()
            try:
                yield native
            finally:
                await feed.stop()
    finally:
        await engine.dispose()


async def test_a_key_replaced_by_another_process_stops_working_when_the_feed_brings_it(
    native: Native, admin: Actor, database_url: str, tmp_path: Path
) -> None:
    handle, old = await _identity(native, admin)
    async with _another_process(native.registry, database_url, tmp_path) as elsewhere:
        assert await _login(elsewhere, handle, old) == 1  # kept over there
        new = Sm2PrivateKey.generate()
        await native.registry.handles.modify_values(admin, handle, [_key_value(new)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while await _login(elsewhere, handle, old) == 1:
            assert loop.time() < deadline, "the other process still takes the replaced key"
            await asyncio.sleep(0.05)
        assert await _login(elsewhere, handle, old) == 403
        assert await _login(elsewhere, handle, new) == 1


async def test_the_keep_is_bounded(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)
    records = IdentityRecords(native.registry.services, stale=native.resolver.stale, kept=2)
    for n in range(5):
        await native.registry.handles.create(
            admin, f"{prefix}/id{n}", [_key_value(Sm2PrivateKey.generate())], overwrite=False
        )
        name_key = native.resolver.parse(f"{prefix}/id{n}").key
        assert (await records.values(name_key))[0].type == HS_PUBKEY
        assert len(records.cache) <= 2
    assert await records.values(native.resolver.parse(f"{prefix}/nobody").key) == ()
    assert len(records.cache) <= 2  # made-up names are not kept


async def test_a_change_during_the_read_keeps_the_read_record_out(
    native: Native, admin: Actor
) -> None:
    handle, _ = await _identity(native, admin)
    key = native.resolver.parse(handle).key
    services = native.registry.services
    records = IdentityRecords(services, stale=native.resolver.stale)
    read = services.read

    @contextlib.asynccontextmanager
    async def read_then_change() -> AsyncIterator[AsyncConnection]:
        async with read() as conn:
            yield conn
        # The record was read; a change to it is committed before it could be kept.
        records.on_changes([ChangeEvent(0, "identifier.updated", handle)])

    services.read = read_then_change  # type: ignore[method-assign]
    try:
        assert await records.values(key)
    finally:
        del services.read
    assert len(records.cache) == 0, "a record read across a change was kept"
    assert await records.values(key)
    assert len(records.cache) == 1
