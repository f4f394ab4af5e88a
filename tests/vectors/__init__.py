"""Captured reference exchanges (see README.md here): read from the repository
itself, so a clone with nothing beside it runs every test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def load(name: str) -> Any:
    """The parsed JSON vector file ``name`` (e.g. ``handle-native-reference.json``)."""
    return json.loads((HERE / name).read_text(encoding="utf-8"))
