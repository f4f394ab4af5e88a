"""The resolver and its answer cache, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import RegistryError
from registry.grammar import Grammar
from registry.models import PERM_RESTRICTED, HandleValue, SiteRoute
from registry.permissions import HandleIdentity
from registry.records import route_site
from registry.services import Actor, Registry, Services
from registry.values import (
    HS_ADMIN,
    HS_SECKEY,
    HS_VLIST,
    AdminRef,
    SiteInfo,
    ValueRef,
    encode_vlist,
)
from resolver.cache import AnswerCache
from resolver.feed import ChangeFeed
from resolver.resolution import Query, Resolution, Resolver, Status
from tests.factories import application, hosted_enterprise, record
from tests.factories import handle_value as value


def url(index: int, text: str, **fields: object) -> HandleValue:
    return value(index, "URL", text, **fields)


async def seeded(registry: Registry, admin: Actor) -> tuple[Resolver, str]:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    await registry.handles.create(
        admin,
        f"{prefix}/rec",
        [
            url(1, "https://example.org/a"),
            value(2, "EMAIL", "ops@example.org"),
            value(3, "URL.mirror", "https://mirror.example.org/a"),
            value(4, "SECRET", "s3cret", permissions=PERM_RESTRICTED),
        ],
        overwrite=False,
    )
    return Resolver(registry), prefix


async def test_resolution_verdicts(registry: Registry, admin: Actor) -> None:
    resolver, prefix = await seeded(registry, admin)
    _, routed = await registry.enterprises.apply(admin, application(2))
    await registry.enterprises.configure(
        admin, routed.prefix, SiteRoute(4, "10.1.2.3", tcp_port=2641, udp_port=2641)
    )

    found = await resolver.resolve(resolver.parse(f"{prefix}/rec"))
    assert found.status is Status.FOUND
    assert [v.index for v in found.values] == [1, 2, 3]  # restricted value 4 hidden
    assert found.enterprise is not None and found.enterprise.org_name == "测试企业1有限公司"

    missing = await resolver.resolve(resolver.parse(f"{prefix}/none"))
    assert missing.status is Status.NOT_FOUND
    unallocated = await resolver.resolve(resolver.parse("88.100.77/x"))
    assert unallocated.status is Status.NOT_FOUND
    foreign = await resolver.resolve(resolver.parse("88.200.1/x"))
    assert foreign.status is Status.NOT_HERE
    nothing = await resolver.resolve(resolver.parse(f"{prefix}/rec"), Query(types=("NOPE",)))
    assert nothing.status is Status.VALUES_NOT_FOUND

    referral = await resolver.resolve(resolver.parse(f"{routed.prefix}/anything"))
    assert referral.status is Status.REFERRAL
    assert referral.referral_handle == f"0.NA/{routed.prefix}"
    site = SiteInfo.from_bytes(referral.referral[0].data)
    assert site == route_site(SiteRoute(4, "10.1.2.3", 2641, 2641, None))
    assert site.servers[0].address_text == "10.1.2.3"


async def test_filters_are_or_ed_case_insensitive_with_subtypes(
    registry: Registry, admin: Actor
) -> None:
    resolver, prefix = await seeded(registry, admin)
    name = resolver.parse(f"{prefix}/rec")

    async def indexes(query: Query) -> list[int]:
        return [v.index for v in (await resolver.resolve(name, query)).values]

    assert await indexes(Query(types=("url",))) == [1, 3]  # URL.mirror is a subtype
    assert await indexes(Query(types=("URL.",))) == [3]  # only subtypes
    assert await indexes(Query(types=("URL.MIRROR",))) == [3]
    assert await indexes(Query(indexes=(2,), types=("URL",))) == [1, 2, 3]
    assert await indexes(Query(indexes=(4,))) == []  # restricted, anonymous caller


async def test_restricted_values_need_rights(registry: Registry, admin: Actor) -> None:
    resolver, prefix = await seeded(registry, admin)
    name = resolver.parse(f"{prefix}/rec")
    assert [v.index for v in (await resolver.resolve(name, caller=admin)).values] == [1, 2, 3, 4]
    from tests.factories import user_actor

    owner = await user_actor(registry, 1)
    assert 4 in [v.index for v in (await resolver.resolve(name, caller=owner)).values]
    await registry.enterprises.apply(admin, application(3))
    stranger = await user_actor(registry, 3)
    assert 4 not in [v.index for v in (await resolver.resolve(name, caller=stranger)).values]


def secret_key(secret: bytes) -> HandleValue:
    """An identity's secret (index 300), readable only by whom the record allows."""
    return HandleValue(300, HS_SECKEY, secret, permissions=PERM_RESTRICTED)


