"""Run ``dealwatch serve`` as a real subprocess: to kill a worker mid-flight, or to reach the
API through uvicorn as deployed (proxy headers and all)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class WorkerProcess:
    """One worker process; ``environment`` holds the ``DEALWATCH_*`` settings it runs with."""

    def __init__(
        self,
        environment: Mapping[str, str],
        log_path: Path,
        arguments: Sequence[str] = ("serve", "--role", "worker"),
    ) -> None:
        self._environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DEALWATCH_")},
            **environment,
        }
        self._log_path = log_path
        self._arguments = list(arguments)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *self._arguments],
            env=self._environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release, as in a crash or an OOM kill."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")


async def wait_for(condition: Callable[[], object], *, within: float, what: str) -> None:
    """Poll an async-or-sync condition until it is true or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
