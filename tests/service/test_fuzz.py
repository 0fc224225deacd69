"""Fuzzing the live server: generated requests, valid and broken, and random bytes.

Every reply must be OK (and decode to what the request asked for) or a clean refusal
(INVALID_ARGUMENT or RESOURCE_EXHAUSTED); never UNKNOWN or INTERNAL, and the server must be SERVING
afterwards. Bounded: a fixed number of examples, derandomized, no example database, small shapes
(absurd sizes are refused before anything is rendered). ``HEATMAP_FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import collections
import math

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient
from heatmap_client.replies import result_from_chunks

from fuzzing import fuzz_settings, rpc_outcome

FUZZ = fuzz_settings(150)
EXAMPLES = FUZZ.max_examples
# Codes seen, per test, for the closing summary.
SEEN: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

FIELDS = ("keypoints", "rank", "height", "width", "method", "coordinate_space", "dtype", "codec",
          "sigma", "sigmas", "visibility", "input_size")
finite = st.floats(-8.0, 40.0, width=32)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
bad_sides = st.sampled_from([0, -1, -(2**31), 2**31 - 1, 4097, 10**6])
bad_enums = st.sampled_from([-1, 5, 6, 99, 2**31 - 1])
bad_sigmas = st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e300, 5000.0])
odd_shapes = st.lists(st.sampled_from([-1, 0, 1, 2, 3, 2**31, 2**62, 2**63 - 1]), max_size=5)


def _tensor(shape: tuple[int, ...], values: list[float]) -> pb.Tensor:
    return pb.Tensor(shape=shape, data=np.asarray(values, "<f4").tobytes())


@st.composite
def requests(draw) -> pb.RenderRequest:
    """A valid request with zero, one or two fields broken (each in one of several ways)."""
    broken = draw(st.sets(st.sampled_from(FIELDS), max_size=2))
    batch, keypoints = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    instances = draw(st.one_of(st.none(), st.integers(0, 3)))
    shape = (batch, keypoints, 2) if instances is None else (batch, instances, keypoints, 2)
    if "rank" in broken:
        shape = draw(st.lists(st.integers(0, 3), max_size=5).map(tuple).filter(
            lambda odd: len(odd) not in (3, 4) or odd[-1] != 2))
    count, channels = math.prod(shape), shape[-2] if len(shape) >= 2 else 1
    values = draw(st.lists(finite, min_size=count, max_size=count))
    keypoint_tensor = _tensor(shape, values)
    if "keypoints" in broken:
        way = draw(st.sampled_from(["non-finite", "odd tensor", "missing", "bytes"]))
        if way == "non-finite" and count:
            values[draw(st.integers(0, count - 1))] = draw(non_finite)
            keypoint_tensor = _tensor(shape, values)
        elif way == "odd tensor":
            keypoint_tensor = pb.Tensor(shape=draw(odd_shapes), data=draw(st.binary(max_size=64)))
        elif way == "bytes":
            keypoint_tensor.data += draw(st.binary(min_size=1, max_size=7))
        else:
            keypoint_tensor = None
    height = draw(bad_sides if "height" in broken else st.integers(1, 40))
    width = draw(bad_sides if "width" in broken else st.integers(1, 40))
    request = pb.RenderRequest(
        request_id=draw(st.integers(0, 2**64 - 1)),
        height=height,
        width=width,
        method=draw(bad_enums if "method" in broken else st.integers(0, 4)),
        coordinate_space=draw(bad_enums if "coordinate_space" in broken else st.integers(0, 3)),
        dtype=draw(bad_enums.filter(lambda value: value != 5) if "dtype" in broken
                   else st.integers(0, 5)),
        codec=draw(bad_enums if "codec" in broken else st.integers(0, 3)),
    )
    if keypoint_tensor is not None:
        request.keypoints.CopyFrom(keypoint_tensor)
    largest = max(1.0, min(6.0, max(height, width)))
    if "sigmas" in broken:
        way = draw(st.sampled_from(["length", "value", "both"]))
        length = channels
        if way == "length":
            length = draw(st.integers(0, 6).filter(lambda n: n != channels))
        request.sigmas.extend(draw(st.lists(st.floats(0.3, largest), min_size=length,
                                            max_size=length)))
        if way == "value" and length:
            request.sigmas[draw(st.integers(0, length - 1))] = draw(bad_sigmas)
        if way == "both" or not length:
            request.sigma = draw(st.floats(0.3, largest))
    elif draw(st.booleans()) and channels > 0:
        request.sigmas.extend(draw(st.lists(st.floats(0.3, largest), min_size=channels,
                                            max_size=channels)))
    else:
        request.sigma = draw(bad_sigmas if "sigma" in broken else st.floats(0.3, largest))
    if "visibility" in broken:
        way = draw(st.sampled_from(["shape", "non-finite", "odd tensor"]))
        if way == "shape":
            request.visibility.CopyFrom(_tensor(shape, [1.0] * count))  # one axis too many
        elif way == "non-finite" and math.prod(shape[:-1]):
            request.visibility.CopyFrom(_tensor(shape[:-1], [math.nan] * math.prod(shape[:-1])))
        else:
            request.visibility.CopyFrom(pb.Tensor(shape=draw(odd_shapes),
                                                  data=draw(st.binary(max_size=32))))
    elif draw(st.booleans()):
        size = math.prod(shape[:-1])
        request.visibility.CopyFrom(_tensor(shape[:-1], draw(st.lists(
            st.floats(0.0, 1.0), min_size=size, max_size=size))))
    pixel = request.coordinate_space == pb.COORDINATE_SPACE_PIXEL
    if "input_size" in broken:
        way = draw(st.sampled_from(["side", "unwanted", "missing"]))
        if way == "side":
            request.input_height, request.input_width = draw(bad_sides), draw(st.integers(2, 99))
        elif way == "unwanted" and not pixel:
            request.input_height, request.input_width = 64, 48
    elif pixel:
        request.input_height = draw(st.integers(2, 99))
        request.input_width = draw(st.integers(2, 99))
    return request


@pytest.fixture(scope="module")
def channel(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        yield channel


@FUZZ
@given(request=requests())
def test_fuzzed_requests_get_a_reply_or_a_clean_refusal(channel, request):
    stub = pb_grpc.HeatmapRendererStub(channel)
    code, reply = rpc_outcome(lambda: list(stub.Render(request, timeout=30)))
    SEEN["render"][code.name] += 1
    if code == grpc.StatusCode.OK:
        # A reply is exactly what was asked for, and decodes.
        result = result_from_chunks(reply, request=request)
        assert result.heatmaps.shape[2:] == (request.height, request.width)
        assert np.isfinite(result.heatmaps).all() and np.isfinite(result.weights).all()


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_get_a_clean_refusal(channel, data):
    # Most random bytes are no protobuf; some parse (as unknown fields or odd values) and are then
    # checked as any request is.
    render = channel.unary_stream("/heatmap.v1.HeatmapRenderer/Render",
                                  request_serializer=None, response_deserializer=None)
    code, _ = rpc_outcome(lambda: list(render(data, timeout=30)))
    SEEN["bytes"][code.name] += 1


@settings(FUZZ, max_examples=max(1, EXAMPLES // 5))
@given(batch=st.lists(requests(), min_size=1, max_size=4))
def test_fuzzed_streams_end_cleanly(channel, batch):
    stub = pb_grpc.HeatmapRendererStub(channel)
    for request_id, request in enumerate(batch):
        request.request_id = request_id
    code, _ = rpc_outcome(lambda: list(stub.RenderStream(iter(batch), timeout=30)))
    SEEN["stream"][code.name] += 1


def test_the_server_is_serving_after_the_fuzzing(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        assert client.health() == "SERVING"
        result = client.render(np.ones((1, 2, 2), np.float32), size=(8, 8), sigma=1.0)
        assert result.heatmaps.max() == 1
    assert not [line for line in live_server.lines if " ERROR " in line or "Traceback" in line]
    for name, counts in sorted(SEEN.items()):
        print(f"fuzz {name}: {sum(counts.values())} calls, {dict(sorted(counts.items()))}")
    if SEEN:  # when the tests above ran (not deselected)
        assert SEEN["render"]["OK"] and SEEN["render"]["INVALID_ARGUMENT"]
