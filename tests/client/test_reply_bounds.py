"""What one reply may make the client hold: its payload, never a stream of chunks without end.

Chunks between the first and the last must carry payload (else a server could keep a reply open
for ever), and a payload sent a few bytes at a time is joined as it comes (else each tiny piece
would cost ~40 bytes of Python object beside its one byte of data). No message of a legal reply
is larger than the client's receive limit, weights of 8 MiB included, so gRPC can refuse a larger
one before reading it.
"""

from __future__ import annotations

import tracemalloc

import grpc
import numpy as np
import pytest

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client import HeatmapClient, HeatmapError
from heatmap_client.replies import result_from_chunks
from heatmap_client.wire import (
    MAX_UNARY_REPLY_BYTES,
    ReplyReader,
    layout_of,
    reply_chunks,
    tensor_from_array,
)
from heatmap_client.wire.framing import CHUNK_BYTES, max_reply_message_bytes

from probes import render_request

BATCH, KEYPOINTS, HEIGHT, WIDTH = 2, 3, 40, 50
PAYLOAD = BATCH * KEYPOINTS * HEIGHT * WIDTH * 4  # codec none, float32: 48 kB


def _request() -> pb.RenderRequest:
    return render_request(np.zeros((BATCH, KEYPOINTS, 2), np.float32), size=(HEIGHT, WIDTH),
                          sigma=2.0, codec="none")


def _chunks(piece_bytes: int) -> tuple[list[pb.RenderChunk], np.ndarray]:
    heatmaps = np.random.default_rng(0).random((BATCH, KEYPOINTS, HEIGHT, WIDTH), np.float32)
    payload = heatmaps.astype("<f4").tobytes()
    pieces = [payload[start:start + piece_bytes] for start in range(0, len(payload), piece_bytes)]
    header = pb.TensorHeader(shape=heatmaps.shape, dtype=pb.DTYPE_FLOAT32, codec=pb.CODEC_NONE,
                             payload_bytes=PAYLOAD, decoded_bytes=PAYLOAD, instances=1)
    weights = tensor_from_array(np.ones((BATCH, KEYPOINTS), np.float32), "weights")
    return list(reply_chunks(0, header, pieces, weights, pb.Timings())), heatmaps


def _empty(**fields) -> pb.RenderChunk:
    return pb.RenderChunk(request_id=0, **fields)


def test_a_chunk_without_payload_between_first_and_last_is_data_loss():
    chunks, _ = _chunks(4096)
    damaged = chunks[:2] + [_empty()] + chunks[2:]
    with pytest.raises(HeatmapError, match="carries no payload") as caught:
        result_from_chunks(iter(damaged), request=_request())
    assert caught.value.code == grpc.StatusCode.DATA_LOSS


def test_an_endless_run_of_empty_chunks_ends_at_the_first():
    chunks, _ = _chunks(PAYLOAD)
    first = pb.RenderChunk.FromString(chunks[0].SerializeToString())
    first.last = False  # the whole payload, then empty chunks for ever
    endless = iter([first] + [_empty()] * 10**6)
    with pytest.raises(HeatmapError, match="carries no payload"):
        result_from_chunks(endless, request=_request())
    assert len(list(endless)) == 10**6 - 1  # it stopped at the first one


def test_a_header_only_first_chunk_and_a_weights_only_last_chunk_are_fine():
    chunks, heatmaps = _chunks(4096)
    header, last = _empty(), _empty(last=True)
    header.header.CopyFrom(chunks[0].header)
    chunks[0].ClearField("header")
    last.weights.CopyFrom(chunks[-1].weights)
    chunks[-1].last = False
    chunks[-1].ClearField("weights")
    result = result_from_chunks(iter([header, *chunks, last]), request=_request())
    np.testing.assert_array_equal(result.heatmaps, heatmaps)


def test_a_payload_sent_a_byte_at_a_time_is_held_in_few_pieces():
    chunks, heatmaps = _chunks(1)
    assert len(chunks) == PAYLOAD
    reader = ReplyReader(PAYLOAD)
    tracemalloc.start()
    try:
        for chunk in chunks:
            reply = reader.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply is not None and reply.payload_bytes == PAYLOAD
    assert len(reply.pieces) <= 2
    assert peak < 3 * PAYLOAD, f"held {peak} bytes for a {PAYLOAD}-byte payload"
    result = result_from_chunks(iter(chunks), request=_request())
    np.testing.assert_array_equal(result.heatmaps, heatmaps)


