"""The Alembic migrations and the schema module describe the same database."""

from __future__ import annotations

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
