"""docs/operations.md holds the configuration reference generated
from the code, so it cannot drift; every setting is documented in the code."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from idnode import reference
from idnode.cli import build_parser
from idnode.config import Config

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def test_every_setting_says_what_it_is_for() -> None:
    docs = reference.field_docs()
    missing = [f.name for f in dataclasses.fields(Config) if not docs.get(f.name)]
    assert missing == []


def test_the_operations_guide_holds_the_current_reference() -> None:
    text = DOC.read_text(encoding="utf-8")
    generated = reference.markdown(build_parser())
    assert generated in text, "run: idnode config --reference, and paste it into the guide"
    for item in dataclasses.fields(Config):
        assert f"`IDNODE_{item.name.upper()}`" in generated


def test_idnode_config_prints_what_it_would_run_with(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('node_prefix = "88.200"\nworkers = 3\n')
    shown = subprocess.run(
        [sys.executable, "-m", "idnode", "config", "--config", "node.toml", "--http", ":9000"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "IDNODE_BOOTSTRAP_ADMIN": "ak:very-secret"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert 'node_prefix = "88.200"' in lines and "workers = 3" in lines
    assert 'http = "0.0.0.0:9000"' in lines  # the flag wins over the file and defaults
    assert "very-secret" not in shown.stdout and 'bootstrap_admin = "********"' in lines
    # What it prints is a configuration file the node reads back as the same settings.
    (tmp_path / "again.toml").write_text(shown.stdout.replace('"********"', '""'))
    again = subprocess.run(
        [sys.executable, "-m", "idnode", "config", "--config", "again.toml"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.stdout.replace('bootstrap_admin = ""', "") == shown.stdout.replace(
        'bootstrap_admin = "********"', ""
    )