async def create_identity(registry: Registry, admin: Actor, name: str, secret: bytes) -> None:
    """A record holding only the secret of the identity ``300:<name>``."""
    await registry.handles.create(admin, name, [secret_key(secret)], overwrite=False)


async def test_identities_and_groups(registry: Registry, admin: Actor) -> None:
    """HS_ADMIN names an identity directly or through an HS_VLIST group."""
    resolver, prefix = await seeded(registry, admin)
    await create_identity(registry, admin, f"{prefix}/alice", b"alice-pw")
    await registry.handles.create(
        admin,
        f"{prefix}/team",
        [HandleValue(200, HS_VLIST, encode_vlist([ValueRef(f"{prefix}/alice", 300)]))],
        overwrite=False,
    )
    await registry.handles.create(
        admin,
        f"{prefix}/doc",
        [
            url(1, "https://example.org/doc"),
            HandleValue(2, "NOTE", b"internal", permissions=PERM_RESTRICTED),
            HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/team", 200, 0x0FF2).to_bytes()),
        ],
        overwrite=False,
    )
    alice = await registry.handles.authenticate(f"{prefix}/alice", 300, b"alice-pw")
    assert alice == HandleIdentity(f"{prefix}/alice", 300, f"{prefix.upper()}/alice")
    with pytest.raises(Exception, match="Authentication failed"):
        await registry.handles.authenticate(f"{prefix}/alice", 300, b"wrong")
    as_alice = Actor(None, "test", alice)
    doc = resolver.parse(f"{prefix}/doc")
    assert [v.index for v in (await resolver.resolve(doc, caller=as_alice)).values] == [1, 2, 100]
    await registry.handles.set_values(
        as_alice, f"{prefix}/doc", [url(1, "https://x.org")], overwrite=True
    )
    # 0x0FF2 lacks ADD_HANDLE (0x1): Alice may not create under the prefix through it.
    with pytest.raises(Exception, match="insufficient permissions"):
        await registry.handles.create(as_alice, f"{prefix}/new", [url(1, "u")], overwrite=False)
    # The secret is stored sealed, and shown in clear only to those who may read it.
    secret = await resolver.resolve(resolver.parse(f"{prefix}/alice"), caller=admin)
    assert secret.values[0].data == b"alice-pw"
    assert (
        await resolver.resolve(resolver.parse(f"{prefix}/alice"))
    ).status is Status.VALUES_NOT_FOUND


async def test_prefix_records(registry: Registry, admin: Actor) -> None:
    resolver, prefix = await seeded(registry, admin)
    for spelling in (prefix, f"0.NA/{prefix}", f"0.na/{prefix}"):
        answer = await resolver.resolve(resolver.parse(spelling))
        assert answer.status is Status.FOUND and answer.name.text == spelling
        types = {v.index: v.type for v in answer.values}
        assert types[100] == HS_ADMIN and types[101] == HS_ADMIN and types[2] == "DESC"
        admins = [AdminRef.from_bytes(v.data) for v in answer.values if v.type == HS_ADMIN]
        assert [a.handle for a in admins] == ["0.NA/88.100", f"0.NA/{prefix}"]
    node = await resolver.resolve(resolver.parse("0.NA/88.100"))
    assert {v.type for v in node.values} >= {"HS_ADMIN", "DESC"}
    assert all(v.type != HS_SECKEY for v in node.values)  # restricted: anonymous sees none
    assert (await resolver.resolve(resolver.parse("88.100"))).status is Status.FOUND
    assert (await resolver.resolve(resolver.parse("0.NA/88.100.99"))).status is Status.NOT_FOUND
    assert (await resolver.resolve(resolver.parse("88.300"))).status is Status.NOT_HERE


