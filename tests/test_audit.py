"""The tamper-evident audit log: every change says who, what, when
and from where; someone with the database in hand who switches the guard off
and edits, deletes, reorders or cuts entries is caught by `idnode audit verify`."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from idnode.demo import DEMO_ADMIN, demo_enterprises, registration
from loadtest.demo_node import DemoNode
from registry.audit import canonical_json, entry_hash
from tests.test_cli import post_json, run_idnode

pytestmark = pytest.mark.slow


def _unguarded(database: Path) -> sqlite3.Connection:
    """The database as an intruder holds it: the append-only triggers dropped."""
    db = sqlite3.connect(database)
    db.execute("DROP TRIGGER audit_log_no_update")
    db.execute("DROP TRIGGER audit_log_no_delete")
    return db


def _edit(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit_log SET target = '88.100.1/forged' WHERE seq = 40")


def _delete(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit_log WHERE seq = 40")


def _reorder(db: sqlite3.Connection) -> None:
    # Entries 40 and 41 change places: each keeps its content and hashes.
    db.execute("UPDATE audit_log SET seq = -1 WHERE seq = 40")
    db.execute("UPDATE audit_log SET seq = 40 WHERE seq = 41")
    db.execute("UPDATE audit_log SET seq = 41 WHERE seq = -1")


def _cut(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")


def _rewrite(db: sqlite3.Connection) -> None:
    # A forged entry with a freshly computed hash of its own: the next link breaks.
    seq, at, actor, action, target, _detail, remote, prev = db.execute(
        "SELECT seq, at, actor, action, target, detail, remote, prev_hash "
        "FROM audit_log WHERE seq = 40"
    ).fetchone()
    forged = {"forged": True}
    digest = entry_hash(
        seq=seq,
        at=datetime.fromisoformat(at).replace(tzinfo=UTC),
        actor=actor,
        action=action,
        target=target,
        detail=forged,
        remote=remote,
        prev_hash=prev,
    )
    db.execute(
        "UPDATE audit_log SET detail = ?, hash = ? WHERE seq = 40", (canonical_json(forged), digest)
    )


TAMPERING: dict[str, tuple[Callable[[sqlite3.Connection], None], str]] = {
    "edited": (_edit, "entry 40: entry content does not match its hash"),
    "deleted": (_delete, "entry 41: sequence jumps from 39 to 41"),
    "reordered": (_reorder, "entry 40: link to the previous entry is broken"),
    "cut at the end": (_cut, "entries were removed or replaced"),
    "rewritten with a new hash": (_rewrite, "entry 41: link to the previous entry is broken"),
}


def test_the_audit_log_records_who_what_when_from_where_and_betrays_tampering(
    tmp_path: Path,
) -> None:
    with DemoNode(tmp_path, "--enterprises", "32", "--identifiers", "64") as node:
        login = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        token = post_json(f"{node.base}/identity/token", login)["data"]["token"]
        ent = demo_enterprises(1)[0]
        answer = post_json(
            f"{node.base}/identityv2/data/batchCreate", [registration(ent, "AUDITED-1")], token
        )
        assert answer["data"][0]["msg"] == "success"
    database = node.database
    with contextlib.closing(sqlite3.connect(database)) as db:
        actor, action, target, at, remote = db.execute(
            "SELECT actor, action, target, at, remote FROM audit_log "
            "WHERE target = ? ORDER BY seq DESC LIMIT 1",
            (f"{ent.prefix}/AUDITED-1",),
        ).fetchone()
    # Who: the user behind the access key the token came from; from where: its address.
    assert (actor, action, remote) == ("ak:admin", "identifier.created", "127.0.0.1")
    assert target == f"{ent.prefix}/AUDITED-1" and at

    env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    intact = run_idnode("audit", "verify", cwd=tmp_path, env=env)
    assert (intact.returncode, intact.stdout.strip()) == (0, "audit: hash chain intact")

    for what, (tamper, finding) in TAMPERING.items():
        copy = tmp_path / f"tampered-{what.replace(' ', '-')}.db"
        shutil.copy(database, copy)
        with contextlib.closing(_unguarded(copy)) as db, db:
            tamper(db)
        checked = run_idnode(
            "audit",
            "verify",
            cwd=tmp_path,
            env={"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{copy}"},
        )
        assert checked.returncode == 1, what
        assert finding in checked.stdout, (what, checked.stdout)
