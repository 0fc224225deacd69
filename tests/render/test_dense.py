"""The dense stack: output dtypes, in-place ``out=`` reuse and empty shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import render_heatmaps, render_profiles

from .heatmap_reference import random_keypoints

METHODS = ("seed", "msra", "udp", "dark")
LOW_PRECISION = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

# (B, K, (H, W)). "blocks": 300 channels of 64x64 make the CPU's float32 scratch path work in
# several blocks, the last one partial.
SHAPES = {"small": (2, 5, (16, 12)), "blocks": (3, 100, (64, 64))}


def _keypoints(device, batch, num_keypoints, size, instances=None, seed=0):
    shape = (batch, num_keypoints) if instances is None else (batch, instances, num_keypoints)
    return torch.from_numpy(random_keypoints(seed, shape, size)).to(device)


@pytest.mark.parametrize("instances", [None, 3])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spelling", ["dtype", "name"])
@pytest.mark.parametrize("dtype_name", LOW_PRECISION)
@pytest.mark.parametrize("method", METHODS)
def test_low_precision_is_the_float32_render_cast(
    device, method, dtype_name, spelling, shape, instances
):
    batch, num_keypoints, size = SHAPES[shape]
    keypoints = _keypoints(device, batch, num_keypoints, size, instances)
    dtype = LOW_PRECISION[dtype_name]
    full = render_heatmaps(keypoints, size, 1.5, method=method)
    low = render_heatmaps(
        keypoints, size, 1.5, method=method, dtype=dtype if spelling == "dtype" else dtype_name
    )
    assert low.heatmaps.dtype == dtype and low.heatmaps.device == device
    assert torch.equal(low.heatmaps, full.heatmaps.to(dtype))  # bit for bit
    assert low.weights.dtype == torch.float32
    assert torch.equal(low.weights, full.weights)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", METHODS)
def test_low_precision_against_reference(check_render, method, dtype):
    keypoints = random_keypoints(4, (2, 9), (32, 24))
    check_render(keypoints, (32, 24), 2.0, method=method, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, "float32"])
def test_float32_is_the_default(device, dtype):
    keypoints = _keypoints(device, 2, 3, (16, 12))
    named = render_heatmaps(keypoints, (16, 12), 2.0, dtype=dtype)
    default = render_heatmaps(keypoints, (16, 12), 2.0)
    assert named.heatmaps.dtype == default.heatmaps.dtype == torch.float32
    assert torch.equal(named.heatmaps, default.heatmaps)


# --- out= ---------------------------------------------------------------------------------------


def _stale(shape, dtype, device):
    # NaN never compares equal, so a single element left unwritten fails torch.equal.
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@pytest.mark.parametrize("instances", [None, 0, 1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", METHODS)
def test_out_is_overwritten_in_place(device, method, dtype, instances):
    size = (20, 14)
    keypoints = _keypoints(device, 2, 6, size, instances, seed=2)
    # Channel 0 is hidden and channel 1 far off the heatmap in every instance: they end up empty.
    visibility = torch.ones(keypoints.shape[:-1], device=device)
    visibility[..., 0] = 0.0
    keypoints[..., 1, :] = -100.0
    fresh = render_heatmaps(keypoints, size, 2.0, method=method, visibility=visibility, dtype=dtype)
    out = _stale((2, 6, *size), dtype, device)
    pointer = out.data_ptr()
    result = render_heatmaps(
        keypoints, size, 2.0, method=method, visibility=visibility, dtype=dtype, out=out
    )
    assert result.heatmaps is out and out.data_ptr() == pointer
    assert torch.equal(out, fresh.heatmaps)
    assert torch.equal(result.weights, fresh.weights)
    assert not bool(out[:, :2].any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", METHODS)
def test_out_reused_across_batches(device, method, dtype):
    size = (16, 12)
    out = torch.empty((2, 4, *size), dtype=dtype, device=device)
    for seed in (0, 1):  # two batches through one buffer: nothing of the first survives
        keypoints = _keypoints(device, 2, 4, size, seed=seed)
        result = render_heatmaps(keypoints, size, 1.5, method=method, dtype=dtype, out=out)
        assert result.heatmaps is out
    assert torch.equal(out, render_heatmaps(keypoints, size, 1.5, method=method, dtype=dtype)[0])


# --- Empty shapes -------------------------------------------------------------------------------

EMPTY = {
    "B=0": ((0, 3, 2), (0, 3), (0, 1, 3)),
    "K=0": ((2, 0, 2), (2, 0), (2, 1, 0)),
    "B=0 N=2": ((0, 2, 3, 2), (0, 2, 3), (0, 2, 3)),
    "N=0": ((2, 0, 3, 2), (2, 0, 3), (2, 0, 3)),
    "K=0 N=2": ((2, 2, 0, 2), (2, 2, 0), (2, 2, 0)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", EMPTY)
@pytest.mark.parametrize("method", METHODS)
def test_empty_inputs(device, method, case, dtype):
    shape, weight_shape, profile_shape = EMPTY[case]
    size = (8, 6)
    keypoints = torch.zeros(shape, device=device)
    visibility = torch.ones(weight_shape, device=device)
    batch, num_keypoints = shape[0], shape[-2]
    out = _stale((batch, num_keypoints, *size), dtype, device)
    result = render_heatmaps(
        keypoints, size, 2.0, method=method, visibility=visibility, dtype=dtype, out=out
    )
    assert result.heatmaps is out
    assert tuple(out.shape) == (batch, num_keypoints, *size)
    assert not bool(out.any())  # N == 0: every channel written, with zeros
    assert tuple(result.weights.shape) == weight_shape and result.weights.dtype == torch.float32
    assert result.weights.device == device
    profiles = render_profiles(keypoints, size, 2.0, method=method)
    assert tuple(profiles.rows.shape) == (*profile_shape, size[0])
    assert tuple(profiles.cols.shape) == (*profile_shape, size[1])


@pytest.mark.parametrize("method", METHODS)
def test_no_keypoints_with_an_empty_sigma_list(device, method):
    result = render_heatmaps(torch.zeros((2, 0, 2), device=device), (8, 6), [], method=method)
    assert tuple(result.heatmaps.shape) == (2, 0, 8, 6)
    assert tuple(result.weights.shape) == (2, 0)


def test_results_live_on_the_keypoints_device(device):
    keypoints = torch.from_numpy(random_keypoints(1, (2, 3), (16, 12))).to(device)
    result = render_heatmaps(keypoints, (16, 12), np.float64(2.0))
    assert result.heatmaps.device == device and result.weights.device == device
