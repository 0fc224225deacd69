"""Per-batch sigma arrays (per instance, per sample, per element) through the real server: equal to
the local renderer for every method, dense and as profiles, and refused by name when wrong."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import ArgumentError, HeatmapClient, HeatmapError, RenderOptions
from heatmap_client.requests import build_request
from heatmap_client.wire import double_tensor_from_array
from heatmap_render import render_heatmaps, render_profiles

SIZE = (32, 24)
BATCH, INSTANCES, KEYPOINTS = 3, 4, 5


def _keypoints(instances: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lead = (BATCH, INSTANCES, KEYPOINTS) if instances else (BATCH, KEYPOINTS)
    x = rng.uniform(-4, SIZE[1] + 4, lead)
    y = rng.uniform(-4, SIZE[0] + 4, lead)
    return np.stack([x, y], axis=-1).astype(np.float32)


def _sigma(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Box-like sigmas: many distinct float64 values (not float32-representable)."""
    return np.random.default_rng(seed).uniform(0.7, 3.5, shape)


SHAPES = [
    pytest.param(True, (BATCH, INSTANCES, 1), id="per-instance"),
    pytest.param(True, (BATCH, INSTANCES, KEYPOINTS), id="per-element"),
    pytest.param(True, (BATCH, 1, 1), id="per-sample"),
    pytest.param(True, (1, INSTANCES, KEYPOINTS), id="one-for-all-samples"),
    pytest.param(False, (BATCH, 1), id="per-sample-no-instances"),
    pytest.param(False, (BATCH, KEYPOINTS), id="per-element-no-instances"),
]


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=60) as client:
        yield client


@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
@pytest.mark.parametrize("instances, shape", SHAPES)
def test_dense_equals_the_local_renderer(client, method, instances, shape):
    points, sigma = _keypoints(instances), _sigma(shape)
    visibility = np.random.default_rng(2).choice(np.float32([0, 1]), points.shape[:-1],
                                                 p=[0.2, 0.8])
    result = client.render(points, size=SIZE, sigma=sigma, method=method, visibility=visibility)
    local = render_heatmaps(points, SIZE, sigma, method=method, visibility=visibility)
    np.testing.assert_array_equal(result.heatmaps, local.heatmaps.numpy())
    np.testing.assert_array_equal(result.weights, local.weights.numpy())
    assert result.heatmaps.any()


@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
@pytest.mark.parametrize("instances, shape", SHAPES[:2] + SHAPES[-1:])
def test_profiles_equal_the_local_renderer(client, method, instances, shape):
    points, sigma = _keypoints(instances), _sigma(shape)
    result = client.render_profiles(points, size=SIZE, sigma=sigma, method=method)
    local = render_profiles(points, SIZE, sigma, method=method)
    np.testing.assert_array_equal(result.rows, local.rows.numpy())
    np.testing.assert_array_equal(result.cols, local.cols.numpy())
    np.testing.assert_array_equal(result.weights, local.weights.numpy())


@pytest.mark.parametrize("method", ["msra", "udp"])
def test_pixel_coordinates_and_a_wire_dtype(client, method):
    points = _keypoints(True) * 4
    sigma = _sigma((BATCH, INSTANCES, 1))
    options = dict(size=SIZE, sigma=sigma, method=method, coords="pixel", input_size=(128, 96))
    result = client.render(points, dtype="float16", codec="none", **options)
    local = render_heatmaps(points, dtype="float16", **options)
    np.testing.assert_array_equal(result.heatmaps, local.heatmaps.float().numpy())


def test_a_uniform_array_equals_the_scalar(client):
    points = _keypoints(True)
    by_array = client.render(points, size=SIZE, sigma=np.full((BATCH, INSTANCES, 1), 2.5))
    by_scalar = client.render(points, size=SIZE, sigma=2.5)
    np.testing.assert_array_equal(by_array.heatmaps, by_scalar.heatmaps)


def test_render_many_takes_a_sigma_array_per_batch(client):
    batches = [(_keypoints(True, seed), _sigma((BATCH, INSTANCES, 1), seed)) for seed in range(3)]
    items = [dict(keypoints=points, size=SIZE, sigma=sigma) for points, sigma in batches]
    for result, (points, sigma) in zip(client.render_many(items, window=2), batches):
        expected = render_heatmaps(points, SIZE, sigma).heatmaps.numpy()
        np.testing.assert_array_equal(result.heatmaps, expected)


def test_a_sigma_that_does_not_broadcast_is_named(client):
    with pytest.raises(HeatmapError) as caught:
        client.render(_keypoints(True), size=SIZE, sigma=np.ones((BATCH, 2, 1)))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.argument == "sigma" and caught.value.message.startswith("sigma: ")
    assert client.render(_keypoints(True), size=SIZE, sigma=2.0).heatmaps.any()  # still serving


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_the_client_refuses_a_sigma_array_that_is_not_positive(bad):
    sigma = _sigma((BATCH, INSTANCES, 1))
    sigma[1, 2, 0] = bad
    with HeatmapClient("127.0.0.1:9") as client:  # nothing listens: a sent request would fail
        with pytest.raises(ArgumentError) as caught:
            client.render(_keypoints(True), size=SIZE, sigma=sigma)
    assert caught.value.argument == "sigma"


def test_the_server_names_sigma_map(live_server):
    points = _keypoints(True)
    bad_value = build_request(points, RenderOptions(size=SIZE, sigma=None),
                              sigma_map=np.full((BATCH, 1, 1), 2.0))
    bad_value.sigma_map.CopyFrom(double_tensor_from_array(np.full((BATCH, 1, 1), -2.0), "sigma"))
    both = build_request(points, RenderOptions(size=SIZE, sigma=None),
                         sigma_map=np.full((BATCH, 1, 1), 2.0))
    both.sigma = 2.0
    torn = build_request(points, RenderOptions(size=SIZE, sigma=None),
                         sigma_map=np.full((BATCH, 1, 1), 2.0))
    torn.sigma_map.data = torn.sigma_map.data[:-8]
    with grpc.insecure_channel(live_server.target) as channel:
        stub = pb_grpc.HeatmapRendererStub(channel)
        cases = ((bad_value, "sigma_map"), (both, "sigma_map"), (torn, "sigma_map.data"))
        for request, field in cases:
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Render(request, timeout=30))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details().startswith(f"{field}: ")


def test_sigma_is_required_once():
    options = RenderOptions(size=SIZE, sigma=None)
    with pytest.raises(ArgumentError, match="^sigma: required"):
        build_request(_keypoints(True), options)
    with pytest.raises(ArgumentError, match="^sigma: give either"):
        build_request(_keypoints(True), RenderOptions(size=SIZE, sigma=2.0),
                      sigma_map=np.ones((BATCH, 1, 1)))
