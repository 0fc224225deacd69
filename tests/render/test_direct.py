"""Profiles evaluated at the request's own centres, window by window (``direct.py``): the same
values as evaluating every pixel of the axis, and memory and time that follow the window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import render_profiles


def _keypoints(seed: int, count: int, x_range: tuple[float, float], height: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(*x_range, (2, count))
    y = rng.uniform(-4, height + 4, (2, count))
    return np.stack([x, y], axis=-1).astype(np.float32)


@pytest.mark.parametrize("method", ["udp", "msra", "seed"])
@pytest.mark.parametrize("sigma", [1.0, 2.5, "per keypoint"])
def test_a_window_inside_the_axis_equals_the_whole_axis_evaluated(device, method, sigma):
    """On a 16-wide map a 3-sigma window covers the axis and every pixel is evaluated; on a
    256-wide map only each window is: the columns they share are equal, bit for bit."""
    keypoints = torch.from_numpy(_keypoints(3, 40, (2.0, 11.0), 24)).to(device)
    if sigma == "per keypoint":  # many distinct values: never tabled
        sigma = torch.linspace(0.6, 2.9, 40, dtype=torch.float32, device=device).expand(2, 40)
    narrow = render_profiles(keypoints, (24, 16), sigma, method=method)
    wide = render_profiles(keypoints, (24, 256), sigma, method=method)
    assert torch.equal(narrow.weights, wide.weights)
    assert torch.equal(narrow.rows, wide.rows)
    assert torch.equal(narrow.cols, wide.cols[..., :16])
    assert not wide.cols[..., 16 + 20:].any()  # nothing past the widest window
    assert narrow.cols.max() > 0.5


def test_a_long_axis_draws_each_window_and_nothing_else():
    """16,000 keypoints on a 4096-pixel axis (udp, whose rows are each keypoint's own): each row
    holds its window, at most 13 pixels for sigma 2, and exact zeros elsewhere."""
    points = np.random.default_rng(2).uniform(0, 4096, (1, 16_000, 2)).astype(np.float32)
    points[..., 0] = 0.0
    profiles = render_profiles(points, (4096, 1), 2.0, method="udp")
    assert profiles.rows.shape == (1, 1, 16_000, 4096)
    nonzero = (profiles.rows > 0).sum(dim=-1)
    assert int(nonzero.max()) <= 13
    assert bool((nonzero[profiles.weights[:, None] > 0] >= 1).all())
