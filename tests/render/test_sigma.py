"""Sigma per keypoint, instance and sample: broadcasting, mmpose's per-instance heatmaps, tables."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from heatmap_render import (
    RenderArgumentError,
    check_render_args,
    clear_table_cache,
    concatenate_render_args,
    render_heatmaps,
    render_profiles,
    table_cache_info,
)

from .heatmap_reference import mmpose_gaussian_heatmaps, random_keypoints

METHODS = ("seed", "msra", "udp", "dark")
SIZE = (32, 24)  # (H, W)
B, N, K = 3, 4, 5
FEW = np.array([1.1, 1.7, 2.0, 3.0])  # a handful of distinct values: the table path
# Shapes against (B, N, K) keypoints and against (B, K) ones, by numpy's broadcasting rules.
SHAPES_4D = {
    "per-instance (B, N, 1)": (B, N, 1),
    "per-sample (B, 1, 1)": (B, 1, 1),
    "per-element (B, N, K)": (B, N, K),
    "instance-only (N, 1)": (N, 1),
}
SHAPES_3D = {"per-sample (B, 1)": (B, 1), "per-element (B, K)": (B, K)}


def _sigmas(shape, values, seed):
    rng = np.random.default_rng(seed)
    if values == "few":
        return rng.choice(FEW, shape)
    return rng.uniform(1.0, 4.0, shape)  # every value distinct: the direct path


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


@pytest.mark.parametrize("values", ["few", "many"])
@pytest.mark.parametrize("shape", SHAPES_4D)
@pytest.mark.parametrize("method", METHODS)
def test_instances_with_their_own_sigma_match_reference(check_render, method, shape, values):
    seed = _seed(method, shape, values)
    keypoints = random_keypoints(seed, (B, N, K), SIZE, sigma=4.0)
    visibility = np.random.default_rng(seed).choice(np.float32([0.0, 0.4, 1.0, 1.0]), (B, N, K))
    sigma = _sigmas(SHAPES_4D[shape], values, seed)
    check_render(keypoints, SIZE, sigma, method=method, visibility=visibility)


@pytest.mark.parametrize("values", ["few", "many"])
@pytest.mark.parametrize("shape", SHAPES_3D)
@pytest.mark.parametrize("method", METHODS)
def test_samples_with_their_own_sigma_match_reference(check_render, method, shape, values):
    seed = _seed(method, shape, values, 3)
    keypoints = random_keypoints(seed, (B, K), SIZE, sigma=4.0)
    check_render(keypoints, SIZE, _sigmas(SHAPES_3D[shape], values, seed), method=method)


@pytest.mark.parametrize("coords", ["pixel", "normalized"])
@pytest.mark.parametrize("method", METHODS)
def test_per_instance_sigma_in_other_coordinate_spaces(check_render, method, coords):
    input_size = (128, 96) if coords == "pixel" else None
    seed = _seed(method, coords)
    keypoints = random_keypoints(
        seed, (B, N, K), SIZE, coords=coords, method=method, input_size=input_size, sigma=4.0
    )
    sigma = _sigmas((B, N, 1), "many", seed)
    check_render(keypoints, SIZE, sigma, method=method, coords=coords, input_size=input_size)


@pytest.mark.parametrize("sigma_type", ["tuple", "numpy"])
def test_msra_equals_mmpose_generate_gaussian_heatmaps_per_instance(device, sigma_type):
    """mmpose's own per-instance loop (``sigma`` one value per instance), sample by sample."""
    rng = np.random.default_rng(17)
    keypoints = random_keypoints(17, (B, N, K), SIZE, sigma=4.0)
    visibility = rng.choice(np.float32([0.0, 1.0, 1.0, 0.7]), (B, N, K))
    per_instance = rng.choice([1.5, 2.0, 2.5, 3.3], (B, N))
    expected, expected_weights = [], []
    for b in range(B):
        sigma = tuple(per_instance[b].tolist()) if sigma_type == "tuple" else per_instance[b]
        heatmaps, weights = mmpose_gaussian_heatmaps(
            (SIZE[1], SIZE[0]), keypoints[b], visibility[b], sigma
        )
        expected.append(heatmaps)
        expected_weights.append(weights)
    result = render_heatmaps(
        torch.from_numpy(keypoints).to(device), SIZE, torch.from_numpy(per_instance[..., None]),
        method="msra", visibility=torch.from_numpy(visibility).to(device),
    )
    torch.testing.assert_close(
        result.heatmaps.cpu(), torch.from_numpy(np.stack(expected)), rtol=0, atol=2.5e-7
    )
    np.testing.assert_array_equal(result.weights.cpu().numpy(), np.stack(expected_weights))
    np.testing.assert_array_equal(result.heatmaps.cpu().numpy() == 0, np.stack(expected) == 0)


