"""Fuzzing the live server's SimCC target and sigma maps: generated requests, valid and broken.

As tests/service/test_fuzz.py: every reply is OK (and decodes to finite labels or heatmaps of the
shape asked for) or a clean refusal (INVALID_ARGUMENT, RESOURCE_EXHAUSTED), never UNKNOWN or
INTERNAL, and the server serves afterwards. Bounded and derandomized; ``HEATMAP_FUZZ_EXAMPLES``
raises the count.
"""

from __future__ import annotations

import collections
import math

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient
from heatmap_client.replies import result_from_chunks

from fuzzing import fuzz_settings, rpc_outcome

FUZZ = fuzz_settings(120)
SEEN: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

SIMCC_FIELDS = ("keypoints", "input_size", "split_ratio", "smoothing", "label_smooth_weight",
                "sigma_x", "sigma_y", "unused", "visibility")
bad_sides = st.sampled_from([0, -1, -(2**31), 2**31 - 1, 4097, 10**6])
bad_enums = st.sampled_from([-1, 3, 5, 99, 2**31 - 1])
bad_numbers = st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e300, 1e-9, 5000.0])
odd_shapes = st.lists(st.sampled_from([-1, 0, 1, 2, 3, 2**31, 2**62]), max_size=5)


def _tensor(shape, values, dtype="<f4"):
    message = pb.DoubleTensor() if dtype == "<f8" else pb.Tensor()
    message.shape.extend(shape)
    message.data = np.asarray(values, dtype).tobytes()
    return message


def _points(draw, shape, broken: bool) -> pb.Tensor:
    count = math.prod(shape)
    values = draw(st.lists(st.floats(-60.0, 330.0, width=32), min_size=count, max_size=count))
    if broken and count and draw(st.booleans()):
        values[draw(st.integers(0, count - 1))] = draw(st.sampled_from([math.nan, math.inf]))
    elif broken:
        return pb.Tensor(shape=draw(odd_shapes), data=draw(st.binary(max_size=64)))
    return _tensor(shape, values)


def _visibility(draw, lead, broken: bool):
    if broken:
        return pb.Tensor(shape=draw(odd_shapes), data=draw(st.binary(max_size=32)))
    size = math.prod(lead)
    return _tensor(lead, draw(st.lists(st.floats(0.0, 1.0), min_size=size, max_size=size)))


def _shape(draw):
    batch, keypoints = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    instances = draw(st.one_of(st.none(), st.integers(0, 3)))
    return (batch, keypoints, 2) if instances is None else (batch, instances, keypoints, 2)


@st.composite
def simcc_requests(draw) -> pb.RenderRequest:
    """A SimCC request with zero, one or two fields broken."""
    broken = draw(st.sets(st.sampled_from(SIMCC_FIELDS), max_size=2))
    shape = _shape(draw)
    smoothing = draw(bad_enums if "smoothing" in broken else st.integers(0, 2))
    weight = 0.0
    if "label_smooth_weight" in broken:
        weight = draw(st.sampled_from([-0.1, 1.5, math.nan, math.inf, 0.3]))
    elif smoothing == pb.SMOOTHING_STANDARD:
        weight = draw(st.floats(0.0, 1.0))
    params = pb.SimccParameters(
        split_ratio=draw(bad_numbers if "split_ratio" in broken else st.floats(0.1, 4.0)),
        smoothing=smoothing,
        label_smooth_weight=weight,
        normalize=draw(st.booleans()),
        sigma_x=draw(bad_numbers if "sigma_x" in broken else st.floats(0.3, 10.0)),
        sigma_y=draw(bad_numbers if "sigma_y" in broken else st.floats(0.3, 10.0)),
    )
    sides = bad_sides if "input_size" in broken else st.integers(1, 300)
    request = pb.RenderRequest(
        request_id=draw(st.integers(0, 2**64 - 1)),
        keypoints=_points(draw, shape, "keypoints" in broken),
        input_height=draw(sides), input_width=draw(st.integers(1, 300)),
        dtype=draw(st.integers(0, 5)), codec=draw(st.integers(0, 3)),
        target=pb.TARGET_SIMCC, simcc=params,
    )
    if "unused" in broken:
        field = draw(st.sampled_from(["height", "width", "sigma", "method", "coordinate_space"]))
        setattr(request, field, 2)
    if "visibility" in broken or draw(st.booleans()):
        request.visibility.CopyFrom(_visibility(draw, shape[:-1], "visibility" in broken))
    return request


