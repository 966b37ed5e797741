"""Optional per-stage wall-clock accounting of the ingest path (``bench.ingest --stages``).

Off by default: :func:`stage` then hands back one shared no-op context manager, so the poller
pays one global read and one ``with`` per stage per document (not per item). Turned on, each
stage's elapsed time is summed under its name; the benchmark turns it on for a separate,
sequential run (one source at a time), where a stage that awaits cannot absorb another
source's work and the figures add up to the run's wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

__all__ = ["disable", "enable", "stage", "totals"]

_totals: dict[str, float] | None = None
_OFF: AbstractContextManager[None] = nullcontext()


def enable() -> None:
    """Start (or restart) accounting from zero."""
    global _totals
    _totals = {}


def disable() -> None:
    """Stop accounting; :func:`totals` keeps nothing."""
    global _totals
    _totals = None


def totals() -> dict[str, float]:
    """Seconds spent in each stage since :func:`enable` (empty when off)."""
    return dict(_totals) if _totals is not None else {}


def stage(name: str) -> AbstractContextManager[None]:
    """Time the enclosed block under ``name`` when accounting is on; a no-op otherwise."""
    if _totals is None:
        return _OFF
    return _timed(_totals, name)


@contextmanager
def _timed(into: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        into[name] = into.get(name, 0.0) + time.perf_counter() - started
