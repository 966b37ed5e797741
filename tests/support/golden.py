"""Golden-file comparison: ``UPDATE_GOLDEN=1`` rewrites the files when a change is intended."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"


def assert_golden(actual: str, relative: str) -> None:
    """Compare ``actual`` with ``tests/data/<relative>``, or rewrite it under UPDATE_GOLDEN=1."""
    path = DATA / relative
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8")
