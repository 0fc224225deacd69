"""SimCC labels through the real server: equal to the renderer's ``render_simcc`` bit for bit for
RTMPose's configurations, in every wire dtype and codec that applies, from both clients."""

from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest
import torch
from render.simcc_reference import simcc_reference

from heatmap_client import AsyncHeatmapClient, HeatmapClient, SimccOptions
from heatmap_render import render_simcc

# RTMPose's configurations as (H_in, W_in) and (sigma_x, sigma_y); mmpose writes (W, H).
RTMPOSE_256x192 = ((256, 192), (4.9, 5.66))
RTMPOSE_384x288 = ((384, 288), (6.93, 7.99))
# (smoothing, label_smooth_weight, normalize)
LABELS = [
    ("gaussian", 0.0, False),
    ("gaussian", 0.0, True),
    ("standard", 0.0, False),
    ("standard", 0.1, False),
]


def _keypoints(input_size, batch=6, keypoints=17, instances=None, seed=0):
    """Keypoints mostly on the image, some past every border, some on half-bin centres (where
    np.around rounds half to even), with COCO's flags 0/1/2 clipped to 1 as mmpose does."""
    rng = np.random.default_rng(seed)
    height, width = input_size
    lead = (batch, keypoints) if instances is None else (batch, instances, keypoints)
    x = rng.uniform(-30, width + 30, lead)
    y = rng.uniform(-30, height + 30, lead)
    halves = rng.random(lead) < 0.2
    x = np.where(halves, np.floor(x) + 0.25, x)  # x * 2 = n + 0.5: a tie for the split ratio 2
    points = np.stack([x, y], axis=-1).astype(np.float32)
    flags = rng.choice(np.float32([0, 1, 2]), lead, p=[0.2, 0.3, 0.5])
    return points, np.minimum(flags, 1)


def _local(points, input_size, sigma, **options):
    labels = render_simcc(points, input_size, sigma, **options)
    return labels.x_labels.numpy(), labels.y_labels.numpy(), labels.weights.numpy()


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=60) as client:
        yield client


@pytest.mark.parametrize("config", [RTMPOSE_256x192, RTMPOSE_384x288], ids=["256x192", "384x288"])
@pytest.mark.parametrize("smoothing, weight, normalize", LABELS)
@pytest.mark.parametrize("instances", [None, 3])
def test_labels_equal_the_renderer_bit_for_bit(client, config, smoothing, weight, normalize,
                                               instances):
    input_size, sigma = config
    points, visibility = _keypoints(input_size, instances=instances)
    options = dict(smoothing=smoothing, label_smooth_weight=weight, normalize=normalize,
                   visibility=visibility)
    result = client.render_simcc(points, input_size, sigma, **options)
    x_labels, y_labels, weights = _local(points, input_size, sigma, **options)
    lead = points.shape[:-1]
    assert result.x_labels.shape == (*lead, input_size[1] * 2)
    assert result.y_labels.shape == (*lead, input_size[0] * 2)
    np.testing.assert_array_equal(result.x_labels, x_labels)
    np.testing.assert_array_equal(result.y_labels, y_labels)
    np.testing.assert_array_equal(result.weights, weights)
    assert result.dtype == "float32" and result.wire_bytes > 0
    assert 0 < np.count_nonzero(weights) < weights.size  # some drawn, some off the labels


@pytest.mark.parametrize("smoothing, weight, normalize", LABELS)
def test_labels_match_mmpose_within_two_ulps(client, smoothing, weight, normalize):
    input_size, sigma = RTMPOSE_256x192
    points, visibility = _keypoints(input_size, batch=4)
    result = client.render_simcc(points, input_size, sigma, smoothing=smoothing,
                                 label_smooth_weight=weight, normalize=normalize,
                                 visibility=visibility)
    x_labels, y_labels, weights = simcc_reference(
        points, input_size, sigma, smoothing=smoothing, label_smooth_weight=weight,
        normalize=normalize, visibility=visibility,
    )
    for actual, expected in ((result.x_labels, x_labels), (result.y_labels, y_labels)):
        ulps = np.abs(actual - expected) / np.spacing(np.abs(expected).astype(np.float32))
        assert ulps.max() <= 2
    np.testing.assert_array_equal(result.weights, weights)


def _as_wire(values: np.ndarray, dtype: str) -> np.ndarray:
    """What the wire dtype holds for float32 ``values``, back as float32 (torch's conversions)."""
    tensor = torch.from_numpy(values)
    if dtype in ("float16", "bfloat16"):
        return tensor.to(getattr(torch, dtype)).float().numpy()
    scale = {"uint16": 65535, "uint8": 255}[dtype]
    return (torch.round(tensor * scale) / np.float32(scale)).numpy()


