"""SimCC labels against mmpose's SimCCLabel.encode: within 2 float32 ulps, weights exact."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from heatmap_render import (
    SIGMA_MIN,
    RenderArgumentError,
    check_simcc_args,
    concatenate_render_args,
    render_simcc,
    simcc_from_args,
)

from .simcc_reference import simcc_reference

RTMPOSE = {  # (H_in, W_in), (sigma_x, sigma_y) as the RTMPose configs write them
    "256x192": ((256, 192), (4.9, 5.66)),
    "384x288": ((384, 288), (6.93, 7.99)),
}


def assert_within_ulps(actual: torch.Tensor, expected: np.ndarray, ulps: int = 2) -> None:
    """Elementwise ``|a - e| <= ulps * spacing(max(|a|, |e|))`` in float32."""
    actual = actual.cpu().numpy()
    assert actual.dtype == np.float32 and expected.dtype == np.float32
    assert actual.shape == expected.shape
    scale = np.spacing(np.maximum(np.abs(actual), np.abs(expected)))
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = float(np.max(error / scale, initial=0.0))
    assert worst <= ulps, f"{worst:.2f} ulps apart"


def check(device, keypoints, input_size, sigma, visibility=None, **options):
    """Renders on ``device`` and compares with the reference; returns the result."""
    expected_x, expected_y, expected_weights = simcc_reference(
        keypoints, input_size, sigma, visibility=visibility, **options
    )
    vis = None if visibility is None else torch.from_numpy(visibility).to(device)
    if isinstance(sigma, tuple):  # the axes named: these tests choose any pair on purpose
        sigma = {"x": sigma[0], "y": sigma[1]}
    result = render_simcc(torch.from_numpy(keypoints).to(device), input_size, sigma,
                          visibility=vis, **options)
    for tensor in result:
        assert tensor.device == device and tensor.dtype == torch.float32
    assert_within_ulps(result.x_labels, expected_x)
    assert_within_ulps(result.y_labels, expected_y)
    np.testing.assert_array_equal(result.weights.cpu().numpy(), expected_weights)
    # Not drawn is exactly zero, drawn is never all zero on an axis the Gaussian touches.
    np.testing.assert_array_equal(result.x_labels.cpu().numpy() == 0, expected_x == 0)
    return result


def _keypoints(seed, shape, input_size, dtype=np.float32, margin=20.0):
    """Mostly on the image, some past each border by up to ``margin`` pixels."""
    rng = np.random.default_rng(seed)
    height, width = input_size
    x = rng.uniform(-margin, width + margin, shape)
    y = rng.uniform(-margin, height + margin, shape)
    return np.stack([x, y], axis=-1).astype(dtype)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("config", RTMPOSE)
def test_rtmpose_configurations(device, config, normalize):
    input_size, sigma = RTMPOSE[config]
    keypoints = _keypoints(zlib.crc32(config.encode()), (8, 17), input_size)
    visibility = np.random.default_rng(1).choice(np.float32([0.0, 0.3, 0.5, 1.0, 0.8]), (8, 17))
    result = check(device, keypoints, input_size, sigma, visibility, normalize=normalize)
    height, width = input_size
    assert result.x_labels.shape == (8, 17, width * 2)
    assert result.y_labels.shape == (8, 17, height * 2)
    assert 0 < int((result.weights == 0).sum()) < 8 * 17


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("sigma", [6.0, 2, (4.9, 5.66), (1.0, 9.5), (0.3, 0.7)])
@pytest.mark.parametrize("split_ratio", [0.75, 1.0, 1.3, 1.5, 2.0, 3.0])
def test_split_ratios_and_per_axis_sigma(device, split_ratio, sigma, normalize):
    input_size = (64, 48)
    seed = zlib.crc32(f"{split_ratio}/{sigma}/{normalize}".encode())
    keypoints = _keypoints(seed, (3, 2, 9), input_size)  # (B, N, K, 2): every instance labelled
    check(device, keypoints, input_size, sigma, split_ratio=split_ratio, normalize=normalize)


@pytest.mark.parametrize("split_ratio", [1.5, 2.0, 2.5])
def test_half_way_centres_round_half_to_even(device, split_ratio):
    # x * r lands exactly on k + 0.5 where float32 can say so: np.around sends it to the even k.
    halves = (np.arange(-6, 60) + 0.5) / split_ratio
    keypoints = np.stack([halves, halves[::-1] * 0.75], axis=-1)[None].astype(np.float32)
    result = check(device, keypoints, (40, 30), (2.0, 3.0), split_ratio=split_ratio,
                   normalize=False)
    exact = (keypoints[0, :, 0] * np.float32(split_ratio)) % 1 == 0.5
    assert exact.sum() > 20  # the test really has half-way centres
    peaks = result.x_labels[0].argmax(dim=-1).cpu().numpy()
    drawn = result.weights[0].cpu().numpy() > 0
    centres = np.around(keypoints[0, :, 0] * np.float32(split_ratio))
    inside = drawn & exact & (centres >= 0) & (centres < round(30 * split_ratio))
    assert inside.sum() > 10
    np.testing.assert_array_equal(peaks[inside], centres[inside])
    assert np.all(peaks[inside] % 2 == 0)


@pytest.mark.parametrize("smoothing", ["gaussian", "standard"])
@pytest.mark.parametrize("sigma", [(1.0, 1.0), (4.9, 5.66), (2.3, 0.9)])
@pytest.mark.parametrize("split_ratio", [1.5, 2.0])
def test_sweep_across_the_borders(device, split_ratio, sigma, smoothing):
    """Each axis swept in quarter bins from beyond 3 sigma left to beyond 3 sigma right."""
    height, width = input_size = (21, 17)
    reach = (3 * max(sigma) + 3) / split_ratio
    xs = np.arange(-reach, width + reach, 0.25 / split_ratio)
    ys = np.arange(-reach, height + reach, 0.25 / split_ratio)
    along_x = np.stack([xs, np.full_like(xs, height / 2)], axis=-1)
    along_y = np.stack([np.full_like(ys, width / 2), ys], axis=-1)
    keypoints = np.concatenate([along_x, along_y])[None].astype(np.float32)
    options = {"smoothing": smoothing, "split_ratio": split_ratio}
    if smoothing == "gaussian":
        options["normalize"] = False
    result = check(device, keypoints, input_size, sigma, **options)
    weights = result.weights.cpu().numpy()
    assert 0 < int((weights == 0).sum()) < weights.size


@pytest.mark.parametrize("label_smooth_weight", [0.0, 0.1, 0.25, 1.0])
@pytest.mark.parametrize("instances", [False, True])
def test_standard_smoothing(device, label_smooth_weight, instances):
    input_size = (256, 192)
    shape = (4, 3, 17) if instances else (4, 17)
    keypoints = _keypoints(7, shape, input_size)
    visibility = np.random.default_rng(2).choice(np.float32([0.0, 0.49, 1.0]), shape)
    result = check(device, keypoints, input_size, (4.9, 5.66), visibility,
                   smoothing="standard", label_smooth_weight=label_smooth_weight)
    drawn = (result.weights >= 0.5).cpu()  # 0.49: not drawn, weight kept
    if label_smooth_weight < 1.0:
        assert torch.equal(result.x_labels.amax(dim=-1).cpu() > 0, drawn)


def test_a_label_of_one_bin_with_label_smoothing(device):
    # W - 1 == 0: mmpose divides by zero for the other bins, but there are none.
    keypoints = np.array([[[0.2, 3.0]]], dtype=np.float32)
    result = check(device, keypoints, (8, 1), 1.0, split_ratio=1.0, smoothing="standard",
                   label_smooth_weight=0.2)
    assert result.x_labels.cpu().tolist() == [[[pytest.approx(0.8)]]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_keypoints_precision_is_kept(device, dtype):
    keypoints = _keypoints(3, (2, 40), (64, 48), dtype=dtype)
    check(device, keypoints, (64, 48), (2.0, 2.5), split_ratio=1.5, normalize=True)


def test_odd_input_sizes_round_the_label_length_half_to_even(device):
    # 191 * 1.5 = 286.5 -> 286 and 255 * 1.5 = 382.5 -> 382, as np.around does.
    keypoints = _keypoints(5, (2, 6), (255, 191))
    result = check(device, keypoints, (255, 191), 3.0, split_ratio=1.5)
    assert result.x_labels.shape[-1] == 286 and result.y_labels.shape[-1] == 382


def test_without_a_table_equals_the_table(monkeypatch, device):
    import heatmap_render.simcc as simcc

    keypoints = torch.from_numpy(_keypoints(9, (3, 2, 17), (256, 192))).to(device)
    tabled = render_simcc(keypoints, (256, 192), (4.9, 5.66))
    monkeypatch.setattr(simcc, "PLAN_MAX_ELEMENTS", 0)
    monkeypatch.setattr(simcc, "BLOCK_ELEMENTS", 7 * 512)  # 102 rows in 15 blocks, one short
    direct = render_simcc(keypoints, (256, 192), (4.9, 5.66))
    assert torch.equal(tabled.weights, direct.weights)
    if device.type == "cpu":
        assert torch.equal(tabled.x_labels, direct.x_labels)
        assert torch.equal(tabled.y_labels, direct.y_labels)
    else:  # the direct path evaluates exp on the device; tables are built on the CPU
        torch.testing.assert_close(tabled.x_labels, direct.x_labels, rtol=0, atol=2.5e-7)


# --- Never NaN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", ["gaussian", "standard"])
@pytest.mark.parametrize("far", [3.4e38, float(np.finfo(np.float32).max)])
def test_far_keypoints_are_empty_with_weight_zero(device, far, smoothing):
    dtype = np.float32
    values = [[far, 10.0], [-far, 10.0], [10.0, far], [10.0, -far], [far, -far], [10.0, 10.0]]
    keypoints = torch.tensor([values], dtype=torch.float64).to(
        torch.float64 if dtype == np.float64 else torch.float32).to(device)
    result = render_simcc(keypoints, (64, 48), (4.9, 5.66), smoothing=smoothing)
    for tensor in result:
        assert bool(torch.isfinite(tensor).all())
    assert result.weights.cpu().tolist() == [[0.0] * 5 + [1.0]]
    assert not bool(result.x_labels[0, :5].any()) and not bool(result.y_labels[0, :5].any())


def test_sigma_at_the_floor_is_finite_and_below_it_refused(device):
    keypoints = torch.tensor([[[5.0, 7.5]]], device=device)
    result = render_simcc(keypoints, (8, 8), SIGMA_MIN, normalize=True)
    assert bool(torch.isfinite(result.x_labels).all())
    assert bool(torch.isfinite(result.y_labels).all())
    peak = 1 / (SIGMA_MIN * np.sqrt(2 * np.pi))  # about 4e19: finite in float32
    assert float(result.x_labels[0, 0, 10]) == pytest.approx(peak)
    assert float(result.x_labels[0, 0].sum()) == pytest.approx(peak)  # one bin, the rest 0
    for sigma in (1e-300, SIGMA_MIN / 2, (1.0, 1e-30)):
        with pytest.raises(RenderArgumentError, match="^sigma: ") as caught:
            render_simcc(keypoints, (8, 8), sigma)
        assert caught.value.argument == "sigma"


# --- Arguments ----------------------------------------------------------------------------------

KEYPOINTS = np.zeros((2, 3, 2), dtype=np.float32)
BAD = {
    "keypoints-rank": ("keypoints", {"keypoints": np.zeros((3, 2))}),
    "keypoints-nan": ("keypoints", {"keypoints": np.full((2, 3, 2), np.nan)}),
    "input-size-0": ("input_size", {"input_size": (0, 8)}),
    "input-size-float": ("input_size", {"input_size": (8.5, 8)}),
    "sigma-0": ("sigma", {"sigma": 0.0}),
    "sigma-three": ("sigma", {"sigma": (1.0, 2.0, 3.0)}),
    "sigma-per-keypoint": ("sigma", {"sigma": np.ones(3)}),
    "sigma-inf": ("sigma", {"sigma": (1.0, np.inf)}),
    "sigma-bool": ("sigma", {"sigma": True}),
    "sigma-over-label": ("sigma", {"sigma": 40.0}),
    "split-ratio-0": ("split_ratio", {"split_ratio": 0.0}),
    "split-ratio-nan": ("split_ratio", {"split_ratio": float("nan")}),
    "split-ratio-tiny": ("split_ratio", {"split_ratio": 0.01}),
    "split-ratio-string": ("split_ratio", {"split_ratio": "2"}),
    "smoothing": ("smoothing", {"smoothing": "laplace"}),
    "label-smooth-with-gaussian": ("label_smooth_weight", {"label_smooth_weight": 0.1}),
    "label-smooth-over-1": (
        "label_smooth_weight", {"smoothing": "standard", "label_smooth_weight": 1.5}
    ),
    "label-smooth-negative": (
        "label_smooth_weight", {"smoothing": "standard", "label_smooth_weight": -0.1}
    ),
    "normalize": ("normalize", {"normalize": 1}),
    "visibility-shape": ("visibility", {"visibility": np.ones((2, 4))}),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_arguments_name_themselves(case):
    argument, overrides = BAD[case]
    kwargs = {"keypoints": KEYPOINTS, "input_size": (8, 8), "sigma": 2.0, **overrides}
    with pytest.raises(RenderArgumentError, match=f"^{argument}: ") as caught:
        render_simcc(**kwargs)
    assert caught.value.argument == argument


def test_checked_args_concatenate_and_slice_along_the_batch(device):
    parts = [
        check_simcc_args(torch.from_numpy(_keypoints(seed, (batch, 17), (256, 192))).to(device),
                         (256, 192), (4.9, 5.66))
        for seed, batch in ((1, 2), (2, 3))
    ]
    assert parts[0].coalescing_key == parts[1].coalescing_key
    assert parts[0].label_size == (512, 384)
    joined = concatenate_render_args(parts)
    whole = simcc_from_args(joined)
    assert whole.x_labels.shape == (5, 17, 384)
    first = simcc_from_args(parts[0])
    assert torch.equal(whole.x_labels[:2], first.x_labels)
    assert torch.equal(simcc_from_args(joined.take(slice(2, 5))).y_labels, whole.y_labels[2:])
    other = check_simcc_args(parts[0].keypoints[:, 0], (256, 192), (4.9, 5.0))
    assert other.coalescing_key != parts[0].coalescing_key


def test_numpy_booleans_and_integers_are_accepted(device):
    keypoints = torch.from_numpy(_keypoints(4, (2, 5), (32, 24))).to(device)
    plain = render_simcc(keypoints, (32, 24), 2.0, normalize=False)
    numpy_args = render_simcc(keypoints, (np.int64(32), np.int32(24)), np.float32(2.0),
                              normalize=np.False_, split_ratio=np.float64(2.0))
    for a, b in zip(plain, numpy_args):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("input_size", "sigma"), [
    ((256, 192), (5.66, 4.9)),  # sigma reversed the way sizes are reversed here
    ((192, 256), (4.9, 5.66)),  # input_size written in mmpose's (W, H) order
])
def test_a_pair_that_looks_reversed_is_refused_and_named_axes_pass(device, input_size, sigma):
    keypoints = torch.tensor([[[10.0, 20.0]]], device=device)
    with pytest.raises(RenderArgumentError, match="^sigma: .*looks reversed") as caught:
        render_simcc(keypoints, input_size, sigma)
    assert caught.value.argument == "sigma"
    named = render_simcc(keypoints, input_size, {"x": sigma[0], "y": sigma[1]})
    assert named.x_labels.shape[-1] == round(input_size[1] * 2)