@st.composite
def sigma_map_requests(draw) -> pb.RenderRequest:
    """A heatmap request whose sigma is a map, of a shape that broadcasts or not, values good or
    not, sometimes beside a plain sigma."""
    shape = _shape(draw)
    lead = shape[:-1]
    options = [lead, lead[:-1] + (1,), (lead[0],) + (1,) * (len(lead) - 1), (1,) * len(lead)]
    sigma_shape = draw(st.one_of(st.sampled_from(options), st.lists(st.integers(0, 4),
                                                                   max_size=4).map(tuple)))
    count = math.prod(sigma_shape)
    values = draw(st.lists(st.floats(0.3, 6.0), min_size=count, max_size=count))
    if count and draw(st.booleans()):
        values[draw(st.integers(0, count - 1))] = draw(bad_numbers)
    request = pb.RenderRequest(
        request_id=draw(st.integers(0, 2**64 - 1)),
        keypoints=_points(draw, shape, False),
        height=draw(st.integers(1, 40)), width=draw(st.integers(1, 40)),
        method=draw(st.integers(0, 4)), dtype=draw(st.integers(0, 5)),
        codec=draw(st.integers(0, 3)),
        sigma_map=_tensor(sigma_shape, values, "<f8"),
    )
    if draw(st.integers(0, 5)) == 0:
        request.sigma = 2.0
    if draw(st.integers(0, 5)) == 0:
        request.sigma_map.data += b"\0"
    return request


@pytest.fixture(scope="module")
def stub(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        yield pb_grpc.HeatmapRendererStub(channel)


@FUZZ
@given(request=simcc_requests())
def test_fuzzed_simcc_requests_get_labels_or_a_clean_refusal(stub, request):
    code, reply = rpc_outcome(lambda: list(stub.Render(request, timeout=30)))
    SEEN["simcc"][code.name] += 1
    if code == grpc.StatusCode.OK:
        result = result_from_chunks(reply, request=request)
        ratio = request.simcc.split_ratio
        assert result.x_labels.shape[-1] == round(request.input_width * ratio)
        assert result.y_labels.shape[-1] == round(request.input_height * ratio)
        for array in (result.x_labels, result.y_labels, result.weights):
            assert np.isfinite(array).all()


@FUZZ
@given(request=sigma_map_requests())
def test_fuzzed_sigma_maps_get_heatmaps_or_a_clean_refusal(stub, request):
    code, reply = rpc_outcome(lambda: list(stub.Render(request, timeout=30)))
    SEEN["sigma_map"][code.name] += 1
    if code == grpc.StatusCode.OK:
        result = result_from_chunks(reply, request=request)
        assert result.heatmaps.shape[2:] == (request.height, request.width)
        assert np.isfinite(result.heatmaps).all() and np.isfinite(result.weights).all()


def test_the_server_is_serving_after_the_fuzzing(live_server):
    with HeatmapClient(live_server.target, timeout=30) as client:
        assert client.health() == "SERVING"
        labels = client.render_simcc(np.ones((1, 2, 2), np.float32), (8, 8), 1.0, normalize=False)
        assert labels.x_labels.max() == 1
    assert not [line for line in live_server.lines if " ERROR " in line or "Traceback" in line]
    for name, counts in sorted(SEEN.items()):
        print(f"fuzz {name}: {sum(counts.values())} calls, {dict(sorted(counts.items()))}")
    if SEEN:  # when the tests above ran (not deselected)
        for name in ("simcc", "sigma_map"):
            assert SEEN[name]["OK"] and SEEN[name]["INVALID_ARGUMENT"], name
