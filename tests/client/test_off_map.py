"""Keypoints that mostly land off the heatmap (image pixels rendered as heatmap pixels, a wrong
input_size): the render succeeds, and the client, the asyncio client, the local renderer and the
collate each say so once, naming ``coords`` and ``input_size``."""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heatmap_client import AsyncHeatmapClient, HeatmapClient, OffMapWarning  # noqa: E402
from heatmap_client.torch import HeatmapCollate  # noqa: E402

# Keypoints of a 256 x 192 image, in its pixels: on a 64 x 48 heatmap only those near the
# top-left corner land.
IMAGE = (256, 192)
PIXELS = (np.random.default_rng(0).uniform(0.2, 0.95, (4, 17, 2)) * [192, 256]).astype(np.float32)


def _warned(call) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [warning for warning in caught if issubclass(warning.category, OffMapWarning)]


def test_image_pixels_as_heatmap_pixels_warn_once_naming_coords(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        first = _warned(lambda: client.render(PIXELS, size=(64, 48), sigma=2.0))
        again = _warned(lambda: client.render(PIXELS, size=(64, 48), sigma=2.0))
        right = client.render(PIXELS, size=(64, 48), sigma=2.0, coords="pixel",
                              input_size=IMAGE)
    assert len(first) == 1 and not again  # once per client
    message = str(first[0].message)
    assert "coords='pixel', input_size=(H, W)" in message and "64x48" in message
    assert first[0].filename == __file__  # pointed at the caller's line
    assert right.weights.min() == 1.0  # the same keypoints, described right: all land


def test_a_wrong_input_size_warns(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        caught = _warned(lambda: client.render_profiles(
            PIXELS * 4, size=(64, 48), sigma=2.0, coords="pixel", input_size=IMAGE))
    assert len(caught) == 1 and "input_size=(256, 192)" in str(caught[0].message)


def test_keypoints_not_asked_to_draw_do_not_count(live_server):
    """Off-map keypoints with visibility 0 are labels of nothing: no warning."""
    inside = np.random.default_rng(1).uniform(2, 40, (4, 17, 2)).astype(np.float32)
    points = np.where(np.arange(17)[None, :, None] < 12, PIXELS * 3, inside)
    visibility = (np.arange(17) >= 12).astype(np.float32)[None].repeat(4, axis=0)
    with HeatmapClient(live_server.target, timeout=30) as client:
        assert not _warned(lambda: client.render(points, size=(64, 48), sigma=2.0,
                                                 visibility=visibility))
        assert _warned(lambda: client.render(points, size=(64, 48), sigma=2.0))


def test_the_asyncio_client_warns(live_server):
    async def render():
        async with AsyncHeatmapClient(live_server.target, timeout=30) as client:
            return await client.render(PIXELS, size=(64, 48), sigma=2.0)

    caught = _warned(lambda: asyncio.run(render()))
    assert len(caught) == 1


@pytest.mark.parametrize("target", ["service", "local"])
def test_the_collate_warns_once(live_server, target):
    collate = HeatmapCollate(live_server.target if target == "service" else "local",
                             size=(64, 48), sigma=2.0)
    samples = [{"keypoints": points} for points in PIXELS]
    first = _warned(lambda: collate(samples))
    again = _warned(lambda: collate(samples))
    assert len(first) == 1 and not again
    assert "coords='pixel'" in str(first[0].message)


def test_a_mistake_that_starts_later_is_still_caught():
    """Past the first batches one in sixteen is looked at: a loader whose keypoints go wrong
    later (a second dataset in other coordinates) is warned about within sixteen batches."""
    from heatmap_client.off_map import EVERY, FIRST_BATCHES
    from heatmap_client.torch.local import LocalRenderer

    renderer = LocalRenderer()
    inside = PIXELS / 4  # 256 x 192 pixels scaled to the 64 x 48 heatmap
    assert not _warned(lambda: [renderer.render(inside, size=(64, 48), sigma=2.0)
                                for _ in range(FIRST_BATCHES + 3)])
    caught = _warned(lambda: [renderer.render(PIXELS, size=(64, 48), sigma=2.0)
                              for _ in range(EVERY)])
    assert len(caught) == 1