async def test_writes_evict_cached_answers(registry: Registry, admin: Actor) -> None:
    resolver, prefix = await seeded(registry, admin)
    name = resolver.parse(f"{prefix}/rec")

    def encode(resolution: object) -> object:
        return resolution

    first = await resolver.answer(name, Query(), "test", encode)
    assert await resolver.answer(name, Query(), "test", encode) is first  # cached
    await registry.handles.set_values(
        admin, f"{prefix}/rec", [url(1, "https://new")], overwrite=True
    )
    fresh = await resolver.answer(name, Query(), "test", encode)
    assert fresh is not first
    assert fresh.values[0].data == b"https://new"  # type: ignore[attr-defined]
    gone = resolver.parse(f"{prefix}/later")
    assert (await resolver.answer(gone, Query(), "test", encode)).status is Status.NOT_FOUND
    await registry.identifiers.create(admin, record(f"{prefix}/later"))
    assert (await resolver.answer(gone, Query(), "test", encode)).status is Status.FOUND
    # A prefix change reshapes whole subtrees of answers: the cache starts over.
    assert len(resolver.cache) > 0
    _, other = await registry.enterprises.apply(admin, application(5))
    await registry.enterprises.configure(admin, other.prefix, SiteRoute(4, "10.0.0.9", 2641))
    assert len(resolver.cache) == 0


def test_cache_is_bounded_lru_and_ttl_aware() -> None:
    now = [0.0]
    cache = AnswerCache(max_entries=3, clock=lambda: now[0])
    for i in range(3):
        cache.put(f"k{i}", "v", i, ttl=10)
    assert cache.get("k0", "v") == 0  # k0 becomes most recent
    cache.put("k3", "v", 3, ttl=10)
    assert cache.get("k1", "v") is None  # least recently used went
    assert len(cache) == 3 and cache.stats.evictions == 1
    now[0] = 10.0
    assert cache.get("k0", "v") is None  # expired
    cache.put("k9", "a", 1, ttl=5)
    cache.put("k9", "b", 2, ttl=5)
    cache.invalidate("k9")
    assert cache.get("k9", "a") is None and cache.get("k9", "b") is None
    cache.put("k8", "a", 1, ttl=0)
    assert cache.get("k8", "a") is None  # a zero TTL is never cached


async def test_change_feed_reaches_another_process(
    registry: Registry, admin: Actor, database_url: str
) -> None:
    """A second resolver on its own database connection pool stands for another process."""
    from registry.db import create_engine

    _, prefix = await seeded(registry, admin)
    db = create_engine(database_url)
    other = Registry(Services(db, node_prefix="88.100", node_key=registry.services.node_key))
    remote = Resolver(other)
    feed = ChangeFeed(db, remote.on_changes)
    await feed.start()
    try:
        name = remote.parse(f"{prefix}/rec")

        def encode(resolution: object) -> object:
            return resolution

        before = await remote.answer(name, Query(), "x", encode)
        await registry.handles.set_values(
            admin, f"{prefix}/rec", [url(1, "https://moved")], overwrite=True
        )
        deadline = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < deadline:
            after = await remote.answer(name, Query(), "x", encode)
            if after is not before:
                break
            await asyncio.sleep(0.05)
        assert after is not before, "the other process still serves the stale answer"
        assert after.values[0].data == b"https://moved"  # type: ignore[attr-defined]
    finally:
        await feed.stop()
        await db.dispose()


