"""AsyncHeatmapClient against the real server: the same results as the sync client."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from heatmap_client import AsyncHeatmapClient, HeatmapError
from heatmap_render import render_heatmaps

KEYPOINTS = np.array([[[3.0, 4.0], [10.0, 2.0]], [[1.5, 7.25], [-3.0, 5.0]]], np.float32)


def _local(keypoints, size=(12, 16), sigma=1.5):
    return render_heatmaps(keypoints, size, sigma).heatmaps.numpy()


def test_render_info_health(live_server):
    async def scenario():
        async with AsyncHeatmapClient(live_server.target) as client:
            result = await client.render(KEYPOINTS, size=(12, 16), sigma=1.5, codec="separable")
            return result, await client.info(), await client.health()

    result, info, health = asyncio.run(scenario())
    np.testing.assert_array_equal(result.heatmaps, _local(KEYPOINTS))
    assert info.device.startswith(live_server.device) and health == "SERVING"


def test_render_many_keeps_order(live_server):
    batches = [KEYPOINTS + shift for shift in range(10)]

    async def scenario():
        async with AsyncHeatmapClient(live_server.target) as client:
            requests = [dict(keypoints=points, size=(12, 16), sigma=1.5) for points in batches]
            return [result async for result in client.render_many(requests, window=3)]

    results = asyncio.run(scenario())
    for points, result in zip(batches, results, strict=True):
        np.testing.assert_array_equal(result.heatmaps, _local(points))


@pytest.mark.timeout(30)
def test_a_request_that_cannot_be_built_ends_render_many_instead_of_hanging(live_server):
    good = dict(keypoints=KEYPOINTS, size=(12, 16), sigma=1.5)
    received = []

    async def scenario():
        async with AsyncHeatmapClient(live_server.target) as client:
            async for result in client.render_many([good, good, dict(good, method="bogus")]):
                received.append(result)

    with pytest.raises(ValueError, match="^method:"):
        asyncio.run(scenario())
    assert len(received) == 2


def test_server_errors_raise_heatmap_error(live_server):
    async def scenario():
        async with AsyncHeatmapClient(live_server.target) as client:
            await client.render(KEYPOINTS, size=(12, 16), sigma=100.0)  # wider than the map

    with pytest.raises(HeatmapError) as caught:
        asyncio.run(scenario())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message.startswith("sigma:")


def test_one_client_serves_successive_event_loops(live_server):
    client = AsyncHeatmapClient(live_server.target)

    async def once():
        return await client.render(KEYPOINTS, size=(12, 16), sigma=1.5)

    first, second = asyncio.run(once()), asyncio.run(once())
    np.testing.assert_array_equal(first.heatmaps, second.heatmaps)
