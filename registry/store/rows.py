"""What every table module uses: the time rows are stamped with, and many
rows written at once."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection


def utcnow() -> datetime:
    return datetime.now(UTC)


COPY_ROWS = 64
"""From this many rows, PostgreSQL gets them by COPY: several times faster than
INSERT for a batch registration (no statement to bind per row)."""


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Rows into ``table``: one INSERT, or COPY on PostgreSQL for many. Every row
    has the same keys, values as the columns take them (aware datetimes)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_ROWS:
        await conn.execute(insert(table), list(rows))
        return
    import asyncpg  # the PostgreSQL driver, only where it is in use

    columns = list(rows[0])
    pick = operator.itemgetter(*columns)
    records = (
        [pick(row) for row in rows] if len(columns) > 1 else [(row[columns[0]],) for row in rows]
    )
    raw: Any = (await conn.get_raw_connection()).driver_connection
    try:
        await raw.copy_records_to_table(table.name, records=records, columns=columns)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc
    except (asyncpg.DataError, asyncpg.exceptions.DataError) as exc:
        raise DataError(f"COPY {table.name}", None, exc) from exc
