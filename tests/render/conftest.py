"""Fixtures for the renderer tests: tolerances and a one-call check against the reference loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import render_heatmaps

from .heatmap_reference import reference_render

# float32: the renderer multiplies two float32 profiles, each rounded from float64, so it sits
# within ~1.5 float32 half-ulps of the float64 value rounded once (2.5e-7 is ~2 ulps at 1).
FLOAT32_ATOL = 2.5e-7


def atol_for(dtype: torch.dtype) -> float:
    """Absolute tolerance against the float64 reference, for an output of ``dtype``."""
    if dtype == torch.float32:
        return FLOAT32_ATOL
    # One rounding of a value <= 1 to the lower precision: half an ulp at 1, on top of float32's.
    return torch.finfo(dtype).eps / 2 + FLOAT32_ATOL


@pytest.fixture
def check_render(device):
    """Renders on the test device and compares with :func:`reference_render`.

    Call it as ``check_render(keypoints_np, size, sigma, method=..., ...)`` with numpy keypoints
    (float32, or float64, which the renderer and the reference both compute in float32); returns
    the renderer's result. Heatmaps must match within the dtype's
    tolerance, weights exactly, and for the windowed methods the zero pattern (the window) exactly.
    """

    def check(keypoints, size, sigma, *, method, coords="heatmap", input_size=None,
              visibility=None, dtype=torch.float32):
        # Coordinates are computed in float32 whatever the keypoints' dtype, as on the wire.
        expected, expected_weights = reference_render(
            keypoints.astype(np.float32), size, sigma, method=method, coords=coords,
            input_size=input_size, visibility=visibility,
        )
        vis = None if visibility is None else torch.as_tensor(visibility).to(device)
        result = render_heatmaps(
            torch.from_numpy(keypoints).to(device), size, sigma, method=method, coords=coords,
            input_size=input_size, visibility=vis, dtype=dtype,
        )
        heatmaps, weights = result
        assert heatmaps.device == device and weights.device == device
        assert heatmaps.dtype == dtype and weights.dtype == torch.float32
        assert tuple(heatmaps.shape) == expected.shape
        assert tuple(weights.shape) == expected_weights.shape
        actual = heatmaps.cpu().float()
        torch.testing.assert_close(
            actual, torch.from_numpy(expected), rtol=0, atol=atol_for(dtype)
        )
        np.testing.assert_array_equal(weights.cpu().numpy(), expected_weights)
        if method != "dark":
            # A window one pixel off would also show here, however small its edge values.
            np.testing.assert_array_equal(actual.numpy() == 0, expected == 0)
        return result

    return check
