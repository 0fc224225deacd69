"""``heatmap-server serve`` in a subprocess on loopback, for the benchmarks (the tests' own
harness, ``tests/server_process.py``: a test harness does not ship in the server's wheel)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from server_process import ServerProcess  # noqa: E402

__all__ = ["Server"]


class Server(ServerProcess):
    """A named server process (the benchmarks' tables say which configuration they measured)."""

    def __init__(self, name: str, flags: list[str], timeout: float = 120.0):
        self.name = name
        try:
            super().__init__(flags, timeout=timeout)
        except RuntimeError as error:
            raise RuntimeError(f"server {name} did not start: {error}") from None
