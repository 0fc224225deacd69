"""Render over the network equals the local renderer, for every method, codec and dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_client import ArgumentError, HeatmapClient
from heatmap_render import render_heatmaps

METHODS = ["seed", "msra", "udp", "dark"]
CODECS = ["zstd", "none", "separable", "profile_table"]
FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FIXED_POINT = {"uint16": 65535, "uint8": 255}


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=60) as client:
        yield client


def _keypoints(batch: int, keypoints: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # ~10% of the keypoints fall off the heatmap on some side.
    low, high = np.array([-0.1 * width, -0.1 * height]), np.array([1.1 * width, 1.1 * height])
    return rng.uniform(low, high, size=(batch, keypoints, 2)).astype(np.float32)


@pytest.mark.parametrize("dtype", [*FLOAT_DTYPES, *FIXED_POINT])
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("method", METHODS)
def test_remote_equals_local(client, method, codec, dtype):
    keypoints = _keypoints(4, 17, 32, 24)
    visibility = (np.arange(4 * 17).reshape(4, 17) % 7 != 0).astype(np.float32)
    result = client.render(
        keypoints, size=(32, 24), sigma=2.0, method=method, visibility=visibility,
        dtype=dtype, codec=codec,
    )
    local = render_heatmaps(
        keypoints, (32, 24), 2.0, method=method, visibility=visibility,
        dtype=FLOAT_DTYPES.get(dtype, torch.float32),
    )
    assert result.heatmaps.dtype == np.float32
    assert result.heatmaps.shape == (4, 17, 32, 24)
    np.testing.assert_array_equal(result.weights, local.weights.numpy())
    expected = local.heatmaps.float().numpy()
    if dtype in FIXED_POINT:
        # round(v * scale) / scale: at most half a step from the float32 value.
        scale = FIXED_POINT[dtype]
        np.testing.assert_allclose(result.heatmaps, expected, rtol=0, atol=0.5 / scale + 1e-7)
        assert np.array_equal(np.rint(result.heatmaps * scale), np.rint(expected * scale))
    else:
        # Lossless codecs and exact dtype conversion: bit-identical to the local render.
        np.testing.assert_array_equal(result.heatmaps, expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "uint16", "uint8"])
def test_keep_dtype_returns_wire_storage(client, dtype):
    keypoints = _keypoints(2, 5, 16, 16)
    result = client.render(keypoints, size=(16, 16), sigma=1.5, dtype=dtype, keep_dtype=True)
    as_float = client.render(keypoints, size=(16, 16), sigma=1.5, dtype=dtype)
    heatmaps, weights = result.to_torch()
    expected_torch = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                      "uint16": torch.uint16, "uint8": torch.uint8}[dtype]
    assert heatmaps.dtype == expected_torch
    assert weights.dtype == torch.float32
    if dtype in FIXED_POINT:
        np.testing.assert_array_equal(
            heatmaps.numpy() / np.float32(FIXED_POINT[dtype]), as_float.heatmaps)
    else:
        np.testing.assert_array_equal(heatmaps.float().numpy(), as_float.heatmaps)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_large_tensor_arrives_intact(client, codec):
    # B=1, K=68, 256x256 float32: 17.8 MB, many 1 MiB chunks.
    keypoints = np.random.default_rng(1).uniform(-1, 1, size=(1, 68, 2)).astype(np.float32)
    result = client.render(keypoints, size=(256, 256), sigma=10.0, method="seed",
                           coords="normalized", codec=codec)
    local = render_heatmaps(keypoints, (256, 256), 10.0, method="seed", coords="normalized")
    assert result.heatmaps.nbytes == 68 * 256 * 256 * 4
    np.testing.assert_array_equal(result.heatmaps, local.heatmaps.numpy())


def test_instances_per_keypoint_sigma_and_pixel_coords(client):
    rng = np.random.default_rng(2)
    keypoints = rng.uniform(0, 256, size=(3, 2, 17, 2)).astype(np.float32)
    visibility = rng.uniform(0, 1, size=(3, 2, 17)).astype(np.float32)
    sigmas = np.linspace(1.5, 3.0, 17)
    for codec in CODECS:
        result = client.render(keypoints, size=(64, 48), sigma=sigmas, method="udp", coords="pixel",
                               input_size=(256, 192), visibility=visibility, codec=codec)
        local = render_heatmaps(keypoints, (64, 48), sigmas, method="udp", coords="pixel",
                                input_size=(256, 192), visibility=visibility)
        np.testing.assert_array_equal(result.heatmaps, local.heatmaps.numpy())
        np.testing.assert_array_equal(result.weights, local.weights.numpy())
        assert result.weights.shape == (3, 2, 17)


def test_out_receives_the_heatmaps(client):
    keypoints = _keypoints(2, 4, 8, 8)
    out = np.full((2, 4, 8, 8), 7.0, dtype=np.float32)
    result = client.render(keypoints, size=(8, 8), sigma=1.0, out=out)
    assert result.heatmaps is out
    np.testing.assert_array_equal(out, render_heatmaps(keypoints, (8, 8), 1.0).heatmaps.numpy())


def test_timings_are_reported(client):
    result = client.render(_keypoints(1, 3, 8, 8), size=(8, 8), sigma=1.0)
    timings = result.timings
    assert timings.total_us >= timings.render_us > 0
    assert timings.coalesced_requests >= 1


def test_empty_batch_returns_an_empty_tensor(client):
    result = client.render(np.zeros((0, 17, 2), np.float32), size=(64, 48), sigma=2.0)
    assert result.heatmaps.shape == (0, 17, 64, 48)
    assert result.weights.shape == (0, 17)


def test_render_many_keeps_order_over_varied_shapes(client):
    requests = [
        dict(keypoints=_keypoints(1 + i % 5, 3 + i % 4, 16 + i, 12 + 2 * i, seed=i),
             size=(16 + i, 12 + 2 * i), sigma=1.0 + 0.25 * (i % 3),
             codec=CODECS[i % 3])
        for i in range(24)
    ]
    results = list(client.render_many(requests, window=4))
    assert len(results) == len(requests)
    for request, result in zip(requests, results):
        local = render_heatmaps(request["keypoints"], request["size"], request["sigma"])
        np.testing.assert_array_equal(result.heatmaps, local.heatmaps.numpy())


@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
def test_the_default_codec_is_the_cheaper_exact_form_for_the_method(live_server, method):
    points = np.random.default_rng(7).uniform(-4, 68, size=(8, 17, 2)).astype(np.float32)
    options = dict(size=(64, 48), sigma=2.0, method=method)
    with HeatmapClient(live_server.target, timeout=30) as client:
        default = client.render(points, **options)
        dense = client.render(points, codec="zstd", **options)
        profiles = client.render(points, codec="separable", **options)
    np.testing.assert_array_equal(default.heatmaps, dense.heatmaps)
    np.testing.assert_array_equal(default.heatmaps, profiles.heatmaps)
    expected = profiles if method in ("udp", "dark") else dense
    assert default.wire_bytes == expected.wire_bytes


def test_render_many_items_may_be_profiles_calls(live_server):
    """``"profiles": True`` makes an item a render_profiles call, in the stream's order among
    dense ones, equal to render_profiles itself; the dense-only options are refused there."""
    keypoints = np.random.default_rng(7).uniform(0, 30, (3, 17, 2)).astype(np.float32)
    items = [dict(keypoints=keypoints, size=(32, 24), sigma=2.0, method=method, profiles=True)
             for method in ("msra", "udp", "dark")]
    items.insert(1, dict(keypoints=keypoints, size=(32, 24), sigma=2.0))
    with HeatmapClient(live_server.target, timeout=30) as client:
        results = list(client.render_many(items))
        for item, result in zip(items, results):
            if item.get("profiles"):
                alone = client.render_profiles(keypoints, size=(32, 24), sigma=2.0,
                                               method=item["method"])
                np.testing.assert_array_equal(result.dense(), alone.dense())
            else:
                assert result.heatmaps.shape == (3, 17, 32, 24)
        with pytest.raises(ArgumentError) as caught:
            list(client.render_many([{**items[0], "keep_dtype": True}]))
    assert caught.value.argument == "keep_dtype"