# --- a cached answer always equals a freshly computed one ----------------------

names = st.sampled_from(
    [f"88.100.1/h{i}" for i in range(4)] + ["88.100.1", "0.NA/88.100.1", "88.200.1/x"]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), names, st.integers(1, 3), st.text(max_size=8), st.booleans()),
        st.tuples(st.just("delete"), names),
        st.tuples(st.just("read"), names, st.sampled_from([(), ("URL",), ("EMAIL",)])),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_cached_answers_equal_fresh_ones(
    registry: Registry, admin: Actor, ops: list[tuple[object, ...]]
) -> None:
    resolver = Resolver(registry)
    if await _missing_prefix(registry):
        await hosted_enterprise(registry, admin, 1, prefix="88.100.1")

    def encode(resolution: Resolution) -> Resolution:
        return resolution

    for op in ops:
        kind, name = op[0], str(op[1])
        types: tuple[str, ...] = ()
        try:
            if kind == "put":
                index, text, restricted = int(op[2]), str(op[3]), bool(op[4])  # type: ignore[call-overload]
                new = HandleValue(
                    index,
                    "EMAIL" if index == 2 else "URL",
                    text.encode(),
                    permissions=PERM_RESTRICTED if restricted else 0x0E,
                )
                await registry.handles.set_values(admin, name, [new], overwrite=True)
            elif kind == "delete":
                await registry.handles.delete(admin, name)
            else:
                types = tuple(op[2])  # type: ignore[call-overload]
        except RegistryError:
            if kind == "put":  # no record yet (or a refused name): try creating it
                with contextlib.suppress(RegistryError):
                    await registry.handles.create(admin, name, [new], overwrite=True)
        parsed = resolver.parse(name)
        cached = await resolver.answer(parsed, Query(types=types), "prop", encode)
        fresh = await resolver.resolve(parsed, Query(types=types))
        assert (cached.status, cached.name.text, cached.values, cached.referral) == (
            fresh.status,
            fresh.name.text,
            fresh.values,
            fresh.referral,
        )


async def _missing_prefix(registry: Registry) -> bool:
    from registry import store

    async with registry.services.read() as conn:
        return await store.get_prefix(conn, "88.100.1") is None


# --- access control edges -------------------------------------------------------


async def limited_identity(
    registry: Registry, admin: Actor, prefix: str, perms: int
) -> tuple[Actor, str]:
    """An identity that administers one record with only ``perms``."""
    await create_identity(registry, admin, f"{prefix}/limited", b"pw")
    await registry.handles.create(
        admin,
        f"{prefix}/esc",
        [
            url(1, "https://example.org/e"),
            HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/limited", 300, perms).to_bytes()),
        ],
        overwrite=False,
    )
    identity = await registry.handles.authenticate(f"{prefix}/limited", 300, b"pw")
    return Actor(None, "test", identity), f"{prefix}/esc"


async def test_whole_record_rewrite_needs_the_admin_rights(
    registry: Registry, admin: Actor
) -> None:
    from registry.values import ADD_VALUE as ADD
    from registry.values import MODIFY_VALUE, REMOVE_VALUE

    resolver, prefix = await seeded(registry, admin)
    limited, target = await limited_identity(
        registry, admin, prefix, ADD | MODIFY_VALUE | REMOVE_VALUE
    )
    values = (await resolver.resolve(resolver.parse(target))).values
    # Changing a plain value is within the grant ...
    await registry.handles.create(
        limited, target, [url(1, "https://example.org/ok"), values[1]], overwrite=True
    )
    # ... promoting itself through the HS_ADMIN value is not, even inside a whole rewrite.
    promoted = HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/limited", 300, 0x0FFF).to_bytes())
    with pytest.raises(Exception, match="insufficient permissions"):
        await registry.handles.create(limited, target, [url(1, "u"), promoted], overwrite=True)
    with pytest.raises(Exception, match="insufficient permissions"):
        await registry.handles.create(limited, target, [url(1, "u")], overwrite=True)
    with pytest.raises(Exception, match="insufficient permissions"):
        await registry.handles.delete(limited, target)


