"""Starts the real server (the installed CLI, in a subprocess) on loopback for the network tests.

Not a mock: ``python -m heatmap_server serve --host 127.0.0.1 --port 0``; the fixture waits for the
"listening on" line, reads the port from it, and stops the process with SIGTERM afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from server_process import ServerProcess, stop_process


def server_device() -> str:
    """The device the test servers render on: ``HEATMAP_TEST_DEVICE`` (``--device``), else cpu."""
    return os.environ.get("HEATMAP_TEST_DEVICE", "cpu")


class LiveServer:
    """A running server process: its ``target`` (``127.0.0.1:PORT``), process and log lines."""

    def __init__(self, process: subprocess.Popen, port: int, lines: list[str]):
        self.device = server_device()
        self.process = process
        self.port = port
        self.target = f"127.0.0.1:{port}"
        self.lines = lines

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        return stop_process(self.process, sig, timeout)


@contextmanager
def running_server(
    *flags: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[LiveServer]:
    """Runs ``heatmap-server serve --host 127.0.0.1 --port 0 *flags`` until the block ends."""
    started = ServerProcess(["--device", server_device(), *flags], env=env, timeout=timeout)
    server = LiveServer(started.process, started.port, started.lines)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """One real server for the session (on the test device, default limits, 2 encoder threads)."""
    if server_device().startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"--device={server_device()} asks for CUDA, but torch sees no GPU")
    with running_server("--max-output-elements", str(64 * 1024 * 1024)) as server:
        yield server
