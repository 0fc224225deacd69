"""gaussian_radius and sigma_from_box against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heatmap_render import RenderArgumentError, gaussian_radius, sigma_from_box

# A square box of side s: the three roots have closed forms (o = min_overlap).
#   centernet: r1 = (2s + 2s sqrt(2o / (1 + o))) / 2, r2 = (4s + 4s sqrt(o)) / 2,
#              r3 = (-4os + 4s sqrt(o)) / 2 = 2s (sqrt(o) - o)            <- the smallest
#   mmdet:     r1 = s (1 - sqrt(2o / (1 + o))), r2 = s (1 - sqrt(o)) / 2,
#              r3 = s (sqrt(o) - o) / (2o)


def _square(s, o, variant):
    if variant == "centernet":
        return 2 * s * (math.sqrt(o) - o)
    return min(s * (1 - math.sqrt(2 * o / (1 + o))), s * (1 - math.sqrt(o)) / 2,
               s * (math.sqrt(o) - o) / (2 * o))


@pytest.mark.parametrize("variant", ["centernet", "mmdet"])
@pytest.mark.parametrize("overlap", [0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("side", [1.0, 10.0, 37.5])
def test_square_boxes_match_the_closed_forms(side, overlap, variant):
    radius = gaussian_radius((side, side), overlap, variant=variant)
    assert isinstance(radius, float)
    assert radius == pytest.approx(_square(side, overlap, variant), rel=1e-12)


# (h, w) = (10, 10), o = 0.7:
#   centernet r3 = 20 (sqrt(0.7) - 0.7) = 2.7332005307  (r1 = 19.07, r2 = 36.73)
#   mmdet     r2 = 5 (1 - sqrt(0.7))    = 0.8166998673  (r1 = 0.9251, r3 = 0.9761)
# (h, w) = (96, 48), o = 0.7, mmdet: b2 = 288, c2 = 0.3 * 4608 = 1382.4,
#   r2 = (288 - sqrt(288^2 - 16 * 1382.4)) / 8 = (288 - 246.628...) / 8 = 5.1714418112
HAND = [
    ((10, 10), 0.7, "centernet", 2.7332005307),
    ((10, 10), 0.7, "mmdet", 0.8166998673),
    ((96, 48), 0.7, "centernet", 17.6540417208),
    ((96, 48), 0.7, "mmdet", 5.1714418112),
    ((32, 16), 0.5, "mmdet", 3.05572809),
    ((0, 5), 0.7, "mmdet", 0.0),  # a degenerate box: radius 0, not NaN
]


@pytest.mark.parametrize(("box", "overlap", "variant", "expected"), HAND)
def test_hand_computed_radii(box, overlap, variant, expected):
    assert gaussian_radius(box, overlap, variant=variant) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("box", "variant", "sigma"),
    [
        ((96, 48), "centernet", 35 / 6),  # int(17.654) = 17, diameter 35
        ((96, 48), "mmdet", 11 / 6),  # int(5.171) = 5, diameter 11
        ((10, 10), "mmdet", 1 / 6),  # int(0.817) = 0: diameter 1
        ((0, 5), "centernet", 1 / 6),
    ],
)
def test_sigma_is_the_truncated_diameter_over_six(box, variant, sigma):
    assert sigma_from_box(box, variant=variant) == pytest.approx(sigma, rel=1e-15)


def test_arrays_in_arrays_out_and_tensors_in_tensors_out(device):
    boxes = np.array([[[10, 10], [96, 48]], [[32, 16], [0, 5]]], dtype=np.float64)  # (2, 2, 2)
    expected = np.array([[0.8166998673, 5.1714418112], [1.7238139371, 0.0]])  # see HAND
    radii = gaussian_radius(boxes, 0.7, variant="mmdet")
    assert isinstance(radii, np.ndarray) and radii.shape == (2, 2) and radii.dtype == np.float64
    for index in np.ndindex(2, 2):
        box = tuple(boxes[index])
        assert radii[index] == gaussian_radius(box, 0.7, variant="mmdet")
    np.testing.assert_allclose(radii, expected, rtol=0, atol=1e-9)
    tensor = torch.from_numpy(boxes).float().to(device)
    from_tensor = gaussian_radius(tensor, 0.7, variant="mmdet")
    assert isinstance(from_tensor, torch.Tensor) and from_tensor.dtype == torch.float32
    assert from_tensor.device == device and from_tensor.shape == (2, 2)
    np.testing.assert_allclose(from_tensor.cpu().numpy(), radii, rtol=1e-6)
    sigmas = sigma_from_box(torch.tensor([[96, 48], [10, 10]], device=device))  # integer boxes
    assert sigmas.dtype == torch.float64
    assert sigmas.cpu().tolist() == [35 / 6, (2 * 2 + 1) / 6]  # centernet: int(2.733) = 2


BAD = {
    "negative side": (lambda: gaussian_radius((-1, 4)), "box_hw"),
    "nan side": (lambda: gaussian_radius((math.nan, 4)), "box_hw"),
    "three sides": (lambda: gaussian_radius((1, 2, 3)), "box_hw"),
    "scalar box": (lambda: sigma_from_box(4.0), "box_hw"),
    "strings": (lambda: gaussian_radius(("a", "b")), "box_hw"),
    "overlap 0": (lambda: gaussian_radius((4, 4), 0.0), "min_overlap"),
    "overlap 1": (lambda: gaussian_radius((4, 4), 1.0), "min_overlap"),
    "overlap string": (lambda: gaussian_radius((4, 4), "0.7"), "min_overlap"),
    "variant": (lambda: sigma_from_box((4, 4), variant="cornernet"), "variant"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_boxes_name_the_argument(case):
    call, argument = BAD[case]
    with pytest.raises(RenderArgumentError, match=f"^{argument}: ") as caught:
        call()
    assert caught.value.argument == argument


@pytest.mark.parametrize("method", ["msra", "udp"])
def test_box_sized_sigmas_render_per_instance(check_render, method):
    # CenterNet-style: each person's sigma from its box (in heatmap pixels), one per instance.
    from .heatmap_reference import random_keypoints

    boxes = np.array([[[30.0, 12.0], [18.0, 9.0], [60.0, 40.0]],
                      [[8.0, 8.0], [44.0, 20.0], [25.0, 25.0]]])  # (B, N, 2) as (h, w)
    sigmas = sigma_from_box(boxes, 0.7, variant="mmdet")[..., None]  # (B, N, 1)
    assert sigmas.shape == (2, 3, 1) and len(np.unique(sigmas)) > 1
    keypoints = random_keypoints(3, (2, 3, 6), (64, 48), sigma=float(sigmas.max()))
    check_render(keypoints, (64, 48), sigmas, method=method)


def test_cid_sigma_is_the_centernet_radius_over_three_untruncated():
    # mmpose's DecoupledHeatmap._get_instance_wise_sigmas: min of the three (b + sq) / 2 roots,
    # then / 3, no int().
    boxes = np.array([[20.3, 11.9], [64.0, 48.0], [3.0, 7.5]])
    radius = gaussian_radius(boxes, 0.7, variant="centernet")
    np.testing.assert_allclose(sigma_from_box(boxes, 0.7, rule="cid"), radius / 3, rtol=1e-15)
    centernet = sigma_from_box(boxes, 0.7)
    np.testing.assert_array_equal(centernet, (2 * np.floor(radius) + 1) / 6)


def test_an_unknown_rule_is_refused():
    with pytest.raises(RenderArgumentError, match="^rule: "):
        sigma_from_box((10.0, 10.0), rule="cornernet")