async def test_sealed_blobs_open_only_in_their_place(registry: Registry, admin: Actor) -> None:
    from registry import store
    from registry.errors import InvalidValue

    resolver, prefix = await seeded(registry, admin)
    async with registry.services.read() as conn:
        node = await store.get_identifier(conn, "0.NA/88.100")
    assert node is not None
    sealed = next(v for v in node.values if v.type == HS_SECKEY).data
    with pytest.raises(InvalidValue, match="sealed"):
        await registry.handles.create(
            admin,
            f"{prefix}/planted",
            [HandleValue(1, "NOTE", sealed, permissions=PERM_RESTRICTED)],
            overwrite=False,
        )
    # Even a blob that got into a record some other way stays shut there.
    from registry.services.base import SYSTEM_ACTOR

    async with registry.services.change(SYSTEM_ACTOR) as change:
        await store.insert_identifier(
            change.conn,
            name=f"{prefix}/planted",
            name_key=f"{prefix}/planted",
            prefix_id=None,
            template_id=None,
            values=[HandleValue(1, HS_SECKEY, sealed, permissions=PERM_RESTRICTED)],
        )
    seen = await resolver.resolve(resolver.parse(f"{prefix}/planted"), caller=admin)
    assert seen.values == ()
    own = await resolver.resolve(resolver.parse("0.NA/88.100"), caller=admin)
    assert b"test-admin-secret" in [v.data for v in own.values]


async def test_prefix_records_keep_the_node_s_values(registry: Registry, admin: Actor) -> None:
    from registry.errors import InvalidValue
    from tests.factories import user_actor

    resolver, prefix = await seeded(registry, admin)
    owner = await user_actor(registry, 1)
    takeover = HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/x", 300, 0x0FFF).to_bytes())
    for index_value in (takeover, replace(takeover, index=101), url(1, "x"), url(2, "x")):
        with pytest.raises(InvalidValue, match="kept by the node"):
            await registry.handles.set_values(
                owner, f"0.NA/{prefix}", [index_value], overwrite=True
            )
    with pytest.raises(InvalidValue, match="kept by the node"):
        await registry.handles.remove_values(owner, f"0.NA/{prefix}", [100])
    # Other indexes are the enterprise's to use (its identity's secret, say).
    await registry.handles.set_values(
        owner,
        f"0.NA/{prefix}",
        [secret_key(b"s")],
        overwrite=True,
    )
    answer = await resolver.resolve(resolver.parse(f"0.NA/{prefix}"))
    admins = [AdminRef.from_bytes(v.data).handle for v in answer.values if v.type == HS_ADMIN]
    assert admins == ["0.NA/88.100", f"0.NA/{prefix}"]


