"""``idnode backup`` and ``idnode restore``: the registry to a file and back
(registry.backup), with progress, and one line when they cannot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine

from registry import backup
from registry.db import create_engine, missing_sqlite_file

from .config import Config
from .listen import StartupError
from .progress import Progress


def _engine(url: str) -> AsyncEngine:
    try:
        return create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {url!r}: {exc}") from None


def _backup_refusal(url: str, target: Path) -> str | None:
    """Why a backup cannot start, before the database is read for nothing."""
    if (missing := missing_sqlite_file(url)) is not None:
        return f"no database at {missing}"
    if target.is_dir():
        return f"{target} is a folder; name a file"
    return None


async def dump(config: Config, file: str) -> int:
    """``idnode backup FILE``: the whole registry, consistent while the node serves."""
    target = Path(file)
    partial = target.with_name(target.name + ".partial")
    if (refusal := _backup_refusal(config.database_url, target)) is not None:
        print(f"idnode: backup failed: {refusal}", file=sys.stderr)
        return 1
    engine = _engine(config.database_url)
    try:
        with Progress("backup", unit="rows") as progress:
            with partial.open("wb") as out:
                summary = await backup.dump(engine, out, progress)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(target)  # a backup is whole or absent
    except backup.BackupError as exc:
        partial.unlink(missing_ok=True)
        print(f"idnode: backup failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the database's own errors are BackupErrors: this is the file
        partial.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        print(f"idnode: backup failed: cannot write {target}: {reason}", file=sys.stderr)
        return 1
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        await engine.dispose()
    print(
        f"backup: {summary.total:,} rows of schema {summary.schema} written to {target} "
        f"({summary.rows.get('identifiers', 0):,} identifiers)"
    )
    return 0


async def restore(config: Config, file: str) -> int:
    """``idnode restore FILE``: a backup loaded into an empty migrated database,
    in one transaction."""
    if (missing := missing_sqlite_file(config.database_url)) is not None:
        advice = "create it with `idnode migrate`"
        print(f"idnode: restore failed: no database at {missing}; {advice}", file=sys.stderr)
        return 1
    engine = _engine(config.database_url)
    try:
        with Progress("restore", unit="rows") as progress:
            summary = await backup.restore(engine, Path(file), progress)
    except backup.BackupError as exc:
        print(f"idnode: restore failed, the database is unchanged: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(
        f"restore: {summary.total:,} rows of the backup of {summary.created} loaded "
        f"({summary.rows.get('identifiers', 0):,} identifiers)"
    )
    return 0
