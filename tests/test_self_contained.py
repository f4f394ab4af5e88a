"""The suite needs nothing outside the repository: a clone in an empty folder
collects every test and runs those built on captured reference vectors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Paths that climb out of the checkout: parents[N] past tests/, a ".." path part,
# or a file opened by a "../" path.
_ESCAPES = re.compile(r"""parents\[(?:[2-9]|\d\d)\]|/ *["']\.\.["']|(?:Path|open)\(["']\.\./""")


def test_no_test_reaches_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _ESCAPES.search(line)
    ]
    assert offenders == []


@pytest.mark.slow
@pytest.mark.skipif(
    not (ROOT / ".git").exists() or shutil.which("git") is None, reason="not a git checkout"
)
def test_a_clone_with_nothing_beside_it_collects_and_runs(tmp_path: Path) -> None:
    clone = tmp_path / "empty" / "idnode"
    clone.parent.mkdir()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["idnode"]
    environ = {**os.environ, "PYTHONPATH": str(clone)}
    environ.pop("PYTEST_XDIST_WORKER", None)

    def pytest_in_clone(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
            cwd=clone,
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    collected = pytest_in_clone("--collect-only")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    assert "error" not in collected.stdout.splitlines()[-1].lower()
    assert re.search(r"\d+ tests collected", collected.stdout)
    ran = pytest_in_clone("tests/test_handle_codec.py", "-k", "reference or vector")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert re.search(r"[1-9]\d* passed", ran.stdout)
