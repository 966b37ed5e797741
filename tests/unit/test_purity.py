"""The core stays pure: no I/O libraries, no shell imports, no clock reads in ``alerts``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alerts

FORBIDDEN_IMPORTS = (
    "service",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "aiosmtplib",
    "apscheduler",
    "socket",
    "subprocess",
    "requests",
    "urllib.request",
    "asyncio",
)
CLOCK_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
}
MODULES = sorted(Path(alerts.__file__).parent.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_alerts_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert not any(
                name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_IMPORTS
            ), f"{path.name} imports {name}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            assert (node.func.value.id, node.func.attr) not in CLOCK_CALLS, (
                f"{path.name}:{node.lineno} reads the clock"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "open", f"{path.name}:{node.lineno} opens a file"