# --- every legal reply within the channel's receive limit ---------------------------------------

# The client's default max_request_bytes, the server's default --max-request-bytes.
DEFAULT_MAX_REQUEST_BYTES = 16 << 20
# The most keypoints a request within it carries: their weights (4 bytes each) are 8 MiB, as large
# as a whole one-message reply.
MOST_POINTS = (DEFAULT_MAX_REQUEST_BYTES - 1024) // 8


def test_weights_that_would_overfill_the_last_chunk_come_alone_and_read_back():
    chunks, heatmaps = _chunks(PAYLOAD)
    header, weights = chunks[0].header, chunks[-1].weights
    alone = list(reply_chunks(0, header, [chunks[0].data], weights, pb.Timings(),
                              chunk_bytes=PAYLOAD))
    assert [bool(chunk.data) for chunk in alone] == [True, False]
    assert not alone[0].last and alone[1].last and alone[1].HasField("weights")
    together = list(reply_chunks(0, header, [chunks[0].data], weights, pb.Timings(),
                                 chunk_bytes=PAYLOAD + len(weights.data)))
    assert len(together) == 1
    for framing in (alone, together):
        np.testing.assert_array_equal(
            result_from_chunks(iter(framing), request=_request()).heatmaps, heatmaps)


def test_no_legal_reply_message_exceeds_the_receive_limit():
    assert HeatmapClient("127.0.0.1:1").max_request_bytes == DEFAULT_MAX_REQUEST_BYTES
    limit = max_reply_message_bytes(DEFAULT_MAX_REQUEST_BYTES)
    assert limit < 9 << 20  # 8 MiB and its framing, down from 64 MiB
    request = render_request(np.zeros((1, MOST_POINTS, 2), np.float32), size=(1, 1), sigma=1.0)
    assert request.ByteSize() <= DEFAULT_MAX_REQUEST_BYTES
    layout = layout_of(request)
    header = pb.TensorHeader(shape=[1, MOST_POINTS, 1, 1], dtype=pb.DTYPE_FLOAT32,
                             codec=pb.CODEC_ZSTD, payload_bytes=layout.max_payload,
                             decoded_bytes=layout.decoded_bytes, instances=1, payload_crc32=1)
    pieces = [bytes(min(CHUNK_BYTES, layout.max_payload - start))
              for start in range(0, layout.max_payload, CHUNK_BYTES)]
    # Weights of half the request limit, a bound no request within it quite reaches.
    weights = tensor_from_array(np.ones((1, DEFAULT_MAX_REQUEST_BYTES // 8), np.float32),
                                "weights")
    timings = pb.Timings(queue_us=2**63, render_us=2**63, encode_us=2**63, total_us=2**63,
                         coalesced_requests=2**31)
    largest = max(chunk.ByteSize() for chunk in reply_chunks(
        2**63, header, pieces, weights, timings, chunk_bytes=CHUNK_BYTES))
    assert len(weights.data) == 8 << 20 and largest <= limit, (largest, limit)
    whole = pb.RenderChunk(request_id=2**63, header=header, last=True, timings=timings,
                           data=bytes(MAX_UNARY_REPLY_BYTES - 4 * 2**20),
                           weights=tensor_from_array(np.ones((1, 2**20), np.float32), "weights"))
    assert whole.ByteSize() <= limit


def test_a_reply_with_8_mib_of_weights_arrives_whole(live_server):
    keypoints = np.random.default_rng(0).uniform(-1, 2, (1, MOST_POINTS, 2)).astype(np.float32)
    with HeatmapClient(live_server.target, timeout=60) as client:
        result = client.render(keypoints, size=(1, 1), sigma=1.0)
    assert result.heatmaps.shape == (1, MOST_POINTS, 1, 1)
    assert result.weights.shape == (1, MOST_POINTS) and result.weights.any()
