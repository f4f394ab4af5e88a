"""Backup and restore of the whole registry as one portable file.

A backup is gzip-compressed JSON lines: a header (format, schema revision,
time), then each table — a line with its name and columns, one JSON array per
row — and a trailer with the row counts, so a cut-off file is refused. Binary
columns travel as base64, times as ISO 8601 UTC. It is read in one snapshot
(``REPEATABLE READ`` on PostgreSQL; one read transaction on SQLite, whose WAL
keeps it consistent while the node writes), so it is consistent while the node
serves. It restores into SQLite or PostgreSQL alike (a way to move a node
between them), in one transaction: all of it, or nothing.

Both take an optional ``progress`` (anything with ``update(n)`` and a settable
``total``; the command line passes ``idnode.progress.Progress``), told of the
rows as they go.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import Column, LargeBinary, Table, delete, func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import schema as t
from .db import describe_error, head_revision, revision_of, write_transaction
from .errors import StorageUnavailable
from .store import insert_rows

FORMAT = "idnode-backup"
VERSION = 1
BATCH_ROWS = 5_000
PROGRESS_ROWS = 1_000
"""Rows between two reports to ``progress`` while dumping."""
HISTORY_TABLES = (t.audit_log, t.enterprises, t.prefixes, t.identifiers)
"""A database with rows in these holds a registry: it is never overwritten (its
audit log is append-only, and a restore must not erase a history)."""


class BackupError(RuntimeError):
    """The backup cannot be made or restored; the message says why."""


class Progress(Protocol):
    """Told how many more rows were handled; ``total`` is set once it is known."""

    total: int | None

    def update(self, n: int) -> None: ...


def _unavailable(exc: BaseException) -> BackupError:
    return BackupError(f"database unavailable: {describe_error(exc)}")


def _schema_error(schema: str | None, advice: str) -> BackupError:
    at = "has no idnode schema" if schema is None else f"is at schema {schema}"
    return BackupError(f"the database {at}, this idnode's is {head_revision()}: {advice}")


@dataclass
class Summary:
    schema: str
    created: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _tables() -> list[Table]:
    """Every table, parents before children."""
    return list(t.metadata.sorted_tables)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        zoned = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return zoned.astimezone(UTC).isoformat()
    return value


def _decoder(column: Column[Any]) -> Any:
    if isinstance(column.type, LargeBinary):
        return lambda v: None if v is None else base64.b64decode(v, validate=True)
    if isinstance(column.type, t.UTCDateTime):
        return lambda v: None if v is None else datetime.fromisoformat(v)
    return None


async def dump(engine: AsyncEngine, out: IO[bytes], progress: Progress | None = None) -> Summary:
    """Write the registry to ``out`` (a binary stream; gzip is applied here).

    A database that cannot be reached or fails is a ``BackupError``; an error
    writing ``out`` is left to the caller, who knows what it writes to."""
    try:
        conn = await engine.connect()
    except (OSError, DBAPIError) as exc:
        raise _unavailable(exc) from None
    try:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            return await _dump(conn, out, progress)
    except DBAPIError as exc:
        raise _unavailable(exc) from None
    finally:
        await conn.close()


async def _dump(conn: AsyncConnection, out: IO[bytes], progress: Progress | None) -> Summary:
    schema = await conn.run_sync(revision_of)
    if schema != head_revision():
        advice = "nothing to back up" if schema is None else "use the idnode that serves it"
        raise _schema_error(schema, advice)
    summary = Summary(schema, datetime.now(UTC).isoformat())
    if progress is not None:  # counted in the same snapshot as the rows that follow
        counts = [await conn.scalar(select(func.count()).select_from(tb)) for tb in _tables()]
        progress.total = sum(count or 0 for count in counts)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as packed:
        header = {"format": FORMAT, "version": VERSION, "schema": schema}
        _write(packed, {**header, "created": summary.created})
        for table in _tables():
            columns = [column.name for column in table.columns]
            _write(packed, {"table": table.name, "columns": columns})
            count = 0
            async for row in _rows(conn, table):
                packed.write(_line([_encode(value) for value in row]))
                count += 1
                if progress is not None and count % PROGRESS_ROWS == 0:
                    progress.update(PROGRESS_ROWS)
            summary.rows[table.name] = count
            if progress is not None:
                progress.update(count % PROGRESS_ROWS)
        _write(packed, {"end": True, "rows": summary.rows})
    return summary


async def _rows(conn: AsyncConnection, table: Table) -> AsyncIterator[Any]:
    query = select(*table.columns).order_by(*table.primary_key.columns)
    result = await conn.stream(query.execution_options(yield_per=BATCH_ROWS))
    async for row in result:
        yield row


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _write(packed: gzip.GzipFile, value: Any) -> None:
    packed.write(_line(value))


def read_header(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rb") as packed:
        return _header(packed.readline())


def _unreadable(path: Path, exc: BaseException) -> BackupError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return BackupError(f"cannot read {path}: {reason or type(exc).__name__}")


def _lines(packed: gzip.GzipFile, path: Path) -> Iterator[bytes]:
    """The file's lines; a read that fails (gzip's CRC, a cut-off file) is a
    ``BackupError`` here, told apart from the database's own failures."""
    try:
        yield from packed
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None