@pytest.mark.parametrize("codec", ["zstd", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint16", "uint8"])
def test_every_dtype_and_codec(client, dtype, codec):
    input_size, sigma = RTMPOSE_256x192
    points, visibility = _keypoints(input_size, batch=3)
    result = client.render_simcc(points, input_size, sigma, normalize=False,
                                 visibility=visibility, dtype=dtype, codec=codec)
    x_labels, y_labels, weights = _local(points, input_size, sigma, normalize=False,
                                         visibility=visibility)
    assert result.dtype == dtype and result.x_labels.dtype == np.float32
    if dtype == "float32":
        np.testing.assert_array_equal(result.x_labels, x_labels)
        np.testing.assert_array_equal(result.y_labels, y_labels)
    else:
        np.testing.assert_array_equal(result.x_labels, _as_wire(x_labels, dtype))
        np.testing.assert_array_equal(result.y_labels, _as_wire(y_labels, dtype))
    np.testing.assert_array_equal(result.weights, weights)


def test_normalised_labels_in_fixed_point_when_they_fit(client):
    """sigma >= 1 / sqrt(2 pi) keeps a normalised peak at or below 1, so uint16 can hold it."""
    input_size, sigma = RTMPOSE_256x192
    points, _ = _keypoints(input_size, batch=2)
    result = client.render_simcc(points, input_size, sigma, dtype="uint16")
    x_labels, _, _ = _local(points, input_size, sigma)
    np.testing.assert_array_equal(result.x_labels, _as_wire(x_labels, "uint16"))


def test_async_client_gives_the_same_labels(live_server):
    input_size, sigma = RTMPOSE_384x288
    points, visibility = _keypoints(input_size, batch=2, instances=2)

    async def main():
        async with AsyncHeatmapClient(live_server.target, timeout=60) as client:
            return await client.render_simcc(points, input_size, sigma, visibility=visibility,
                                             normalize=False)

    result = asyncio.run(main())
    x_labels, y_labels, weights = _local(points, input_size, sigma, visibility=visibility,
                                         normalize=False)
    np.testing.assert_array_equal(result.x_labels, x_labels)
    np.testing.assert_array_equal(result.y_labels, y_labels)
    np.testing.assert_array_equal(result.weights, weights)


@pytest.mark.parametrize("split_ratio", [1.5, 2.0, 3.0])
def test_split_ratios_and_one_sigma_for_both_axes(client, split_ratio):
    input_size = (255, 191)  # odd sides: round(W_in * 1.5) rounds half to even
    points, visibility = _keypoints(input_size, batch=2)
    result = client.render_simcc(points, input_size, 3.0, split_ratio=split_ratio,
                                 visibility=visibility)
    x_labels, y_labels, weights = _local(points, input_size, 3.0, split_ratio=split_ratio,
                                         visibility=visibility)
    assert result.x_labels.shape[-1] == round(191 * split_ratio)
    np.testing.assert_array_equal(result.x_labels, x_labels)
    np.testing.assert_array_equal(result.y_labels, y_labels)
    np.testing.assert_array_equal(result.weights, weights)


def test_an_empty_batch_and_no_keypoints(client):
    for shape in ((0, 17, 2), (2, 0, 2), (0, 3, 17, 2)):
        result = client.render_simcc(np.zeros(shape, np.float32), (256, 192), (4.9, 5.66))
        assert result.x_labels.shape == (*shape[:-1], 384)
        assert result.y_labels.shape == (*shape[:-1], 512)
        assert result.weights.shape == shape[:-1]


def test_both_clients_share_one_signature_with_the_renderers_arguments():
    sync = inspect.signature(HeatmapClient.render_simcc)
    assert sync == inspect.signature(AsyncHeatmapClient.render_simcc)
    renderer = inspect.signature(render_simcc).parameters
    for name, parameter in renderer.items():
        assert sync.parameters[name].kind == parameter.kind, name
        assert sync.parameters[name].default == parameter.default, name


def test_simcc_options_are_render_simccs_keyword_arguments(client):
    """What a collate holds once (checked at construction) and passes on every batch."""
    input_size, sigma = RTMPOSE_256x192
    options = SimccOptions(input_size, sigma, normalize=False, dtype="float16")
    assert set(options.names()) <= set(inspect.signature(HeatmapClient.render_simcc).parameters)
    points, visibility = _keypoints(input_size, batch=2)
    result = client.render_simcc(points, visibility=visibility, timeout=30, **options.as_kwargs())
    x_labels, _, weights = _local(points, input_size, sigma, normalize=False, visibility=visibility)
    np.testing.assert_array_equal(result.x_labels, _as_wire(x_labels, "float16"))
    x, y, w = result.to_torch()
    assert x.dtype == torch.float32 and tuple(y.shape) == (2, 17, 512)
    np.testing.assert_array_equal(w.numpy(), weights)


def test_rtmposes_batch_of_256_in_parallel_frames(client):
    """15.6 MB of labels: the test server's two encoder threads compress them as several frames."""
    input_size, sigma = RTMPOSE_256x192
    points, visibility = _keypoints(input_size, batch=256)
    result = client.render_simcc(points, input_size, sigma, normalize=False, visibility=visibility)
    x_labels, y_labels, weights = _local(points, input_size, sigma, normalize=False,
                                         visibility=visibility)
    np.testing.assert_array_equal(result.x_labels, x_labels)
    np.testing.assert_array_equal(result.y_labels, y_labels)
    np.testing.assert_array_equal(result.weights, weights)
