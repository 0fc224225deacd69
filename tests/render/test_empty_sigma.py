"""An empty sigma array for an empty batch (or no instances) renders the empty result, as a
scalar sigma would, instead of failing inside the renderer."""

from __future__ import annotations

import numpy as np
import pytest

from heatmap_render import render_heatmaps, render_profiles


@pytest.mark.parametrize("keypoints, sigma", [
    ((0, 3, 2), (0, 3)),
    ((0, 2, 3, 2), (0, 1, 1)),
    ((2, 0, 3, 2), (2, 0, 1)),
    ((2, 0, 3, 2), (2, 0, 3)),
])
@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
def test_an_empty_sigma_array_equals_a_scalar(keypoints, sigma, method):
    points = np.ones(keypoints, np.float32)
    by_array = render_heatmaps(points, (8, 6), np.full(sigma, 2.0), method=method)
    by_scalar = render_heatmaps(points, (8, 6), 2.0, method=method)
    np.testing.assert_array_equal(by_array.heatmaps.numpy(), by_scalar.heatmaps.numpy())
    np.testing.assert_array_equal(by_array.weights.numpy(), by_scalar.weights.numpy())
    profiles = render_profiles(points, (8, 6), np.full(sigma, 2.0), method=method)
    assert tuple(profiles.rows.shape[-1:]) == (8,)


def test_an_empty_sigma_that_does_not_broadcast_is_still_refused():
    with pytest.raises(ValueError, match="^sigma: "):
        render_heatmaps(np.ones((2, 3, 2), np.float32), (8, 6), np.ones((0,)))
