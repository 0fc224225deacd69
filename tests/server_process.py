"""``heatmap-server serve`` in a child process: started, waited for, and stopped as an operator
would, for the tests and the benchmarks (which import it from here) that need a real server on
loopback.

The server's start-up line (``... listening on HOST:PORT ...``, ``heatmap_server.app.LISTENING``)
carries the port it bound, so ``--port 0`` works: the port is read from the log, never guessed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

__all__ = ["ServerProcess", "listening_port", "stop_process"]

# Matches the server's start-up line (heatmap_server.app.LISTENING), and no other.
_LISTENING_LINE = re.compile(r"listening on (\S+):(\d+)")


def stop_process(
    process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0
) -> int:
    """Sends ``sig`` to a server process and waits, killing it after ``timeout``; closes its log
    pipe. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    if process.stderr is not None:
        process.stderr.close()
    return process.returncode


def listening_port(line: str) -> int | None:
    """The port in a server's start-up log line, or None for any other line."""
    match = _LISTENING_LINE.search(line)
    return int(match.group(2)) if match else None


class ServerProcess:
    """``python -m heatmap_server serve --host 127.0.0.1 --port 0 *flags`` until :meth:`stop`.

    Attributes:
        target: ``127.0.0.1:PORT``; ``port``, ``pid`` and the log ``lines`` (stderr) so far.

    Raises:
        RuntimeError: with the log, when the server exits or does not listen within ``timeout``.
    """

    def __init__(
        self, flags: list[str], *, env: dict[str, str] | None = None, timeout: float = 60.0
    ):
        self.command = [sys.executable, "-m", "heatmap_server", "serve", "--host", "127.0.0.1",
                        "--port", "0", *flags]
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        found = threading.Event()
        ports: list[int] = []

        def drain() -> None:
            try:
                for line in self.process.stderr:
                    self.lines.append(line.rstrip())
                    port = listening_port(line)
                    if port is not None and not ports:
                        ports.append(port)
                        found.set()
            except (OSError, ValueError):
                pass  # the pipe was closed by stop()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.1):
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError("server did not start in time:\n" + self.log)
        if not ports:
            self.stop()
            raise RuntimeError("server exited before listening:\n" + self.log)
        self.port = ports[0]
        self.target = f"127.0.0.1:{self.port}"
        self.pid = self.process.pid

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Sends ``sig`` (SIGTERM: the graceful shutdown) and waits; kills after ``timeout``.
        Returns the exit code."""
        return stop_process(self.process, sig, timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