async def test_group_cycles_cost_a_bounded_number_of_loads(
    registry: Registry, admin: Actor
) -> None:
    from registry import permissions

    _, prefix = await seeded(registry, admin)
    loops = [ValueRef(f"{prefix}/grp", 0)] * 40
    await registry.handles.create(
        admin, f"{prefix}/grp", [HandleValue(200, HS_VLIST, encode_vlist(loops))], overwrite=False
    )
    await registry.handles.create(
        admin,
        f"{prefix}/bomb",
        [
            url(1, "u"),
            HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/grp", 200, 0x0FFF).to_bytes()),
        ],
        overwrite=False,
    )
    loads = 0

    async def load(key: str) -> tuple[HandleValue, ...] | None:
        nonlocal loads
        loads += 1
        resolver = Resolver(registry)
        return (await resolver.resolve(resolver.parse(key), caller=admin)).values

    stranger = HandleIdentity("88.100.1/nobody", 300, "88.100.1/nobody")
    rights = await permissions.identity_rights(
        stranger,
        [HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/grp", 200, 0x0FFF).to_bytes())],
        registry.services.grammar,
        load,
    )
    assert rights == 0 and loads <= permissions.MAX_GROUP_LOADS


async def test_an_answer_read_across_a_write_is_not_cached(
    registry: Registry, admin: Actor
) -> None:
    resolver, prefix = await seeded(registry, admin)
    name = resolver.parse(f"{prefix}/rec")
    original = resolver.resolve

    async def slow_resolve(*args: object, **kwargs: object) -> Resolution:
        answer = await original(*args, **kwargs)  # type: ignore[arg-type]
        # The write commits after the read, before the answer is stored.
        await registry.handles.set_values(
            admin, f"{prefix}/rec", [url(1, "https://new")], overwrite=True
        )
        return answer

    resolver.resolve = slow_resolve  # type: ignore[method-assign]
    stale = await resolver.answer(name, Query(), "race", lambda r: r)
    resolver.resolve = original  # type: ignore[method-assign]
    assert stale.values[0].data == b"https://example.org/a"
    fresh = await resolver.answer(name, Query(), "race", lambda r: r)
    assert fresh.values[0].data == b"https://new"


def test_short_lived_answers_neither_evict_others_nor_pile_up() -> None:
    now = [0.0]
    cache = AnswerCache(max_entries=2, clock=lambda: now[0])
    cache.put("found-1", "v", "a", ttl=60)
    cache.put("found-2", "v", "b", ttl=60)
    for i in range(1000):  # a flood of made-up names, "not found" for 5 s each
        now[0] += 0.01
        cache.put(f"made-up-{i}", "v", None, ttl=5)
    assert cache.get("found-1", "v") == "a" and cache.get("found-2", "v") == "b"
    assert len(cache) <= 2 + 501  # only the last five seconds' misses are held
    now[0] += 5.0
    cache.put("one-more", "v", None, ttl=5)
    assert len(cache) == 3  # the expired ones went as the next arrived
    cache.invalidate("one-more")
    assert cache.get("one-more", "v") is None


def test_answers_of_other_nodes_are_kept_only_until_everything_is_dropped() -> None:
    cache = AnswerCache()
    epoch, cleared = cache.epoch, cache.cleared
    cache.invalidate("88.100.1/other")  # a write here, to another name
    cache.put("88.200/x", "v", "theirs", ttl=10, cleared=cleared)
    assert cache.get("88.200/x", "v") == "theirs"  # kept: no route changed meanwhile
    cache.put("88.100.1/y", "v", "ours", ttl=10, epoch=epoch)
    assert cache.get("88.100.1/y", "v") is None  # an own answer read across a write is not
    cleared = cache.cleared
    cache.clear()  # prefixes or routes changed
    cache.put("88.200/x", "v", "theirs", ttl=10, cleared=cleared)
    assert cache.get("88.200/x", "v") is None


def test_ttls_of_referrals_and_recursed_answers_are_capped() -> None:
    handle = Grammar().parse("88.200/x")
    day = (url(1, "https://a", ttl=86_400),)
    site = (value(1, "HS_SITE", "site", ttl=86_400),)
    assert Resolution(Status.FOUND, handle, day).ttl() == 3600
    assert Resolution(Status.FOUND, handle, day, recursed=True).ttl() == 300
    foreign = Resolution(Status.REFERRAL, handle, referral=site)  # no prefix of ours
    assert foreign.ttl() == 30
    short = Resolution(Status.FOUND, handle, (url(1, "https://a", ttl=20),), recursed=True)
    assert short.ttl() == 20
    assert Resolution(Status.UNREACHABLE, handle, recursed=True).ttl() == 5
