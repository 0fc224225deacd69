"""A server that never ends its replies cannot hold a client: every path (sync and async
``render``, sync and async ``render_many``) ends in DATA_LOSS or DEADLINE_EXCEEDED, soon, and
holds no more than the reply its request can need; nor can one that ends early pass off fewer
replies than were asked for.

The server is real (tests/client/hostile_server.py, a grpc.aio server on 127.0.0.1:0 in a child
process, so this process's memory is the client's alone); the bearer token picks its misbehaviour.
The stalled cases get short deadlines (``STALL_DEADLINE_S``) so that they end quickly; the others
get longer ones they never reach, as they end in DATA_LOSS once the payload outgrows its bound.
The bounds asserted are the generous ones a user is promised (10 s, 1 GiB).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from heatmap_client import AsyncHeatmapClient, HeatmapClient, HeatmapError

pytestmark = pytest.mark.timeout(120)

STALL_DEADLINE_S = 2.0
DATA_DEADLINE_S = 8.0
WITHIN_S = 10.0
WITHIN_BYTES = 1 << 30
# 4 x 17 x 256 x 256 float32: 18 MB of true payload, the most a reply to it may carry.
REQUEST = dict(keypoints=np.zeros((4, 17, 2), np.float32), size=(256, 256), sigma=2.0,
               codec="none")

EXPECTED = {
    "flood": grpc.StatusCode.DATA_LOSS,
    "overclaim": grpc.StatusCode.DATA_LOSS,
    "empty": grpc.StatusCode.DATA_LOSS,
    "stall": grpc.StatusCode.DEADLINE_EXCEEDED,
    "silent": grpc.StatusCode.DEADLINE_EXCEEDED,
    "one-then-silent": grpc.StatusCode.DEADLINE_EXCEEDED,
    "quits": grpc.StatusCode.DATA_LOSS,
}


@pytest.fixture(scope="module")
def hostile_target():
    script = Path(__file__).with_name("hostile_server.py")
    process = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("port "), f"hostile server did not start: {line!r}"
        yield f"127.0.0.1:{int(line.split()[1])}"
    finally:
        process.stdin.close()  # the server's cue to stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        process.stdout.close()


class PeakRss:
    """The most this process's resident memory grew over a ``with`` block (sampled every 5 ms)."""

    _page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _deadline(mode: str) -> float:
    stalls = EXPECTED[mode] == grpc.StatusCode.DEADLINE_EXCEEDED
    return STALL_DEADLINE_S if stalls else DATA_DEADLINE_S


def _sync_render(target: str, mode: str) -> None:
    with HeatmapClient(target, token=mode, timeout=_deadline(mode)) as client:
        client.render(**REQUEST)


def _async_render(target: str, mode: str) -> None:
    async def scenario():
        async with AsyncHeatmapClient(target, token=mode, timeout=_deadline(mode)) as client:
            await client.render(**REQUEST)

    asyncio.run(scenario())


def _sync_render_many(target: str, mode: str) -> None:
    # No deadline on the stream: only the idle deadline bounds it.
    with HeatmapClient(target, token=mode) as client:
        for _ in client.render_many([REQUEST] * 3, idle_timeout=_deadline(mode)):
            pass


def _async_render_many(target: str, mode: str) -> None:
    async def scenario():
        async with AsyncHeatmapClient(target, token=mode) as client:
            async for _ in client.render_many([REQUEST] * 3, idle_timeout=_deadline(mode)):
                pass

    asyncio.run(scenario())


PATHS = {
    "sync render": _sync_render,
    "async render": _async_render,
    "sync render_many": _sync_render_many,
    "async render_many": _async_render_many,
}


@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("path", list(PATHS))
def test_an_endless_reply_ends_soon_and_within_its_bound(hostile_target, path, mode):
    with PeakRss() as rss:
        started = time.monotonic()
        with pytest.raises(HeatmapError) as caught:
            PATHS[path](hostile_target, mode)
        elapsed = time.monotonic() - started
    assert caught.value.code == EXPECTED[mode], caught.value
    if caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "render_many" in path:
        assert caught.value.message.startswith("idle_timeout:"), caught.value
    assert elapsed < WITHIN_S, f"{path} against {mode!r} took {elapsed:.1f} s"
    assert rss.growth < WITHIN_BYTES, f"{path} against {mode!r} grew {rss.growth / 1e6:.0f} MB"
