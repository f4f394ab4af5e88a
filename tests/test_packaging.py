"""What a user installs: the licence that pyproject names, full metadata, and
the monitoring files (rules, dashboard, Prometheus and Grafana configuration)
inside the package."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_licence_file_is_the_one_pyproject_names() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return zipfile.ZipFile(next(out.glob("idnode-*.whl")))


@pytest.mark.slow
def test_the_wheel_carries_full_metadata_and_the_licence(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["License-File"] == "LICENSE"
    assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert metadata["Author"]
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    entry = wheel.read(f"{info}/entry_points.txt").decode()
    assert "idnode = idnode.main:main" in entry


@pytest.mark.slow
def test_the_monitoring_ships_inside_the_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    shipped = [p.relative_to(ROOT).as_posix() for p in (ROOT / "metrics").rglob("*")]
    data = [p for p in shipped if p.endswith((".yml", ".json"))]
    assert len(data) >= 6
    assert set(data) <= names, set(data) - names
    assert {"registry/migrations/env.py", "sync/PROTOCOL.md"} <= names
