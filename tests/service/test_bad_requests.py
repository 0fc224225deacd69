"""Bad requests get INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) naming the field; serving goes on."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient, HeatmapError

from probes import render_request

KEYPOINTS = np.array([[[3.0, 4.0], [10.0, 2.0]]], dtype=np.float32)


@pytest.fixture(scope="module")
def stub(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        yield pb_grpc.HeatmapRendererStub(channel)


def _valid() -> pb.RenderRequest:
    return render_request(KEYPOINTS, size=(16, 16), sigma=2.0)


def _with(**changes) -> pb.RenderRequest:
    request = _valid()
    for path, value in changes.items():
        target, _, name = path.rpartition("__")
        message = getattr(request, target) if target else request
        if isinstance(value, list):
            del getattr(message, name)[:]
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return request


def _nan_keypoints() -> pb.RenderRequest:
    return render_request(np.array([[[np.nan, 1.0]]], np.float32), size=(16, 16), sigma=2.0)


def _inf_keypoints() -> pb.RenderRequest:
    return render_request(np.array([[[1.0, np.inf]]], np.float32), size=(16, 16), sigma=2.0)


def _no_keypoints() -> pb.RenderRequest:
    request = _valid()
    request.ClearField("keypoints")
    return request


def _visibility_shape() -> pb.RenderRequest:
    return render_request(KEYPOINTS, size=(16, 16), sigma=2.0,
                          visibility=np.ones((1, 3), np.float32))


CASES = {
    "nan keypoints": (_nan_keypoints, "keypoints"),
    "inf keypoints": (_inf_keypoints, "keypoints"),
    "missing keypoints": (_no_keypoints, "keypoints"),
    "byte count off": (lambda: _with(keypoints__data=b"\0" * 12), "keypoints.data"),
    "negative shape": (lambda: _with(keypoints__shape=[-1, 2, 2]), "keypoints.shape"),
    "wrong rank": (lambda: _with(keypoints__shape=[4], keypoints__data=b"\0" * 16),
                   "keypoints.shape"),
    "last dim not 2": (lambda: _with(keypoints__shape=[1, 1, 4]), "keypoints.shape"),
    "negative sigma": (lambda: _with(sigma=-2.0), "sigma"),
    "zero sigma": (lambda: _with(sigma=0.0), "sigma"),
    "nan sigma": (lambda: _with(sigma=float("nan")), "sigma"),
    "sigma wider than heatmap": (lambda: _with(sigma=1e6), "sigma"),
    "sigmas wrong length": (lambda: _with(sigma=0.0, sigmas=[1.0, 2.0, 3.0]), "sigmas"),
    "sigma and sigmas": (lambda: _with(sigmas=[1.0, 2.0]), "sigmas"),
    "zero height": (lambda: _with(height=0), "height"),
    "negative width": (lambda: _with(width=-5), "width"),
    "absurd height": (lambda: _with(height=1_000_000), "height"),
    "unknown method": (lambda: _with(method=99), "method"),
    "unknown coordinate space": (lambda: _with(coordinate_space=42), "coordinate_space"),
    "unknown dtype": (lambda: _with(dtype=17), "dtype"),
    "unknown codec": (lambda: _with(codec=9), "codec"),
    "pixel without input size": (
        lambda: _with(coordinate_space=pb.COORDINATE_SPACE_PIXEL), "input_height"),
    "input size without pixel": (lambda: _with(input_height=256, input_width=192), "input_height"),
    "visibility shape": (_visibility_shape, "visibility"),
    "visibility bytes": (
        lambda: _with(visibility__shape=[1, 2], visibility__data=b"\0" * 3), "visibility.data"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_names_the_field(stub, case):
    make, field = CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Render(make(), timeout=10))
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(field + ":"), error.details()
    assert "Traceback" not in error.details()
    status = rpc_status.from_call(error)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == field


def test_output_over_the_limit_is_resource_exhausted(stub):
    # 5 x 4096 x 4096 = 84M elements > the 64M default limit; the request itself is tiny.
    request = render_request(np.zeros((1, 5, 2), np.float32), size=(4096, 4096), sigma=2.0)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Render(request, timeout=10))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details().startswith("keypoints:")


def test_too_many_instances_is_resource_exhausted(stub):
    request = render_request(np.zeros((1, 129, 1, 2), np.float32), size=(8, 8), sigma=1.0)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Render(request, timeout=10))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details().startswith("keypoints: 129 instances")
    allowed = render_request(np.zeros((1, 128, 1, 2), np.float32), size=(8, 8), sigma=1.0)
    assert len(list(stub.Render(allowed, timeout=10))) == 1


def test_client_raises_heatmap_error_and_server_stays_serving(live_server):
    with HeatmapClient(live_server.target, timeout=10) as client:
        with pytest.raises(HeatmapError) as caught:
            client.render(np.full((1, 2, 2), np.nan, np.float32), size=(8, 8), sigma=1.0)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.message.startswith("keypoints:")
        with pytest.raises(HeatmapError) as caught:
            client.render(KEYPOINTS, size=(8, 8), sigma=100.0)  # wider than the heatmap
        assert caught.value.message.startswith("sigma:")
        assert caught.value.argument == "sigma"
        assert client.health() == "SERVING"
        assert client.render(KEYPOINTS, size=(8, 8), sigma=1.0).heatmaps.shape == (1, 2, 8, 8)


def test_bad_request_in_a_stream_ends_it_after_earlier_replies(live_server):
    good = dict(keypoints=KEYPOINTS, size=(8, 8), sigma=1.0)
    bad = dict(keypoints=KEYPOINTS, size=(8, 8), sigma=100.0)  # only the server can tell
    received = []
    with HeatmapClient(live_server.target, timeout=10) as client:
        with pytest.raises(HeatmapError) as caught:
            for result in client.render_many([good, good, bad, good], window=1):
                received.append(result)
    assert len(received) == 2
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message.startswith("request 2: sigma:")
