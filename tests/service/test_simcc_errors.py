"""Bad SimCC arguments: the client refuses what it can see, the server answers INVALID_ARGUMENT or
RESOURCE_EXHAUSTED naming the field (and the client names the argument), and keeps serving."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import ArgumentError, HeatmapClient, HeatmapError, SimccOptions
from heatmap_client.requests import build_simcc_request

KEYPOINTS = np.array([[[30.0, 40.0], [100.0, 20.0]]], dtype=np.float32)
INPUT_SIZE = (256, 192)
SIGMA = (4.9, 5.66)


def _valid(**options) -> pb.RenderRequest:
    return build_simcc_request(KEYPOINTS, SimccOptions(INPUT_SIZE, SIGMA, **options))


def _with(**changes) -> pb.RenderRequest:
    request = _valid()
    for path, value in changes.items():
        owner, _, name = path.rpartition("__")
        setattr(getattr(request, owner) if owner else request, name, value)
    return request


@pytest.fixture(scope="module")
def stub(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        yield pb_grpc.HeatmapRendererStub(channel)


def _refusal(stub, request) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Render(request, timeout=30))
    status = rpc_status.from_call(caught.value)
    bad_request = error_details_pb2.BadRequest()
    assert status is not None and status.details[0].Unpack(bad_request)
    return caught.value.code(), bad_request.field_violations[0].field, caught.value.details()


def _without_simcc() -> pb.RenderRequest:
    request = _valid()
    request.ClearField("simcc")
    return request


def _with_sigma_map() -> pb.RenderRequest:
    request = _valid()
    request.sigma_map.shape.extend([1, 1])
    request.sigma_map.data = np.float64([2.0]).tobytes()
    return request


def _simcc_on_a_heatmap() -> pb.RenderRequest:
    request = _valid()
    request.target = pb.TARGET_HEATMAP
    request.height, request.width, request.sigma = 16, 16, 2.0
    return request


@pytest.mark.parametrize(
    "request_factory, field",
    [
        (lambda: _with(simcc__split_ratio=0.0), "simcc.split_ratio"),
        (lambda: _with(simcc__split_ratio=float("nan")), "simcc.split_ratio"),
        (lambda: _with(simcc__split_ratio=1e300), "simcc.split_ratio"),  # labels past max_side
        (lambda: _with(simcc__split_ratio=1e-6), "simcc.split_ratio"),  # labels of 0 bins
        (lambda: _with(simcc__smoothing=9), "simcc.smoothing"),
        (lambda: _with(simcc__label_smooth_weight=0.5), "simcc.label_smooth_weight"),
        (lambda: _with(simcc__smoothing=pb.SMOOTHING_STANDARD, simcc__label_smooth_weight=1.5),
         "simcc.label_smooth_weight"),
        (lambda: _with(simcc__sigma_x=0.0), "simcc.sigma_x"),
        (lambda: _with(simcc__sigma_y=-1.0), "simcc.sigma_y"),
        (lambda: _with(simcc__sigma_y=float("inf")), "simcc.sigma_y"),
        (lambda: _with(simcc__sigma_x=5000.0), "simcc.sigma_x"),  # wider than the labels
        (lambda: _with(input_height=0), "input_height"),
        (lambda: _with(input_width=-3), "input_height"),
        (lambda: _with(height=64), "height"),
        (lambda: _with(sigma=2.0), "sigma"),
        (lambda: _with(method=pb.METHOD_UDP), "method"),
        (lambda: _with(coordinate_space=pb.COORDINATE_SPACE_PIXEL), "coordinate_space"),
        (lambda: _with(codec=pb.CODEC_SEPARABLE), "codec"),
        (lambda: _with(target=7), "target"),
        (lambda: _with(dtype=pb.DTYPE_UINT8, simcc__sigma_x=0.2, simcc__normalize=True), "dtype"),
        # A normalised peak of 4e5 would be inf in float16: never in an OK reply.
        (lambda: _with(dtype=pb.DTYPE_FLOAT16, simcc__sigma_x=1e-6, simcc__sigma_y=1e-6,
                       simcc__normalize=True), "dtype"),
        (_without_simcc, "simcc"),
        (_with_sigma_map, "sigma_map"),
        (_simcc_on_a_heatmap, "simcc"),
    ],
)
def test_bad_fields_are_named(stub, request_factory, field):
    code, named, details = _refusal(stub, request_factory())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert named == field and details.startswith(f"{field}")


def test_bad_keypoints_and_visibility_are_named(stub):
    request = _valid()
    request.keypoints.shape[:] = [1, 2, 3]
    request.keypoints.data = np.zeros(6, np.float32).tobytes()
    assert _refusal(stub, request)[1] == "keypoints.shape"
    request = _valid()
    request.visibility.shape.extend([1, 3])
    request.visibility.data = np.ones(3, np.float32).tobytes()
    assert _refusal(stub, request)[1] == "visibility"
    request = _valid()
    request.keypoints.data = np.float32([[np.nan, 1.0], [2.0, 3.0]]).tobytes()
    assert _refusal(stub, request)[1] == "keypoints"


def test_the_work_limit_counts_label_elements(stub):
    # 64 Mi elements is the test server's limit: B * K * (Wx + Hy) = 5000 * 17 * 896 exceeds it.
    request = build_simcc_request(
        np.zeros((5000, 17, 2), np.float32), SimccOptions(INPUT_SIZE, SIGMA)
    )
    code, field, details = _refusal(stub, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and field == "keypoints"
    assert "B*N*K*(Wx+Hy)" in details
    assert list(stub.Render(_valid(), timeout=30))[-1].last  # still serving


def test_the_client_names_the_argument_in_the_users_words(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        with pytest.raises(HeatmapError) as caught:  # refused by the server: 0 bins
            client.render_simcc(KEYPOINTS, INPUT_SIZE, SIGMA, split_ratio=1e-6)
        assert caught.value.argument == "split_ratio"
        assert caught.value.message.startswith("split_ratio: ")
        with pytest.raises(HeatmapError) as caught:  # wider than the labels
            client.render_simcc(KEYPOINTS, INPUT_SIZE, {"x": 5000.0, "y": 1.0})
        assert caught.value.argument == "sigma" and caught.value.message.startswith("sigma: ")
        with pytest.raises(ArgumentError, match="looks reversed") as refused:  # before sending
            client.render_simcc(KEYPOINTS, INPUT_SIZE, (5000.0, 1.0))
        assert refused.value.argument == "sigma"
        with pytest.raises(HeatmapError) as caught:
            client.render_simcc(KEYPOINTS, INPUT_SIZE, SIGMA, visibility=np.ones((1, 3)))
        assert caught.value.argument == "visibility"
        assert client.render_simcc(KEYPOINTS, INPUT_SIZE, SIGMA).weights.shape == (1, 2)


@pytest.mark.parametrize(
    "options, argument",
    [
        (dict(input_size=(256,)), "input_size"),
        (dict(input_size=(0, 192)), "input_size"),
        (dict(sigma=(1.0, 2.0, 3.0)), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=(4.9, float("nan"))), "sigma"),
        (dict(split_ratio=0), "split_ratio"),
        (dict(split_ratio=True), "split_ratio"),
        (dict(smoothing="laplace"), "smoothing"),
        (dict(label_smooth_weight=0.1), "label_smooth_weight"),  # gaussian smoothing
        (dict(smoothing="standard", label_smooth_weight=-0.1), "label_smooth_weight"),
        (dict(normalize="yes"), "normalize"),
        (dict(dtype="int8"), "dtype"),
        (dict(codec="separable"), "codec"),
        (dict(sigma=0.3, dtype="uint8"), "dtype"),  # a normalised peak of 1.33
        (dict(sigma=1e-6, dtype="float16"), "dtype"),  # a peak of 4e5: inf in float16
    ],
)
def test_the_client_refuses_before_sending(options, argument):
    arguments = dict(input_size=INPUT_SIZE, sigma=SIGMA) | options
    with HeatmapClient("127.0.0.1:9") as client:  # nothing listens: a sent request would fail
        with pytest.raises(ArgumentError) as caught:
            client.render_simcc(KEYPOINTS, **arguments)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(f"{argument}: ")


def test_the_largest_peak_float16_holds_arrives_finite(live_server):
    """Just inside float16's range is served, finite; just outside, the client refuses."""
    sigma = 1.001 / (65504.0 * math.sqrt(2 * math.pi))  # a peak just under 65504
    with HeatmapClient(live_server.target, timeout=30) as client:
        result = client.render_simcc(KEYPOINTS, INPUT_SIZE, sigma, dtype="float16")
        assert np.isfinite(result.x_labels).all() and np.isfinite(result.y_labels).all()
        assert result.x_labels.max() > 60000
        with pytest.raises(ArgumentError, match="float16 holds finite values up to 65504"):
            client.render_simcc(KEYPOINTS, INPUT_SIZE, sigma / 1.002, dtype="float16")
