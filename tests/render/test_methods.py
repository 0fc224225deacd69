"""Every method against the per-keypoint reference loops: random batches, edges, sigmas, coords."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from heatmap_render import render_heatmaps

from .heatmap_reference import (
    from_heatmap_pixels,
    random_keypoints,
    reference_render,
    seed_gaussian,
)

METHODS = ("seed", "msra", "udp", "dark")
COORDS = ("heatmap", "pixel", "normalized")
# 1.1 and 1.7 give a non-integer 3 * sigma: the seed's asymmetric window and shifted peak.
SIGMAS = (1.1, 1.5, 1.7, 2.0, 3.0, 10.0)
SIZE = (64, 48)  # (H, W), HRNet's 256x192 input at stride 4
INPUT_SIZE = (256, 192)


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("coords", COORDS)
@pytest.mark.parametrize("method", METHODS)
def test_random_keypoints_match_reference(check_render, method, coords, sigma):
    input_size = INPUT_SIZE if coords == "pixel" else None
    seed = zlib.crc32(f"{method}/{coords}/{sigma}".encode())
    keypoints = random_keypoints(
        seed, (3, 17), SIZE, coords=coords, method=method, input_size=input_size, sigma=sigma
    )
    result = check_render(
        keypoints, SIZE, sigma, method=method, coords=coords, input_size=input_size
    )
    assert 0 < int((result.weights == 0).sum()) < result.weights.numel()  # some far off, not all


@pytest.mark.parametrize("coords", COORDS)
@pytest.mark.parametrize("method", METHODS)
def test_float64_keypoints_match_reference(check_render, method, coords):
    input_size = (255, 193) if coords == "pixel" else None  # ratios that are not exact in float32
    keypoints = random_keypoints(
        7, (2, 17), SIZE, coords=coords, method=method, input_size=input_size, dtype=np.float64
    )
    check_render(keypoints, SIZE, 2.0, method=method, coords=coords, input_size=input_size)


@pytest.mark.parametrize("sigma_type", ["list", "numpy", "tensor"])
@pytest.mark.parametrize("method", METHODS)
def test_per_keypoint_sigma(check_render, device, method, sigma_type):
    sigmas = [1.1, 1.5, 1.7, 2.0, 3.0, 10.0, 2.0, 1.5]  # repeated values share a table block
    keypoints = random_keypoints(11, (4, len(sigmas)), SIZE, sigma=10.0)
    sigma = {
        "list": sigmas,
        "numpy": np.asarray(sigmas),
        "tensor": torch.tensor(sigmas, device=device),
    }[sigma_type]
    # The reference takes the plain list; the renderer gets the container under test.
    expected, _ = reference_render(keypoints, SIZE, sigmas, method=method)
    result = render_heatmaps(torch.from_numpy(keypoints).to(device), SIZE, sigma, method=method)
    torch.testing.assert_close(result.heatmaps.cpu(), torch.from_numpy(expected), rtol=0,
                               atol=2.5e-7)


# --- Edges -----------------------------------------------------------------------------------

EDGE_SIZE = (8, 11)  # small and not square: edge cases are exhaustive, so keep them cheap


def _edge_values(length):
    """Coordinates on, just inside and just past the edges of an axis of ``length`` pixels."""
    below_half = float(np.nextafter(np.float32(0.5), np.float32(0)))  # 0.49999997
    return [
        0.0, 0.25, below_half, 0.5, -0.25, -0.49, -0.5, -0.51, -0.99, -1.0, -1.49, -1.5, -1.51,
        -2.5, -3.3, -4.0, -4.01, -4.5, -5.5, -6.0, -100.0, -1e6,
        length - 1.0, length - 0.51, length - 0.5, length - 0.49, length - 0.01, float(length),
        length + 0.5, length + 2.3, length + 2.99, length + 3.0, length + 5.0, 1e6,
    ]


def _edge_grid(size, dtype):
    height, width = size
    xs, ys = np.meshgrid(_edge_values(width), _edge_values(height), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)[None].astype(dtype)  # (1, K, 2)


def _sweep(size, sigma, dtype):
    """Each axis swept in 1/8 pixel steps from beyond 3 sigma left to beyond 3 sigma right."""
    height, width = size
    reach = 3 * sigma + 3
    xs = np.arange(-reach, width + reach, 0.125)
    ys = np.arange(-reach, height + reach, 0.125)
    along_x = np.stack([xs, np.full_like(xs, height / 2)], axis=-1)
    along_y = np.stack([np.full_like(ys, width / 2), ys], axis=-1)
    return np.concatenate([along_x, along_y])[None].astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("sigma", [1.0, 1.1, 1.5, 1.7, 2.0, 3.0])
@pytest.mark.parametrize("method", METHODS)
def test_edges_match_reference(check_render, method, sigma, dtype):
    check_render(_edge_grid(EDGE_SIZE, dtype), EDGE_SIZE, sigma, method=method)


@pytest.mark.parametrize("sigma", [1.0, 1.1, 1.7, 3.0, 10.0])
@pytest.mark.parametrize("method", METHODS)
def test_sweep_across_edges_matches_reference(check_render, method, sigma):
    check_render(_sweep(EDGE_SIZE, sigma, np.float32), EDGE_SIZE, sigma, method=method)


@pytest.mark.parametrize("coords", ["normalized", "pixel"])
@pytest.mark.parametrize("method", METHODS)
def test_edges_in_other_coordinate_spaces(check_render, method, coords):
    # The heatmap-pixel edge grid read as normalized or input-pixel coordinates: different
    # truncation points, the same reference arithmetic.
    input_size = (31, 45) if coords == "pixel" else None
    grid = _edge_grid(EDGE_SIZE, np.float32)
    keypoints = np.stack(
        from_heatmap_pixels(grid[..., 0], grid[..., 1], coords, method, EDGE_SIZE, input_size),
        axis=-1,
    ).astype(np.float32)
    check_render(keypoints, EDGE_SIZE, 1.1, method=method, coords=coords, input_size=input_size)


# --- The seed's own function ------------------------------------------------------------------


def _seed_loop(keypoints, size, sigma):
    height, width = size
    return np.stack([
        np.stack([seed_gaussian(x, y, width, height, sigma) for x, y in sample])
        for sample in keypoints
    ])


@pytest.mark.parametrize("sigma", [1.0, 1.1, 2.0, 3.0])
@pytest.mark.parametrize("case", ["random", "edges"])
def test_seed_matches_the_seed_function(device, case, sigma):
    """Against the seed's function verbatim, its float32 kernel included."""
    size = (16, 12)
    height, width = size
    if case == "random":
        keypoints = np.random.default_rng(3).uniform(-1.2, 1.2, (2, 40, 2)).astype(np.float32)
    else:
        # Around -1 (u in (-1, 0), where int() truncates toward zero) and around +1.
        ticks = np.array([-1.5, -1.2, -1.1, -1.0, -0.99, -0.9, 0.0, 0.9, 0.99, 1.0, 1.1, 1.5])
        xs, ys = np.meshgrid(ticks, ticks, indexing="ij")
        edge = np.stack([xs.ravel(), ys.ravel()], axis=-1)
        # Exactly half a pixel and a little more left of the left edge.
        half = np.array([[-1 - 1 / width, 0.0], [-1 - 1.02 / width, 0.0], [-1 - 0.5 / width, 0.0]])
        keypoints = np.concatenate([edge, half])[None].astype(np.float32)
    expected = _seed_loop(keypoints, size, sigma)
    result = render_heatmaps(
        torch.from_numpy(keypoints).to(device), size, sigma, method="seed", coords="normalized"
    )
    torch.testing.assert_close(
        result.heatmaps.cpu(), torch.from_numpy(expected), rtol=0, atol=2.5e-7
    )