@pytest.mark.parametrize("method", METHODS)
def test_profiles_with_per_instance_sigma_rebuild_the_dense_render(device, method):
    keypoints = torch.from_numpy(random_keypoints(4, (B, N, K), SIZE)).to(device)
    sigma = torch.from_numpy(_sigmas((B, N, 1), "many", 4)).to(device)
    profiles = render_profiles(keypoints, SIZE, sigma, method=method)
    dense = render_heatmaps(keypoints, SIZE, sigma, method=method)
    rebuilt = (profiles.rows[..., :, None] * profiles.cols[..., None, :]).amax(dim=1)
    assert torch.equal(rebuilt, dense.heatmaps)
    assert torch.equal(profiles.weights, dense.weights)


# --- The kernel-table cache with per-element sigmas ---------------------------------------------


@pytest.mark.parametrize("method", ["seed", "msra", "udp"])
def test_few_distinct_values_are_tabled_and_many_are_not(device, method):
    keypoints = torch.from_numpy(random_keypoints(6, (B, N, K), SIZE)).to(device)
    clear_table_cache()
    render_heatmaps(keypoints, SIZE, _sigmas((B, N, 1), "few", 6), method=method)
    assert table_cache_info()["entries"] == 1
    render_heatmaps(keypoints, SIZE, _sigmas((B, N, K), "many", 6), method=method)
    assert table_cache_info()["entries"] == 1  # B * N * K distinct values: evaluated directly


@pytest.mark.parametrize("method", ["seed", "msra", "udp"])
def test_tabled_per_element_sigma_equals_direct_evaluation(monkeypatch, device, method):
    import heatmap_render.profiles as profiles

    keypoints = torch.from_numpy(random_keypoints(8, (B, N, K), SIZE)).to(device)
    visibility = (torch.arange(B * N * K, device=device).reshape(B, N, K) % 3 != 0).float()
    sigma = _sigmas((B, N, K), "few", 8)
    tabled = render_heatmaps(keypoints, SIZE, sigma, method=method, visibility=visibility)
    monkeypatch.setattr(profiles, "TABLE_MAX_SIGMAS", 0)
    direct = render_heatmaps(keypoints, SIZE, sigma, method=method, visibility=visibility)
    assert torch.equal(direct.weights, tabled.weights)
    if device.type == "cpu":
        assert torch.equal(direct.heatmaps, tabled.heatmaps)
    else:  # the direct path evaluates exp on the device; tables are built on the CPU
        torch.testing.assert_close(direct.heatmaps, tabled.heatmaps, rtol=0, atol=2.5e-7)


# --- Checked arguments: shared or per sample, and how batches join ------------------------------


def _args(device, sigma, shape=(B, N, K), seed=1):
    keypoints = torch.from_numpy(random_keypoints(seed, shape, SIZE)).to(device)
    return check_render_args(keypoints, SIZE, sigma, method="msra", coords="heatmap",
                             input_size=None, visibility=None, dtype=torch.float32)


@pytest.mark.parametrize(
    ("sigma", "shared"),
    [
        (2.0, (2.0,)),
        ([1.0, 2.0, 3.0, 4.0, 5.0], (1.0, 2.0, 3.0, 4.0, 5.0)),
        (np.full((B, N, 1), 2.5), (2.5,)),
        (np.tile([1.0, 2.0, 3.0, 4.0, 5.0], (B, N, 1)), (1.0, 2.0, 3.0, 4.0, 5.0)),
        (np.ones((1, 1, K)) * 3.0, (3.0,)),
    ],
    ids=["scalar", "per-keypoint", "uniform-per-instance", "uniform-per-element", "(1, 1, K)"],
)
def test_sigma_that_does_not_vary_across_samples_stays_shared(device, sigma, shared):
    args = _args(device, sigma)
    assert args.sample_sigmas is None and args.sigmas == shared


