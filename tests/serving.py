"""A real `charnn serve` for the tests: a subprocess on a free localhost port, ended by SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT

PINNED_RUNS = ROOT / "tests" / "data" / "pinned" / "runs"
"""Five tiny trained runs, one of each kind (tests/make_pinned.py)."""
START_SECONDS = 90


class Server:
    """``charnn serve ARGS --port 0``; ``url`` once it listens; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "charnn", "serve", *args, "--port", "0"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        self.stderr: list[str] = []
        self.url = self._wait_until_listening()
        self._reader = threading.Thread(target=self._read_rest, daemon=True)
        self._reader.start()

    def _wait_until_listening(self) -> str:
        deadline, url = time.monotonic() + START_SECONDS, None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError("charnn serve ended before it listened:\n" + "".join(self.stderr))
            self.stderr.append(line)
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].strip()
            if "models:" in line and url:
                return url
        raise RuntimeError("charnn serve did not start in time:\n" + "".join(self.stderr))

    def _read_rest(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def copied_runs(folder: Path, *names: str) -> list[str]:
    """The pinned runs ``names`` copied into ``folder`` (a test may change or delete its copies)."""
    out = []
    for name in names:
        shutil.copytree(PINNED_RUNS / name, folder / name)
        out.append(str(folder / name))
    return out
