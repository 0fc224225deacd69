"""``render_many`` against the real server: a request only the server can refuse ends the stream
with the server's own status and message, after every reply before it, however the client's
writes and the server's end interleave; and the idle deadline counts only waiting on the server.

The bad request is a sigma wider than the heatmap (100 at (8, 8)): the client checks sigma > 0
and finite itself, so only the server can refuse this one.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest

from heatmap_client import ArgumentError, AsyncHeatmapClient, HeatmapClient, HeatmapError

pytestmark = pytest.mark.timeout(120)

KEYPOINTS = np.array([[[3.0, 4.0], [6.0, 2.0]]], np.float32)
GOOD = dict(keypoints=KEYPOINTS, size=(8, 8), sigma=1.0)
BAD = dict(GOOD, sigma=100.0)
STREAM_LENGTH = 10
STREAMS = 30


def _stream(bad_at: int) -> list[dict]:
    items = [GOOD] * STREAM_LENGTH
    items[bad_at] = BAD
    return items


def _check_refusal(error: HeatmapError, received: int, bad_at: int) -> None:
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.message.startswith(f"request {bad_at}: sigma:"), error
    assert error.argument == "sigma"
    assert received == bad_at, f"{received} replies before request {bad_at}, the bad one"


def test_async_streams_with_a_bad_request_report_the_servers_status(live_server):
    async def one(client: AsyncHeatmapClient, bad_at: int, window: int):
        received = 0
        try:
            async for _ in client.render_many(_stream(bad_at), window=window):
                received += 1
        except HeatmapError as error:
            return error, received
        return None, received

    async def scenario():
        async with AsyncHeatmapClient(live_server.target, timeout=30) as client:
            return [await one(client, index % STREAM_LENGTH, window=1 + index % 4)
                    for index in range(STREAMS)]

    outcomes = asyncio.run(scenario())
    for index, (error, received) in enumerate(outcomes):
        assert error is not None, f"stream {index} ended without an error"
        _check_refusal(error, received, index % STREAM_LENGTH)


def test_sync_streams_with_a_bad_request_report_the_servers_status(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        for bad_at in (0, 3, STREAM_LENGTH - 1):
            received = 0
            with pytest.raises(HeatmapError) as caught:
                for _ in client.render_many(_stream(bad_at), window=4):
                    received += 1
            _check_refusal(caught.value, received, bad_at)


@pytest.mark.parametrize("idle_timeout", [0, -1.0, float("nan"), float("inf"), "5", True])
def test_idle_timeout_must_be_a_positive_number_of_seconds(live_server, idle_timeout):
    with HeatmapClient(live_server.target) as client:
        with pytest.raises(ArgumentError, match="^idle_timeout:"):
            next(client.render_many([GOOD], idle_timeout=idle_timeout))

    async def scenario():
        async with AsyncHeatmapClient(live_server.target) as client:
            async for _ in client.render_many([GOOD], idle_timeout=idle_timeout):
                pass

    with pytest.raises(ArgumentError, match="^idle_timeout:"):
        asyncio.run(scenario())


# The caller pauses between results for longer than the idle deadline: only waiting on the
# server counts, so the stream completes (the server answers these in milliseconds).
IDLE_S, PAUSE_S = 1.5, 3.0


def test_a_slow_caller_is_not_idle_sync(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        results = []
        for result in client.render_many([GOOD] * 3, idle_timeout=IDLE_S):
            results.append(result)
            if len(results) == 1:
                time.sleep(PAUSE_S)
    assert len(results) == 3


def test_a_slow_caller_is_not_idle_async(live_server):
    async def scenario():
        async with AsyncHeatmapClient(live_server.target, timeout=30) as client:
            results = []
            async for result in client.render_many([GOOD] * 3, idle_timeout=IDLE_S):
                results.append(result)
                if len(results) == 1:
                    await asyncio.sleep(PAUSE_S)
            return results

    assert len(asyncio.run(scenario())) == 3


def test_a_slow_request_iterator_is_not_idle(live_server):
    def slowly():
        yield GOOD
        time.sleep(PAUSE_S)  # no request in flight meanwhile: nothing is owed
        yield GOOD

    with HeatmapClient(live_server.target, timeout=30) as client:
        assert len(list(client.render_many(slowly(), idle_timeout=IDLE_S))) == 2


class LoaderBroke(RuntimeError):
    pass


def _breaking_items():
    yield GOOD
    yield GOOD
    raise LoaderBroke("the caller's own iterator failed")


def test_an_error_of_the_callers_iterator_reaches_the_caller_after_earlier_replies(live_server):
    received = []
    with HeatmapClient(live_server.target, timeout=30) as client:
        with pytest.raises(LoaderBroke):
            for result in client.render_many(_breaking_items()):
                received.append(result)
    assert len(received) == 2

    async def scenario():
        async with AsyncHeatmapClient(live_server.target, timeout=30) as client:
            async for result in client.render_many(_breaking_items()):
                received.append(result)

    with pytest.raises(LoaderBroke):
        asyncio.run(scenario())
    assert len(received) == 4