def _header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("not an idnode backup")
    if header.get("version") != VERSION:
        raise BackupError(f"backup format version {header.get('version')} is not {VERSION}")
    return header


async def restore(engine: AsyncEngine, path: Path, progress: Progress | None = None) -> Summary:
    """Load a backup into a new, migrated database, in one transaction; a
    database that already holds a registry is refused."""
    try:
        packed = gzip.open(path, "rb")  # noqa: SIM115 - closed below, whatever happens
    except OSError as exc:  # missing, a folder, not readable
        raise _unreadable(path, exc) from None
    with packed:
        try:
            return await _restore(engine, _lines(packed, path), progress)
        except (ValueError, KeyError, TypeError) as exc:  # a line that is not what it should be
            raise BackupError(f"{path} is damaged: {exc}") from None
        except (IntegrityError, DataError) as exc:
            raise BackupError(f"the database refused the backup's rows: {exc.orig}") from None
        except StorageUnavailable as exc:  # the file's own errors were told apart in _lines
            raise _unavailable(exc) from None


async def _restore(
    engine: AsyncEngine, lines: Iterator[bytes], progress: Progress | None
) -> Summary:
    header = _header(next(lines, b""))
    if header.get("schema") != head_revision():
        raise BackupError(
            f"the backup is of schema {header.get('schema')}, this idnode's is {head_revision()}: "
            "restore it with the idnode version that made it, then upgrade"
        )
    tables = {table.name: table for table in _tables()}
    summary = Summary(str(header["schema"]), str(header.get("created", "")))
    async with write_transaction(engine) as conn:
        schema = await conn.run_sync(revision_of)
        if schema != head_revision():
            raise _schema_error(schema, "run `idnode migrate` first")
        for table in HISTORY_TABLES:
            if (await conn.execute(select(func.count()).select_from(table))).scalar():
                raise BackupError(
                    f"the database already holds a registry ({table.name} has rows): "
                    "restore into a new database (`idnode migrate` on an empty one)"
                )
        for table in reversed(_tables()):  # what the migrations put there
            await conn.execute(delete(table))
        ended = False
        for target, rows in _sections(lines, tables, summary):
            if target is None:
                ended = True
                break
            await insert_rows(conn, target, rows)
            if progress is not None:
                progress.update(len(rows))
        if not ended:
            raise BackupError("the backup is cut off: no trailer")
        if conn.dialect.name == "postgresql":
            await _advance_sequences(conn)
    return summary


def _sections(
    lines: Iterator[bytes], tables: dict[str, Table], summary: Summary
) -> Iterator[tuple[Table | None, list[dict[str, Any]]]]:
    """(table, a batch of its rows) in file order; (None, []) at the trailer,
    after checking every table's count against it."""
    table: Table | None = None
    columns: list[str] = []
    decoders: list[Any] = []
    batch: list[dict[str, Any]] = []
    for raw in lines:
        item = json.loads(raw)
        if isinstance(item, list):
            if table is None or len(item) != len(columns):
                raise BackupError("a row outside a table, or of the wrong width")
            batch.append(
                {
                    name: decode(value) if decode is not None and value is not None else value
                    for name, value, decode in zip(columns, item, decoders, strict=True)
                }
            )
            summary.rows[table.name] = summary.rows.get(table.name, 0) + 1
            if len(batch) >= BATCH_ROWS:
                yield table, batch
                batch = []
            continue
        if batch and table is not None:
            yield table, batch
            batch = []
        if item.get("end"):
            if item.get("rows") != {name: summary.rows.get(name, 0) for name in item["rows"]}:
                raise BackupError("the backup's row counts do not match its trailer")
            yield None, []
            return
        name = item.get("table")
        if name not in tables:
            raise BackupError(f"the backup has a table this schema lacks: {name!r}")
        table = tables[name]
        columns = list(item["columns"])
        if set(columns) != {column.name for column in table.columns}:
            raise BackupError(f"the columns of {name} differ from this schema's")
        decoders = [_decoder(table.c[column]) for column in columns]
        summary.rows.setdefault(name, 0)


async def _advance_sequences(conn: AsyncConnection) -> None:
    """Serial ids continue after the restored ones (COPY does not move them)."""
    for table in _tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].autoincrement is False or pk[0].type.python_type is not int:
            continue
        highest = select(func.max(pk[0])).scalar_subquery()
        sequence = func.pg_get_serial_sequence(table.name, pk[0].name)
        await conn.execute(select(func.setval(sequence, func.coalesce(highest, 0) + 1, False)))
