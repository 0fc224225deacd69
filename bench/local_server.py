"""``heatmap-server serve`` in a subprocess on loopback, for the benchmarks."""

from __future__ import annotations

from heatmap_server.process import ServerProcess

__all__ = ["Server"]


class Server(ServerProcess):
    """A named server process (the benchmarks' tables say which configuration they measured)."""

    def __init__(self, name: str, flags: list[str], timeout: float = 120.0):
        self.name = name
        try:
            super().__init__(flags, timeout=timeout)
        except RuntimeError as error:
            raise RuntimeError(f"server {name} did not start: {error}") from None