# --- Documented behaviours, checked by hand ---------------------------------------------------


def _render_one(device, x, y=4.0, *, method, sigma=1.0, size=(9, 10), dtype=torch.float32):
    keypoints = torch.tensor([[[x, y]]], dtype=dtype, device=device)
    heatmaps, weights = render_heatmaps(keypoints, size, sigma, method=method)
    return heatmaps[0, 0].cpu(), float(weights[0, 0])


def _peak(heatmap):
    row, col = divmod(int(torch.argmax(heatmap)), heatmap.shape[1])
    return col, row, float(heatmap[row, col])


@pytest.mark.parametrize(
    ("method", "x", "peak_x"),
    [
        ("seed", -0.5, 0),  # int(-0.5) == 0: truncation toward zero, not floor
        ("seed", -0.99, 0),
        ("msra", -0.51, 0),  # int(-0.01) == 0
        ("msra", -1.4, 0),  # int(-0.9) == 0
        ("msra", 9.49, 9),
        ("udp", -0.51, 0),  # window at int(x + 0.5) == 0, value exp(-0.51^2 / 2)
    ],
)
def test_truncation_toward_zero_near_the_left_edge(device, method, x, peak_x):
    heatmap, weight = _render_one(device, x, method=method)
    col, row, value = _peak(heatmap)
    assert (col, row) == (peak_x, 4) and weight == 1.0
    expected = np.exp(-((peak_x - x) ** 2) / 2) if method == "udp" else 1.0
    assert value == pytest.approx(expected, abs=2.5e-7)


