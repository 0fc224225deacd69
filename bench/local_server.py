"""``heatmap-server serve`` in a subprocess on loopback, for the benchmarks (as
tests/live_server.py starts it for the tests)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading


_LISTENING = re.compile(r"listening on (\S+):(\d+)")


class Server:
    """``heatmap-server serve`` in a subprocess on loopback (as tests/live_server.py does)."""

    def __init__(self, name: str, flags: list[str], timeout: float = 120.0):
        self.name = name
        self.command = [sys.executable, "-m", "heatmap_server", "serve", "--host", "127.0.0.1",
                        "--port", "0", *flags]
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        found, port = threading.Event(), []

        def drain():
            try:
                for line in self.process.stderr:
                    self.lines.append(line.rstrip())
                    match = _LISTENING.search(line)
                    if match and not port:
                        port.append(int(match.group(2)))
                        found.set()
            except (OSError, ValueError):
                pass
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(timeout) or not port:
            self.stop()
            raise RuntimeError(f"server {name} did not start:\n" + "\n".join(self.lines))
        self.target = f"127.0.0.1:{port[0]}"
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
