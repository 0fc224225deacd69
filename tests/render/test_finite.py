"""No NaN or inf, ever: sigmas below the floor are refused, far keypoints are empty channels.

Every method in every coordinate space, with the table and the direct path, with and without
visibility and per-instance sigma: finite coordinates near the float range (3.4e38, the largest a
float32 holds: coordinates are computed in float32 whatever the caller passes, as they travel on
the wire) must scale without overflowing into ``inf - inf``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import SIGMA_MIN, RenderArgumentError, render_heatmaps, render_profiles

METHODS = ("seed", "msra", "udp", "dark")
COORDS = ("heatmap", "pixel", "normalized")
SIZE = (32, 24)  # (H, W)
# Smaller than the heatmap, so that pixel coordinates grow when scaled (udp: 11/23, 15/31).
INPUT_SIZE = (16, 12)
FAR = {
    "float32 +-3.4e38": (np.float32, 3.4e38),
    "float32 max": (np.float32, float(np.finfo(np.float32).max)),
    "float64 +-3.4e38": (np.float64, 3.4e38),
}
VARIANTS = ("plain", "visibility", "per-instance-sigma", "direct")


def _normal_point(coords):
    """A keypoint in the middle of the heatmap, in ``coords``."""
    if coords == "normalized":
        return [0.1, -0.2]
    if coords == "pixel":
        return [5.3, 7.6]
    return [10.3, 15.6]


def _batch(coords, dtype, far):
    """``(1, 2, 9, 2)``: keypoint 0 is on the heatmap, the others are far in every direction."""
    signs = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]
    normal = _normal_point(coords)
    points = [normal] + [
        [far * sx if sx else normal[0], far * sy if sy else normal[1]] for sx, sy in signs
    ]
    swapped = points[:1] + points[:0:-1]  # instance 1: the far ones in the other order
    return np.array([[points, swapped]], dtype=dtype)


def _render(function, device, keypoints, method, coords, variant, monkeypatch, sigma=1.5):
    import heatmap_render.profiles as profiles

    kwargs = {"method": method, "coords": coords,
              "input_size": INPUT_SIZE if coords == "pixel" else None}
    if variant == "visibility":
        kwargs["visibility"] = torch.ones(keypoints.shape[:-1], device=device)
    if variant == "per-instance-sigma":
        sigma = torch.tensor([[[sigma], [sigma * 1.5]]], dtype=torch.float64)
    if variant == "direct":
        monkeypatch.setattr(profiles, "PLAN_MAX_ELEMENTS", 0)
    return function(torch.from_numpy(keypoints).to(device), SIZE, sigma, **kwargs)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("far", FAR)
@pytest.mark.parametrize("coords", COORDS)
@pytest.mark.parametrize("method", METHODS)
def test_far_keypoints_are_empty_channels_with_weight_zero(
    device, monkeypatch, method, coords, far, variant
):
    dtype, value = FAR[far]
    keypoints = _batch(coords, dtype, value)
    heatmaps, weights = _render(render_heatmaps, device, keypoints, method, coords, variant,
                                monkeypatch)
    assert bool(torch.isfinite(heatmaps).all()) and bool(torch.isfinite(weights).all())
    assert weights[0, :, 1:].eq(0).all()  # every far keypoint, in both instances
    assert not bool(heatmaps[0, 1:].any())  # channels 1..8: far in both instances
    # Channel 0 holds the normal keypoint (in instance 0) and is drawn as if alone.
    assert float(weights[0, 0, 0]) == 1.0
    alone = _render(render_heatmaps, device, keypoints[:, :1, :1], method, coords, "plain",
                    monkeypatch)
    if variant != "per-instance-sigma":
        torch.testing.assert_close(heatmaps[:, :1], alone.heatmaps, rtol=0, atol=0)
    assert float(heatmaps[0, 0].max()) > 0.5


@pytest.mark.parametrize("far", ["float32 +-3.4e38", "float64 +-3.4e38"])
@pytest.mark.parametrize("coords", COORDS)
@pytest.mark.parametrize("method", METHODS)
def test_far_keypoints_give_finite_profiles(device, monkeypatch, method, coords, far):
    dtype, value = FAR[far]
    keypoints = _batch(coords, dtype, value)
    rows, cols, weights = _render(render_profiles, device, keypoints, method, coords, "plain",
                                  monkeypatch)
    assert bool(torch.isfinite(rows).all()) and bool(torch.isfinite(cols).all())
    assert weights[0, :, 1:].eq(0).all()


# The floor is checked with the arguments, before any method or space is looked at: one method and
# space each prove it.
@pytest.mark.parametrize("sigma", [1e-300, 1e-162, 1e-100, SIGMA_MIN / 2, 0.0, -SIGMA_MIN])
@pytest.mark.parametrize("function", [render_heatmaps, render_profiles])
@pytest.mark.parametrize("method, coords", [("msra", "heatmap"), ("udp", "pixel")])
def test_sigma_below_the_floor_is_refused(device, method, coords, function, sigma):
    keypoints = torch.from_numpy(_batch(coords, np.float32, 3.4e38)).to(device)
    input_size = INPUT_SIZE if coords == "pixel" else None
    with pytest.raises(RenderArgumentError, match="^sigma: ") as caught:
        function(keypoints, SIZE, sigma, method=method, coords=coords, input_size=input_size)
    assert caught.value.argument == "sigma"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("coords", COORDS)
@pytest.mark.parametrize("method", METHODS)
def test_sigma_at_the_floor_is_finite(device, monkeypatch, method, coords, dtype, variant):
    keypoints = _batch(coords, dtype, 3.4e38)
    heatmaps, weights = _render(render_heatmaps, device, keypoints, method, coords, variant,
                                monkeypatch, sigma=SIGMA_MIN)
    assert bool(torch.isfinite(heatmaps).all())
    assert float(heatmaps.max()) <= 1.0


@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
def test_sigma_at_the_floor_on_a_pixel_centre_is_a_single_peak(device, method):
    # u exactly on a pixel: the Gaussian of a vanishing sigma is 1 there and 0 elsewhere.
    keypoints = torch.tensor([[[7.0, 3.0]]], device=device)
    heatmaps, weights = render_heatmaps(keypoints, (6, 10), SIGMA_MIN, method=method)
    expected = torch.zeros((1, 1, 6, 10))
    expected[0, 0, 3, 7] = 1.0
    assert torch.equal(heatmaps.cpu(), expected)
    assert float(weights[0, 0]) == 1.0


@pytest.mark.parametrize("function", [render_heatmaps, render_profiles])
def test_float64_beyond_the_float32_range_is_refused_as_on_the_wire(device, function):
    # 1e308 is finite in float64 and infinite in float32, the precision coordinates have: the
    # service refuses it (it travels as float32), and so does the renderer, naming the argument.
    keypoints = torch.from_numpy(_batch("heatmap", np.float64, 1e308)).to(device)
    with pytest.raises(RenderArgumentError, match="^keypoints: ") as caught:
        function(keypoints, SIZE, 1.5)
    assert caught.value.argument == "keypoints"
    hidden = torch.zeros(keypoints.shape[:-1], device=device)  # not drawn: any value is fine
    result = function(keypoints, SIZE, 1.5, visibility=hidden)
    assert not bool(result.weights.any())