def test_per_instance_sigma_is_a_per_sample_tensor(device):
    sigma = np.arange(1, B * N + 1, dtype=np.float64).reshape(B, N, 1) / 4
    args = _args(device, sigma)
    assert args.sigmas == ()
    assert args.sample_sigmas.shape == (B, N, K) and args.sample_sigmas.dtype == torch.float64
    assert args.sample_sigmas.device == device
    expected = torch.from_numpy(np.broadcast_to(sigma, (B, N, K)).copy())
    assert torch.equal(args.sample_sigmas.cpu(), expected)
    hash(args.coalescing_key)
    assert args.coalescing_key != _args(device, 2.0).coalescing_key


@pytest.mark.parametrize("per_sample", [False, True])
def test_concatenated_and_sliced_args_render_as_the_parts(device, per_sample):
    def sigma(seed, batch):
        return _sigmas((batch, N, 1), "many", seed) if per_sample else 2.0

    parts = [_args(device, sigma(seed, batch), (batch, N, K), seed)
             for seed, batch in ((1, 2), (2, 3), (3, 1))]
    keys = {part.coalescing_key for part in parts}
    assert len(keys) == 1
    joined = concatenate_render_args(parts)
    assert joined.batch == 6
    from heatmap_render import heatmaps_from_args

    whole = heatmaps_from_args(joined).heatmaps
    start = 0
    for part in parts:
        rows = slice(start, start + part.batch)
        start += part.batch
        assert torch.equal(whole[rows], heatmaps_from_args(part).heatmaps)
        assert torch.equal(heatmaps_from_args(joined.take(rows)).heatmaps, whole[rows])


def test_parts_with_different_keys_do_not_concatenate(device):
    with pytest.raises(RenderArgumentError, match="^args: ") as caught:
        concatenate_render_args([_args(device, 2.0), _args(device, 3.0)])
    assert caught.value.argument == "args"


BAD_SHAPES = {
    "(B, N, 2)": (B, N, 2),
    "(B,) against (B, N, K)": (B,),
    "(2, B, N, K)": (2, B, N, K),
    "(B, N, K, 1)": (B, N, K, 1),
    "(N + 1, 1)": (N + 1, 1),
}


@pytest.mark.parametrize("function", [render_heatmaps, render_profiles])
@pytest.mark.parametrize("shape", BAD_SHAPES)
def test_sigma_that_does_not_broadcast_is_refused(device, function, shape):
    keypoints = torch.from_numpy(random_keypoints(2, (B, N, K), SIZE)).to(device)
    with pytest.raises(RenderArgumentError, match="^sigma: .*broadcasts") as caught:
        function(keypoints, SIZE, np.ones(BAD_SHAPES[shape]))
    assert caught.value.argument == "sigma"


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, 1e-300, 40.0])
def test_one_bad_value_among_per_instance_sigmas_is_refused(device, bad):
    keypoints = torch.from_numpy(random_keypoints(2, (B, N, K), SIZE)).to(device)
    sigma = np.full((B, N, 1), 2.0)
    sigma[1, 2, 0] = bad
    with pytest.raises(RenderArgumentError, match="^sigma: ") as caught:
        render_heatmaps(keypoints, SIZE, sigma)
    assert caught.value.argument == "sigma"


@pytest.mark.parametrize("shape", [(40,), (2, 40)])
def test_a_long_per_keypoint_sigma_is_keyed_by_its_distinct_values(device, monkeypatch, shape):
    """Past SHARED_MAX_KEYPOINTS, one sigma per keypoint is per element: its plan is keyed by its
    two distinct values, not by a key as long as the request, and renders the same."""
    import heatmap_render.sigma as sigma_module

    keypoints = torch.from_numpy(random_keypoints(5, (2, 40), SIZE)).to(device)
    values = np.where(np.arange(40) % 2 == 0, 1.5, 2.5).astype(np.float32)
    sigma = torch.from_numpy(np.broadcast_to(values, shape).copy()).to(device)
    shared = render_heatmaps(keypoints, SIZE, sigma)
    monkeypatch.setattr(sigma_module, "SHARED_MAX_KEYPOINTS", 8)
    args = check_render_args(keypoints, SIZE, sigma, method="msra", coords="heatmap",
                             input_size=None, visibility=None, dtype=torch.float32)
    assert args.sigmas == () and args.sample_sigmas is not None
    clear_table_cache()
    per_element = render_heatmaps(keypoints, SIZE, sigma)
    assert torch.equal(per_element.heatmaps, shared.heatmaps)
    assert torch.equal(per_element.weights, shared.weights)
    assert table_cache_info()["entries"] == 1
    assert table_cache_info()["bytes"] < 64 * 1024  # two sigmas' rows, no per-keypoint key
