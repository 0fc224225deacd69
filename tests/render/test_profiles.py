"""Visibility and weights, instances, input types, and the profiles behind the dense stack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import RenderArgumentError, render_heatmaps, render_profiles

from .heatmap_reference import random_keypoints, reference_render

METHODS = ("seed", "msra", "udp", "dark")
SIZE = (64, 48)
EDGE_SIZE = (9, 10)

VISIBILITY = [0.0, 0.49, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("layout", ["(B, K)", "(B, N, K)"])
@pytest.mark.parametrize("method", METHODS)
def test_visibility_threshold_and_weights(check_render, method, layout):
    # The same five visibilities on a keypoint inside the heatmap and one far outside it.
    inside, outside = [5.0, 4.0], [-50.0, 4.0]
    keypoints = np.array([[inside] * 5 + [outside] * 5], dtype=np.float32)  # (1, 10, 2)
    visibility = np.array([VISIBILITY * 2], dtype=np.float32)
    if layout == "(B, N, K)":
        keypoints, visibility = keypoints[:, None], visibility[:, None]
    result = check_render(keypoints, EDGE_SIZE, 1.5, method=method, visibility=visibility)
    # Below 0.5: not drawn, weight kept. Drawn but outside: weight 0.
    expected_weights = np.float32([0.0, 0.49, 0.5, 0.75, 1.0] + [0.0, 0.49, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(result.weights.cpu().numpy().ravel(), expected_weights)
    drawn = (result.heatmaps[0].cpu().amax(dim=(-2, -1)) > 0).tolist()
    assert drawn == [False, False, True, True, True] + [False] * 5


@pytest.mark.parametrize(
    ("visibility", "weights"),
    [
        (torch.tensor([[0, 1, 1]]), [0.0, 1.0, 1.0]),  # COCO's v as mmpose loads it, integers
        (torch.tensor([[False, True, True]]), [0.0, 1.0, 1.0]),
        (np.array([[0.0, 0.75, 1.0]]), [0.0, 0.75, 1.0]),  # float64 numpy
        (None, [1.0, 1.0, 1.0]),
    ],
    ids=["int", "bool", "numpy-float64", "none"],
)
def test_visibility_types(device, visibility, weights):
    keypoints = torch.tensor([[[3.0, 3.0], [5.0, 4.0], [6.5, 2.0]]], device=device)
    if isinstance(visibility, torch.Tensor):
        visibility = visibility.to(device)
    result = render_heatmaps(keypoints, EDGE_SIZE, 1.5, visibility=visibility)
    assert result.weights.dtype == torch.float32 and result.weights.device == device
    assert result.weights.cpu().tolist() == [weights]
    assert (result.heatmaps[0].cpu().amax(dim=(-2, -1)) > 0).tolist() == [w >= 0.5 for w in weights]


@pytest.mark.parametrize("sigma", [2.0, [1.5, 2.0, 3.0, 1.1, 2.0, 1.7]], ids=["scalar", "per-kp"])
@pytest.mark.parametrize("method", METHODS)
def test_three_instances_merge_by_maximum(check_render, method, sigma):
    rng = np.random.default_rng(5)
    first = random_keypoints(21, (2, 1, 6), SIZE)
    # Instances close to one another, so that their Gaussians overlap and the maximum matters.
    keypoints = (first + rng.normal(0.0, 2.0, (2, 3, 6, 2))).astype(np.float32)
    visibility = rng.choice(np.float32([0.0, 0.3, 0.5, 1.0, 1.0]), (2, 3, 6))
    result = check_render(keypoints, SIZE, sigma, method=method, visibility=visibility)
    assert tuple(result.weights.shape) == (2, 3, 6)


@pytest.mark.parametrize("instances", [None, 1, 3])
@pytest.mark.parametrize("method", METHODS)
def test_profiles_outer_product_is_the_dense_render(device, method, instances):
    shape = (2, 5) if instances is None else (2, instances, 5)
    keypoints = torch.from_numpy(random_keypoints(8, shape, SIZE)).to(device)
    visibility = (torch.arange(np.prod(shape), device=device).reshape(shape) % 4 != 0).float()
    profiles = render_profiles(keypoints, SIZE, 2.0, method=method, visibility=visibility)
    dense = render_heatmaps(keypoints, SIZE, 2.0, method=method, visibility=visibility)
    height, width = SIZE
    full = (2, 1 if instances is None else instances, 5)
    assert tuple(profiles.rows.shape) == (*full, height)
    assert tuple(profiles.cols.shape) == (*full, width)
    assert profiles.rows.dtype == profiles.cols.dtype == torch.float32
    assert profiles.rows.device == device
    rebuilt = (profiles.rows[..., :, None] * profiles.cols[..., None, :]).amax(dim=1)
    assert torch.equal(rebuilt, dense.heatmaps)
    assert torch.equal(profiles.weights, dense.weights)
    # Keypoints that are not drawn have all-zero profiles.
    hidden = (visibility == 0).reshape(full)
    assert not bool(profiles.rows[hidden].any()) and not bool(profiles.cols[hidden].any())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("method", METHODS)
def test_numpy_keypoints(method, dtype):
    keypoints = random_keypoints(13, (2, 7), SIZE, dtype=dtype)
    visibility = np.ones((2, 7), dtype=np.float32)
    # float64 keypoints are computed in float32, as they travel on the wire.
    expected, expected_weights = reference_render(keypoints.astype(np.float32), SIZE, 2.0,
                                                  method=method)
    result = render_heatmaps(keypoints, SIZE, 2.0, method=method, visibility=visibility)
    assert result.heatmaps.device.type == "cpu"  # numpy input: the result is on the CPU
    torch.testing.assert_close(result.heatmaps, torch.from_numpy(expected), rtol=0, atol=2.5e-7)
    np.testing.assert_array_equal(result.weights.numpy(), expected_weights)
    from_tensor = render_heatmaps(torch.from_numpy(keypoints), SIZE, 2.0, method=method)
    assert torch.equal(result.heatmaps, from_tensor.heatmaps)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, torch.bfloat16])
def test_integer_and_half_keypoints_are_widened_to_float32(device, dtype):
    keypoints = torch.tensor([[[3, 4], [7, 1], [-2, 5]]], device=device)
    widened = render_heatmaps(keypoints.to(dtype), EDGE_SIZE, 1.5, method="udp")
    as_float = render_heatmaps(keypoints.float(), EDGE_SIZE, 1.5, method="udp")
    assert torch.equal(widened.heatmaps, as_float.heatmaps)


def test_nested_lists_are_accepted():
    result = render_heatmaps([[[3.0, 4.0], [7.25, 1.5]]], EDGE_SIZE, 1.5)
    expected, _ = reference_render(
        np.array([[[3.0, 4.0], [7.25, 1.5]]]), EDGE_SIZE, 1.5, method="msra"
    )
    torch.testing.assert_close(result.heatmaps, torch.from_numpy(expected), rtol=0, atol=2.5e-7)


@pytest.mark.parametrize("visibility", [[[0, 1, 2]], [[0.0, 1.0, -0.5]], [[0.5, 1.0001, 1.0]]],
                         ids=["coco-flags", "negative", "just-above-one"])
def test_visibility_outside_zero_to_one_is_refused(device, visibility):
    # A weight of 2 (COCO's raw flag) would double a keypoint's loss, silently.
    keypoints = torch.tensor([[[3.0, 3.0], [5.0, 4.0], [6.5, 2.0]]], device=device)
    with pytest.raises(RenderArgumentError, match="^visibility: values must lie in") as caught:
        render_heatmaps(keypoints, EDGE_SIZE, 1.5, visibility=torch.tensor(visibility))
    assert "COCO" in str(caught.value) and caught.value.argument == "visibility"


@pytest.mark.parametrize("method", METHODS)
def test_nan_keypoints_that_are_not_drawn_are_empty_with_their_visibility_as_weight(
        device, method):
    # DeepLabCut and many label tools write NaN for "not labelled".
    keypoints = torch.tensor([[[3.0, 3.0], [float("nan"), float("nan")], [6.5, float("inf")]]],
                             device=device)
    visibility = torch.tensor([[1.0, 0.0, 0.3]], device=device)
    result = render_heatmaps(keypoints, EDGE_SIZE, 1.5, method=method, visibility=visibility)
    assert result.weights.cpu().tolist() == [[1.0, 0.0, pytest.approx(0.3)]]
    assert bool(result.heatmaps[0, 0].any()) and not bool(result.heatmaps[0, 1:].any())
    assert bool(torch.isfinite(result.heatmaps).all())
    alone = render_heatmaps(keypoints[:, :1], EDGE_SIZE, 1.5, method=method)
    assert torch.equal(result.heatmaps[:, :1], alone.heatmaps)


def test_a_nan_keypoint_to_be_drawn_is_refused(device):
    keypoints = torch.tensor([[[3.0, 3.0], [float("nan"), 1.0]]], device=device)
    for visibility in (None, torch.tensor([[1.0, 0.5]], device=device)):
        with pytest.raises(RenderArgumentError, match="^keypoints: contains NaN") as caught:
            render_heatmaps(keypoints, EDGE_SIZE, 1.5, visibility=visibility)
        assert "(b, n, k) = (0, 0, 1)" in str(caught.value)
