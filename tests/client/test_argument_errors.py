"""Errors in the user's words: arguments checked where they were written, and the server's
complaints about request fields re-raised naming the argument the user passed."""

from __future__ import annotations

import asyncio
import inspect

import grpc
import numpy as np
import pytest

from heatmap_client import (
    ArgumentError,
    AsyncHeatmapClient,
    HeatmapClient,
    HeatmapError,
    RenderOptions,
)

KEYPOINTS = np.array([[[3.0, 4.0], [10.0, 2.0]]], dtype=np.float32)

REFUSED = {
    "size as one number": (dict(size=64), "size", "expected (H, W)"),
    "size of three": (dict(size=(64, 48, 3)), "size", "(H, W)"),
    "size with a float": (dict(size=(64.0, 48)), "size", "two integers"),
    "size zero": (dict(size=(0, 48)), "size", "positive"),
    "negative sigma": (dict(sigma=-1.0), "sigma", "> 0"),
    "nan sigma": (dict(sigma=float("nan")), "sigma", "> 0"),
    "sigma per keypoint with a zero": (dict(sigma=[2.0, 0.0]), "sigma", "> 0"),
    "sigma as a matrix": (dict(sigma=[[2.0]]), "sigma", "shape"),
    "pixel without input_size": (dict(coords="pixel"), "input_size", "required when coords="),
    "input_size without pixel": (dict(input_size=(256, 192)), "input_size", "only used"),
    "input_size as one number": (dict(coords="pixel", input_size=256), "input_size", "(H, W)"),
    "unknown method": (dict(method="gauss"), "method", "expected one of seed, msra, udp, dark"),
    "unknown coords": (dict(coords="image"), "coords", "expected one of"),
    "unknown dtype": (dict(dtype="float64"), "dtype", "expected one of"),
    "unknown codec": (dict(codec="gzip"), "codec", "expected one of"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_render_options_name_the_argument(case):
    changes, argument, words = REFUSED[case]
    with pytest.raises(ArgumentError) as caught:
        RenderOptions(**{"size": (64, 48), "sigma": 2.0, **changes})
    assert caught.value.argument == argument
    assert str(caught.value).startswith(f"{argument}: ") and words in str(caught.value)


def test_a_bad_argument_is_refused_before_anything_is_sent():
    # Nothing listens on this port: a request that was sent would fail UNAVAILABLE instead.
    with HeatmapClient("127.0.0.1:1", timeout=1) as client:
        with pytest.raises(ArgumentError) as caught:
            client.render(KEYPOINTS, size=(64, 48), sigma=2.0, coords="pixel")
    assert caught.value.argument == "input_size"


def test_sync_and_async_render_share_one_signature():
    for name in ("render", "render_profiles"):
        assert inspect.signature(getattr(HeatmapClient, name)) == inspect.signature(
            getattr(AsyncHeatmapClient, name)
        ), name


@pytest.mark.parametrize(("options", "argument", "field"), [
    (dict(size=(5000, 8)), "size", "height"),  # over the server's largest side
    (dict(size=(8, 8), sigma=100.0), "sigma", "sigma"),  # wider than the heatmap
    (dict(size=(8, 8), sigma=[1.0, 100.0]), "sigma", "sigmas"),
    (dict(size=(1, 8), method="udp", coords="pixel", input_size=(64, 64)), "size", "height"),
])
def test_server_errors_name_the_users_argument(live_server, options, argument, field):
    with HeatmapClient(live_server.target, timeout=10) as client:
        with pytest.raises(HeatmapError) as caught:
            client.render(KEYPOINTS, **{"sigma": 2.0, **options})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.argument == argument
    assert caught.value.message.startswith(f"{argument}: "), caught.value.message
    if field != argument:
        assert f"{field}:" not in caught.value.message


def test_async_server_errors_name_the_users_argument(live_server):
    async def scenario():
        async with AsyncHeatmapClient(live_server.target, timeout=10) as client:
            await client.render(KEYPOINTS, size=(5000, 8), sigma=2.0)

    with pytest.raises(HeatmapError) as caught:
        asyncio.run(scenario())
    assert caught.value.argument == "size" and caught.value.message.startswith("size: ")
