"""How much the node is used: the daily resolution counts in the database.

Every process adds what it counted (metrics.tally) every few seconds, with an
upsert that adds to the row, so any number of processes and hosts can write at
once and a restart loses at most the last few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import distinct, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t


class Counted(Protocol):
    resolutions: int
    found: int


@dataclass(slots=True)
class Day:
    day: str
    resolutions: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)
    enterprises_served: int = 0
    """Distinct enterprises with at least one identifier resolved (found) that day."""


async def add(conn: AsyncConnection, counts: Mapping[tuple[str, str, str], Counted]) -> None:
    """Add counts by (day, prefix, protocol) to their rows (``day``: ``YYYY-MM-DD``)."""
    if not counts:
        return
    rows = [
        {
            "day": day,
            "prefix": prefix,
            "protocol": protocol,
            "resolutions": counted.resolutions,
            "found": counted.found,
        }
        for (day, prefix, protocol), counted in counts.items()
    ]
    table = t.daily_resolutions
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.day, table.c.prefix, table.c.protocol],
        set_={
            "resolutions": table.c.resolutions + statement.excluded.resolutions,
            "found": table.c.found + statement.excluded.found,
        },
    )
    await conn.execute(statement)


async def days(conn: AsyncConnection, first: str, last: str) -> list[Day]:
    """Every day from ``first`` to ``last`` (``YYYY-MM-DD``) that has counts."""
    d = t.daily_resolutions.c
    found: dict[str, Day] = {}
    rows = await conn.execute(
        select(d.day, d.protocol, func.sum(d.resolutions))
        .where(d.day.between(first, last))
        .group_by(d.day, d.protocol)
    )
    for day, protocol, total in rows:
        entry = found.setdefault(day, Day(day))
        entry.by_protocol[protocol] = int(total)
        entry.resolutions += int(total)
    served = await conn.execute(
        select(d.day, func.count(distinct(d.prefix)))
        .where(d.day.between(first, last), d.prefix != "", d.found > 0)
        .group_by(d.day)
    )
    for day, count in served:
        found.setdefault(day, Day(day)).enterprises_served = int(count)
    return [found[day] for day in sorted(found)]


async def enterprises_served(conn: AsyncConnection, first: str, last: str) -> int:
    """Distinct enterprises with an identifier resolved between the two days."""
    d = t.daily_resolutions.c
    query = select(func.count(distinct(d.prefix))).where(
        d.day.between(first, last), d.prefix != "", d.found > 0
    )
    return int((await conn.execute(query)).scalar_one())


@dataclass(frozen=True, slots=True)
class Sizes:
    enterprises: int
    prefixes: int
    identifiers: int


async def sizes(conn: AsyncConnection) -> Sizes:
    """How many enterprises, enterprise prefixes and identifiers the registry holds."""
    counts = [
        int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        for table in (t.enterprises, t.prefixes, t.identifiers)
    ]
    return Sizes(*counts)
