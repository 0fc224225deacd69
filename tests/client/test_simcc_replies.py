"""SimCC replies fed to the client's decoder: the labels come back exactly, and a reply that lies
about its target, either label's shape, its size or its bytes is DATA_LOSS, never wrong labels."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client import ArgumentError, HeatmapError, SimccOptions
from heatmap_client.replies import PendingReply
from heatmap_client.requests import build_simcc_request
from heatmap_client.wire import CODECS, reply_chunks, tensor_from_array
from heatmap_server.encoding import encode_payload

CHUNK_BYTES = 512  # small, so that every reply spans several chunks
BATCH, KEYPOINTS = 2, 3
INPUT_SIZE = (20, 15)  # labels of Hy = 30 and Wx = round(22.5) = 22 bins (half to even)


def _reply(codec="zstd", dtype="float32", **header_changes):
    """``(request, chunks, x_labels, y_labels)``: a well-formed reply, then ``header_changes``."""
    options = SimccOptions(INPUT_SIZE, 2.0, split_ratio=1.5, normalize=False, codec=codec,
                           dtype=dtype)
    request = build_simcc_request(np.zeros((BATCH, KEYPOINTS, 2), np.float32), options)
    request.request_id = 3
    rng = np.random.default_rng(0)
    x_labels = rng.random((BATCH, KEYPOINTS, 22)).astype("<f4")
    y_labels = rng.random((BATCH, KEYPOINTS, 30)).astype("<f4")
    stored = [x_labels, y_labels]
    if dtype == "float16":
        stored = [labels.astype(np.float16) for labels in stored]
    wire = CODECS[request.codec]
    pieces, crc32 = encode_payload(wire, stored, CHUNK_BYTES)
    header = pb.TensorHeader(
        shape=x_labels.shape, y_labels_shape=y_labels.shape, target=pb.TARGET_SIMCC,
        dtype=request.dtype, codec=wire.proto, payload_bytes=sum(map(len, pieces)),
        decoded_bytes=sum(array.nbytes for array in stored), instances=1, payload_crc32=crc32,
    )
    for name, value in header_changes.items():
        if isinstance(value, list):
            del getattr(header, name)[:]
            getattr(header, name).extend(value)
        else:
            setattr(header, name, value)
    weights = tensor_from_array(np.ones((BATCH, KEYPOINTS), np.float32), "weights")
    chunks = list(reply_chunks(3, header, pieces, weights, pb.Timings(coalesced_requests=1)))
    return request, chunks, x_labels, y_labels


def _read(request, chunks):
    pending = PendingReply(request)
    for chunk in chunks:
        result = pending.feed(chunk)
        if result is not None:
            return result
    raise AssertionError("no result")


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_a_well_formed_reply_decodes_exactly(codec):
    request, chunks, x_labels, y_labels = _reply(codec)
    assert len(chunks) > 2
    result = _read(request, chunks)
    np.testing.assert_array_equal(result.x_labels, x_labels)
    np.testing.assert_array_equal(result.y_labels, y_labels)
    assert result.request_id == 3 and result.dtype == "float32"


def test_float16_labels_come_back_as_float32():
    request, chunks, x_labels, _ = _reply(dtype="float16")
    result = _read(request, chunks)
    assert result.x_labels.dtype == np.float32
    np.testing.assert_array_equal(result.x_labels, x_labels.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("changes", [
    dict(target=pb.TARGET_HEATMAP),
    dict(target=0),
    dict(shape=[BATCH, KEYPOINTS, 23]),
    dict(y_labels_shape=[BATCH, KEYPOINTS, 29]),
    dict(y_labels_shape=[]),
    dict(shape=[BATCH, KEYPOINTS, 30], y_labels_shape=[BATCH, KEYPOINTS, 22]),  # swapped
    dict(decoded_bytes=1),
    dict(instances=2),
    dict(payload_crc32=1),
], ids=lambda changes: ",".join(changes))
def test_a_lying_header_is_data_loss(changes):
    request, chunks, _, _ = _reply(**changes)
    with pytest.raises(HeatmapError) as caught:
        _read(request, chunks)
    assert caught.value.code == grpc.StatusCode.DATA_LOSS


def test_flipped_payload_bytes_are_data_loss():
    request, chunks, _, _ = _reply()
    damaged = bytearray(chunks[1].data)
    damaged[len(damaged) // 2] ^= 0xFF
    chunks[1].data = bytes(damaged)
    with pytest.raises(HeatmapError) as caught:
        _read(request, chunks)
    assert caught.value.code == grpc.StatusCode.DATA_LOSS


def test_a_raw_payload_one_label_short_is_data_loss():
    request, chunks, _, _ = _reply("none")
    cut = chunks[-1].data[: -4 * 30]
    chunks[-1].data = cut
    chunks[0].header.payload_bytes -= 4 * 30
    with pytest.raises(HeatmapError) as caught:
        _read(request, chunks)
    assert caught.value.code == grpc.StatusCode.DATA_LOSS


def test_simcc_takes_no_keep_dtype_or_out():
    request, _, _, _ = _reply()
    with pytest.raises(ArgumentError, match="^keep_dtype: SimCC labels") as caught:
        PendingReply(request, keep_dtype=True)
    assert caught.value.argument == "keep_dtype"
    with pytest.raises(ArgumentError, match="^out: SimCC labels"):
        PendingReply(request, out=np.zeros((BATCH, KEYPOINTS, 4), np.float32))
