"""The Alembic migrations and the schema module describe the same database."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from registry.db import alembic_config, check_schema, create_engine, head_revision
from registry.schema import metadata


async def test_migrated_database_matches_schema_module(database_url: str) -> None:
    engine = create_engine(database_url)

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        await check_schema(engine)  # the fixture database is at head
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
    # One straight line of migrations: a single head, reached by the database.
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [head_revision()]


async def test_dns_paths_are_filled_in_for_stored_names(tmp_path: Path) -> None:
    """Revision 0004 gives the identifiers stored before it their DNS path."""
    from sqlalchemy import insert, select

    from registry import schema as t
    from registry.db import migrate
    from registry.store import utcnow

    for rule, expected in (("insensitive", "88.100.1._.abc"), ("sensitive", None)):
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / rule}.db")
        try:
            await migrate(engine, "0003")
            async with engine.begin() as conn:
                await conn.execute(insert(t.node_settings).values(key="suffix_case", value=rule))
                now = utcnow()
                await conn.execute(
                    insert(t.identifiers).values(
                        name="88.100.1/AbC",
                        name_key="88.100.1/ABC" if rule == "insensitive" else "88.100.1/AbC",
                        revision=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
            await migrate(engine)
            async with engine.connect() as conn:
                path = (await conn.execute(select(t.identifiers.c.dns_path))).scalar_one()
        finally:
            await engine.dispose()
        if expected is None:  # case kept: the suffix is spelt in base32hex
            assert path is not None and path.startswith("88.100.1._.b32-")
        else:
            assert path == expected
