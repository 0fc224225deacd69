"""The edges of the validation table that tests/service/test_bad_requests.py leaves out.

Empty batches (B = 0, K = 0 or N = 0) are valid and return empty tensors of the asked shape; a
message over ``--max-request-bytes``, an output or profile over ``--max-output-elements`` and a
full queue are RESOURCE_EXHAUSTED; bytes that are no protobuf are INVALID_ARGUMENT, and the server
keeps serving through all of it.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient, HeatmapError
from heatmap_client.replies import result_from_chunks

from live_server import running_server
from probes import busy_request, free_port, render_request, scrape, wait_for

CODECS = ["zstd", "none", "separable"]
RENDER = "/heatmap.v1.HeatmapRenderer/Render"


@pytest.fixture(scope="module")
def client(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        yield channel


def _field(error: grpc.RpcError) -> str:
    bad_request = error_details_pb2.BadRequest()
    assert rpc_status.from_call(error).details[0].Unpack(bad_request)
    return bad_request.field_violations[0].field


# --- empty batches ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shape", [(0, 5, 2), (3, 0, 2), (0, 0, 2), (2, 0, 3, 2), (0, 2, 3, 2),
                                   (2, 3, 0, 2)], ids=str)
def test_an_empty_batch_returns_an_empty_tensor(client, shape, codec):
    batch, keypoints = shape[0], shape[-2]
    result = client.render(np.zeros(shape, np.float32), size=(8, 6), sigma=1.0, codec=codec)
    assert result.heatmaps.shape == (batch, keypoints, 8, 6)
    assert result.heatmaps.dtype == np.float32
    assert result.weights.shape == shape[:-1]
    if result.heatmaps.size:  # N = 0: no instance, nothing drawn
        assert not result.heatmaps.any() and not result.weights.any()


def test_empty_batches_in_a_stream_keep_their_place(client):
    requests = [dict(keypoints=np.zeros(shape, np.float32), size=(8, 8), sigma=1.0)
                for shape in [(1, 2, 2), (0, 2, 2), (1, 0, 2), (2, 2, 2)]]
    shapes = [result.heatmaps.shape for result in client.render_many(requests)]
    assert shapes == [(1, 2, 8, 8), (0, 2, 8, 8), (1, 0, 8, 8), (2, 2, 8, 8)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", [(1, 2**40, 0, 2), (0, 2**20, 2**20, 2), (2**40, 0, 2)], ids=str)
def test_empty_tensors_with_enormous_sides_are_answered_at_once(channel, shape):
    # Nothing to draw, however many instances, samples or keypoints the shape names.
    request = render_request(np.zeros((1, 1, 2), np.float32), size=(8, 8), sigma=1.0)
    request.keypoints.Clear()
    request.keypoints.shape.extend(shape)
    started = time.monotonic()
    chunks = list(pb_grpc.HeatmapRendererStub(channel).Render(request, timeout=20))
    assert time.monotonic() - started < 5
    result = result_from_chunks(chunks, request=request)
    assert result.heatmaps.size == 0 and result.weights.shape == shape[:-1]


def test_a_shape_whose_size_overflows_int64_names_the_field(channel):
    request = render_request(np.zeros((1, 1, 2), np.float32), size=(8, 8), sigma=1.0)
    request.keypoints.Clear()
    request.keypoints.shape.extend([2**32, 2**32, 2])  # 2**65 elements: wraps to 0 in int64
    with pytest.raises(grpc.RpcError) as caught:
        list(pb_grpc.HeatmapRendererStub(channel).Render(request, timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("keypoints.data:"), caught.value.details()


# --- limits -------------------------------------------------------------------------------------


def test_a_message_over_max_request_bytes_is_resource_exhausted(client):
    # 17 MB of keypoints against the default 16 MiB limit: gRPC itself refuses the message.
    keypoints = np.zeros((1, 17 * 1024 * 1024 // 8, 2), np.float32)
    with pytest.raises(HeatmapError) as caught:
        client.render(keypoints, size=(1, 1), sigma=1.0)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
    assert "larger than max" in caught.value.message
    assert client.render(np.zeros((1, 1, 2), np.float32), size=(4, 4), sigma=1.0).heatmaps.shape


def test_profiles_over_the_limit_are_resource_exhausted(channel):
    # 3,000 samples of 128 instances of one keypoint on 128 x 128: 49M output elements (under the
    # 64M limit) but 98M profile elements.
    request = render_request(np.zeros((3000, 128, 1, 2), np.float32), size=(128, 128), sigma=2.0)
    with pytest.raises(grpc.RpcError) as caught:
        list(pb_grpc.HeatmapRendererStub(channel).Render(request, timeout=10))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details().startswith("keypoints:")
    assert "B*N*K*(H+W)" in caught.value.details()
    assert _field(caught.value) == "keypoints"


@pytest.mark.timeout(120)
def test_a_full_queue_is_resource_exhausted_and_the_server_recovers():
    # While a heavy request holds the device thread, one request may wait (--max-queue 1): of six
    # more, sent together, five bounce. They are heavy too (over a piece of work each), so none
    # is served between the blocker's pieces.
    port = free_port()
    flags = ("--max-queue", "1", "--metrics-port", str(port), "--max-work-elements", str(1 << 33))
    with running_server(*flags) as server:
        with HeatmapClient(server.target, timeout=60) as client:
            busy, _ = busy_request(client)
            heavy = np.zeros((1, 24, 2), np.float32)

            def render(width: int):
                try:
                    return client.render(heavy, size=(1024, 1024 + width), sigma=1.0,
                                         dtype="uint8")
                except HeatmapError as error:
                    return error

            with ThreadPoolExecutor(7) as pool:
                blocker = pool.submit(client.render, **busy)
                assert wait_for(lambda: scrape(port).value("heatmap_queue_depth") == 1)
                outcomes = list(pool.map(render, range(8, 14)))
                assert blocker.result().heatmaps.shape[0] == 1
            refused = [outcome for outcome in outcomes if isinstance(outcome, HeatmapError)]
            assert 4 <= len(refused) <= 5, outcomes
            for error in refused:
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert error.message.startswith("queue: full")
            assert client.health() == "SERVING"
            assert client.render(np.zeros((1, 2, 2), np.float32), size=(8, 8), sigma=1.0)
            assert scrape(port).value("heatmap_requests_total", rpc="Render",
                                      code="RESOURCE_EXHAUSTED") == len(refused)


# --- undecodable bytes --------------------------------------------------------------------------

GARBAGE = [b"\xff\xff\xff\xff", b"\x12\x05ab", bytes(range(256)), b"\x08" + b"\xff" * 11]


@pytest.mark.parametrize("data", GARBAGE, ids=lambda data: data[:6].hex())
def test_undecodable_bytes_are_invalid_argument(channel, live_server, data):
    render = channel.unary_stream(RENDER, request_serializer=None, response_deserializer=None)
    stream = channel.stream_stream("/heatmap.v1.HeatmapRenderer/RenderStream",
                                   request_serializer=None, response_deserializer=None)
    info = channel.unary_unary("/heatmap.v1.HeatmapRenderer/GetServerInfo",
                               request_serializer=None, response_deserializer=None)
    for call in (lambda: list(render(data, timeout=10)),
                 lambda: list(stream(iter([data]), timeout=10)),
                 lambda: info(data, timeout=10)):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert "request: not a heatmap.v1." in caught.value.details()
    assert not [line for line in live_server.lines if "DecodeError" in line]


def test_a_good_stream_that_turns_to_garbage_keeps_its_earlier_replies(channel):
    stream = channel.stream_stream("/heatmap.v1.HeatmapRenderer/RenderStream",
                                   request_serializer=None,
                                   response_deserializer=pb.RenderChunk.FromString)
    good = render_request(np.zeros((1, 2, 2), np.float32), size=(8, 8), sigma=1.0)
    good = good.SerializeToString()
    chunks = []
    with pytest.raises(grpc.RpcError) as caught:
        for chunk in stream(iter([good, GARBAGE[0]]), timeout=10):
            chunks.append(chunk)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert chunks and chunks[-1].last


# --- fields the renderer checks -----------------------------------------------------------------

KEYPOINTS = np.array([[[3.0, 4.0], [10.0, 2.0]]], dtype=np.float32)


def _request(**options) -> pb.RenderRequest:
    return render_request(**{"keypoints": KEYPOINTS, "size": (16, 16), "sigma": 2.0, **options})


def _sigmas(*values: float) -> pb.RenderRequest:
    # Past the client's own checks: what a client in another language might send.
    request = _request(sigma=[1.0, 1.0])
    request.ClearField("sigmas")
    request.sigmas.extend(values)
    return request


def _input_size(height: int, width: int) -> pb.RenderRequest:
    request = _request(coords="pixel", input_size=(64, 64))
    request.input_height, request.input_width = height, width
    return request


CASES = {
    "inf sigma": (lambda: _with(sigma=float("inf")), "sigma"),
    "nan in sigmas": (lambda: _sigmas(1.0, float("nan")), "sigma"),
    "negative in sigmas": (lambda: _sigmas(1.0, -1.0), "sigma"),
    "sigmas wider than heatmap": (lambda: _request(sigma=[1.0, 17.0]), "sigma"),
    "nan visibility": (lambda: _request(visibility=np.array([[1.0, np.nan]], np.float32)),
                       "visibility"),
    "negative input size": (lambda: _input_size(-4, 64), "input_height"),
    "udp pixel side 1": (lambda: _request(coords="pixel", input_size=(64, 64), size=(1, 16),
                                          method="udp"), "height"),
    # Shapes the client refuses before sending; a request from elsewhere gets them named too.
    "rank 5": (lambda: _keypoints_of_shape([1, 1, 1, 1, 2]), "keypoints"),
    "scalar keypoints": (lambda: _keypoints_of_shape([]), "keypoints"),
    "negative enum": (lambda: _with(method=-1), "method"),
}


def _keypoints_of_shape(shape: list[int]) -> pb.RenderRequest:
    request = _request()
    request.keypoints.CopyFrom(pb.Tensor(shape=shape,
                                         data=np.zeros(math.prod(shape), np.float32).tobytes()))
    return request


def _with(**fields) -> pb.RenderRequest:
    request = _request()
    for name, value in fields.items():
        setattr(request, name, value)
    return request


@pytest.mark.parametrize("case", list(CASES))
def test_more_bad_fields_are_named(channel, case):
    make, field = CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        list(pb_grpc.HeatmapRendererStub(channel).Render(make(), timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert caught.value.details().startswith(field), caught.value.details()
    assert _field(caught.value).startswith(field)