@pytest.mark.parametrize(
    ("x", "peak_x"), [(5.0, 4), (5.9, 4), (4.0, 3), (3.0, 3), (2.0, 2), (0.0, 0)]
)
def test_seed_peak_shift_for_non_integer_three_sigma(device, x, peak_x):
    # sigma 1.1: window from int(mu - 3.3), kernel centre floor(7.6 / 2) == 3, so the peak lands
    # one pixel left of mu once mu >= 3.3, and on mu below that, where int() of the negative
    # window start truncates toward zero.
    heatmap, _ = _render_one(device, x, method="seed", sigma=1.1)
    assert _peak(heatmap)[0] == peak_x


@pytest.mark.parametrize(
    ("method", "x", "weight", "empty"),
    [
        ("msra", -4.5, 1.0, True),  # mu == -4, window [-7, 0): not outside, nothing on the map
        ("msra", -5.5, 0.0, True),  # mu == -5, right == -1 < 0: outside
        ("msra", 12.49, 1.0, False),  # mu == 12, left == 9: the last column is drawn
        ("msra", 12.5, 0.0, True),  # mu == 13, left == 10 >= W: outside
        ("seed", -4.9, 1.0, True),  # int(-4.9) == -4, as msra at -4.5
        ("seed", -5.0, 0.0, True),
        ("dark", -4.0, 1.0, False),  # right == x + 3 + 1 == 0, not < 0
        ("dark", -4.01, 0.0, True),
        ("dark", 12.99, 1.0, False),  # left == 9.99 < W
        ("dark", 13.0, 0.0, True),  # left == 10 >= W
    ],
)
def test_outside_rule_at_its_boundary(device, method, x, weight, empty):
    heatmap, actual_weight = _render_one(device, x, method=method)
    assert actual_weight == weight
    assert bool((heatmap == 0).all()) == empty


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_centre_rounds_in_float32_whatever_the_keypoints_dtype(device, dtype):
    # 0.49999997 + 0.5 rounds to 1.0 in float32 (mmpose on float32 keypoints; the wire carries
    # float32) but not in float64: float64 keypoints are computed in float32 too, so the
    # in-process renderer and the service agree on every edge.
    x = float(np.nextafter(np.float32(0.5), np.float32(0)))
    heatmap, _ = _render_one(device, x, method="msra", dtype=dtype)
    assert _peak(heatmap)[:2] == (1, 4)



@pytest.mark.parametrize(
    ("sigma", "x", "dtype", "weight"),
    [
        # float32(15.1) - float32(5.1) rounds to 10.0 == W: outside (in float64, 9.9999994).
        (1.7, 15.09999942779541, torch.float32, 0.0),
        (1.7, 15.09999942779541, torch.float64, 0.0),
        # -4.9 + 3.9 + 1 rounds to 0.0 in float32: not < 0 (in float64, -1.5e-8 < 0).
        (1.3, -4.900000095367432, torch.float32, 1.0),
        (1.3, -4.900000095367432, torch.float64, 1.0),
    ],
    ids=["left-float32", "left-float64", "right-float32", "right-float64"],
)
def test_dark_outside_test_runs_in_float32(device, sigma, x, dtype, weight):
    heatmap, actual_weight = _render_one(device, x, method="dark", sigma=sigma, dtype=dtype)
    assert actual_weight == weight
    assert bool(heatmap.any()) == (weight == 1.0)
