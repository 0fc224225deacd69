"""A server that never ends its replies cannot hold a client: every path (sync and async
``render``, sync and async ``render_many``) ends in DATA_LOSS or DEADLINE_EXCEEDED, soon, and
holds no more than the reply its request can need; nor can one that ends early pass off fewer
replies than were asked for, one that trickles keep a reply open past its bound, or a message
larger than any legal reply be read at all (RESOURCE_EXHAUSTED). A server that ends a stream for
idling, or breaks a call as a restart does, gets the unanswered requests again.

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


# --- one-message replies, trickles, and streams that end or break -------------------------------

# 2 x 17 x 64 x 48 float32, 418 kB: a reply that travels as one message (RenderUnary).
SMALL = dict(keypoints=np.zeros((2, 17, 2), np.float32), size=(64, 48), sigma=2.0, codec="none")
# Far below the 64 MiB the hostile message brings: gRPC refuses it from its length prefix.
NOT_BUFFERED_BYTES = 24 << 20


def _render(target: str, mode: str, request: dict, asynchronous: bool, **settings):
    if not asynchronous:
        with HeatmapClient(target, token=mode, **settings) as client:
            return client.render(**request)

    async def scenario():
        async with AsyncHeatmapClient(target, token=mode, **settings) as client:
            return await client.render(**request)

    return asyncio.run(scenario())


def _render_many(target: str, mode: str, requests, asynchronous: bool, settings=None, **bounds):
    if not asynchronous:
        with HeatmapClient(target, token=mode, **(settings or {})) as client:
            return list(client.render_many(requests, **bounds))

    async def scenario():
        async with AsyncHeatmapClient(target, token=mode, **(settings or {})) as client:
            return [result async for result in client.render_many(requests, **bounds)]

    return asyncio.run(scenario())


ONE_MESSAGE_EXPECTED = {
    "oversized": (grpc.StatusCode.RESOURCE_EXHAUSTED, "reply: a message larger than"),
    "not-whole": (grpc.StatusCode.DATA_LOSS, "reply: one message that is not a whole reply"),
    "liar": (grpc.StatusCode.DATA_LOSS, "reply: does not match the request: shape"),
}


@pytest.mark.parametrize("mode", list(ONE_MESSAGE_EXPECTED))
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_hostile_one_message_reply_is_refused(hostile_target, mode, asynchronous):
    code, message = ONE_MESSAGE_EXPECTED[mode]
    with PeakRss() as rss:
        with pytest.raises(HeatmapError) as caught:
            _render(hostile_target, mode, SMALL, asynchronous, timeout=DATA_DEADLINE_S)
    assert caught.value.code == code, caught.value
    assert caught.value.message.startswith(message), caught.value
    assert rss.growth < NOT_BUFFERED_BYTES, f"grew {rss.growth / 1e6:.0f} MB"


@pytest.mark.parametrize("path", ["render", "render_many"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_64_mib_chunk_is_refused_unread(hostile_target, path, asynchronous):
    with PeakRss() as rss:
        with pytest.raises(HeatmapError) as caught:
            if path == "render":
                _render(hostile_target, "oversized", REQUEST, asynchronous,
                        timeout=DATA_DEADLINE_S)
            else:
                _render_many(hostile_target, "oversized", [REQUEST] * 2, asynchronous)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
    assert caught.value.message.startswith("reply: a message larger than"), caught.value
    # Buffered, the message alone would be 64 MiB (measured: +200 MB with a 64 MiB limit).
    assert rss.growth < NOT_BUFFERED_BYTES, f"grew {rss.growth / 1e6:.0f} MB"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_trickled_reply_is_bounded_by_the_clients_timeout(hostile_target, asynchronous):
    # A byte every 0.1 s keeps the idle clock from running out; the reply's own bound (by default
    # the client's timeout) does not reset with every byte.
    started = time.monotonic()
    with pytest.raises(HeatmapError) as caught:
        _render_many(hostile_target, "trickle", [REQUEST] * 2, asynchronous,
                     settings=dict(timeout=STALL_DEADLINE_S), idle_timeout=1.0)
    elapsed = time.monotonic() - started
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED, caught.value
    assert caught.value.message.startswith("reply_timeout:"), caught.value
    assert STALL_DEADLINE_S <= elapsed < WITHIN_S, elapsed


def test_reply_timeout_is_a_parameter_and_none_lifts_it(hostile_target):
    started = time.monotonic()
    with pytest.raises(HeatmapError, match="^DEADLINE_EXCEEDED: reply_timeout"):
        _render_many(hostile_target, "trickle", [REQUEST], False, reply_timeout=1.0)
    assert time.monotonic() - started < 1.0 + WITHIN_S / 2
    with HeatmapClient(hostile_target, token="trickle") as client:
        with pytest.raises(ValueError, match="^reply_timeout: must be None or a number"):
            client.render_many([REQUEST], reply_timeout=-1)
        # No reply bound: only the idle clock would end it (not waited for here).
        client.render_many([REQUEST], reply_timeout=None).close()


def _slowly(count: int, pause_s: float):
    for index in range(count):
        if index:
            time.sleep(pause_s)
        yield SMALL


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_stream_the_server_ends_for_idling_is_reopened(hostile_target, asynchronous):
    # Each item comes after the server ended the stream for having nothing in flight.
    results = _render_many(hostile_target, "idles", _slowly(4, pause_s=0.6), asynchronous)
    assert [result.request_id for result in results] == [0, 1, 2, 3]
    assert all(result.heatmaps.shape == (2, 17, 64, 48) for result in results)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_server_that_ends_every_stream_for_idling_cannot_hold_a_reply(hostile_target,
                                                                        asynchronous):
    started = time.monotonic()
    with pytest.raises(HeatmapError) as caught:
        _render_many(hostile_target, "always-idle", [SMALL] * 2, asynchronous, reply_timeout=1.0)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED, caught.value
    assert caught.value.message.startswith("reply_timeout:"), caught.value
    assert time.monotonic() - started < WITHIN_S


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_stream_broken_mid_reply_sends_the_unanswered_again(hostile_target, asynchronous):
    results = _render_many(hostile_target, "breaks", [SMALL] * 5, asynchronous)
    assert [result.request_id for result in results] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("request_", [SMALL, REQUEST], ids=["one message", "streamed"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_render_broken_mid_reply_is_sent_again(hostile_target, request_, asynchronous):
    result = _render(hostile_target, "breaks", request_, asynchronous, timeout=DATA_DEADLINE_S)
    assert not result.heatmaps.any()
