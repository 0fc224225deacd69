"""Corrupted replies fed to the client's decoder: a HeatmapError, never a hang or a wrong tensor.

Replies are framed by the server's own chunker (``heatmap_server.service``) in small chunks, then
damaged: flipped bytes, dropped or truncated chunks, headers that lie about payload size, shape,
dtype, codec or instances, weights of the wrong size. The decoder is given the request, as the
clients give it, so a header that lies consistently cannot pass off a tensor of another shape.
"""

from __future__ import annotations

import tracemalloc

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client import HeatmapError
from heatmap_client.replies import result_from_chunks
from heatmap_client.wire import CODECS, rebuild_dense, reply_chunks, tensor_from_array
from heatmap_server.encoding import encode_payload

from probes import render_request

CHUNK_BYTES = 256  # small, so that every reply spans several chunks
BATCH, KEYPOINTS, HEIGHT, WIDTH = 2, 3, 24, 20

pytestmark = pytest.mark.timeout(60)


def _profiles(instances: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, [HEIGHT, WIDTH], size=(BATCH, instances, KEYPOINTS, 2))
    rows = np.exp(-((np.arange(HEIGHT) - centres[..., :1]) ** 2) / 8).astype("<f4")
    cols = np.exp(-((np.arange(WIDTH) - centres[..., 1:]) ** 2) / 8).astype("<f4")
    return rows, cols


def _tables(rows: np.ndarray, cols: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """The profile_table payload of ``rows`` and ``cols``: each's distinct rows and an index."""
    arrays, sizes = [], {}
    for name, profiles in (("table_rows", rows), ("table_cols", cols)):
        table, index = np.unique(profiles.reshape(-1, profiles.shape[-1]), axis=0,
                                 return_inverse=True)
        arrays.append((np.ascontiguousarray(table, "<f4"),
                       index.reshape(profiles.shape[:3]).astype("<u4")))
        sizes[name] = table.shape[0]
    (row_table, row_index), (col_table, col_index) = arrays
    return [row_table, col_table, row_index, col_index], sizes


def reply(codec: str = "zstd", dtype: str = "float32", instances: int | None = None):
    """``(request, chunks, heatmaps, weights)``: a well-formed reply and what it decodes to."""
    shape = (BATCH, KEYPOINTS, 2) if instances is None else (BATCH, instances, KEYPOINTS, 2)
    request = render_request(np.zeros(shape, np.float32), size=(HEIGHT, WIDTH), sigma=2.0,
                            codec=codec, dtype=dtype, request_id=5)
    rows, cols = _profiles(instances or 1)
    heatmaps = rebuild_dense(rows, cols)
    weights = np.ones(shape[:-1], np.float32)
    wire = CODECS[request.codec]
    stored = heatmaps.astype(np.float16) if dtype == "float16" else heatmaps
    arrays = [rows, cols] if wire.separable else [stored]
    tables = {}
    if wire.name == "profile_table":
        arrays, tables = _tables(rows, cols)
    pieces, crc32 = encode_payload(wire, arrays, CHUNK_BYTES)
    header = pb.TensorHeader(
        shape=[BATCH, KEYPOINTS, HEIGHT, WIDTH], dtype=request.dtype or pb.DTYPE_FLOAT32,
        codec=wire.proto, payload_bytes=sum(len(piece) for piece in pieces),
        decoded_bytes=sum(array.nbytes for array in arrays), instances=instances or 1,
        payload_crc32=crc32, **tables,
    )
    chunks = list(reply_chunks(request.request_id, header, pieces,
                               tensor_from_array(weights, "weights"),
                               pb.Timings(queue_us=1, render_us=2, encode_us=3, total_us=6)))
    expected = stored.astype(np.float32)
    return request, chunks, expected, weights


def _copy(chunks: list[pb.RenderChunk]) -> list[pb.RenderChunk]:
    return [pb.RenderChunk.FromString(chunk.SerializeToString()) for chunk in chunks]


def _lost_or_exact(chunks, heatmaps, request, weights=None) -> None:
    """Decoding damaged ``chunks`` fails with DATA_LOSS or (damage that changed nothing) gives
    exactly the true result; never anything else."""
    try:
        result = result_from_chunks(iter(chunks), request=request)
    except HeatmapError as error:
        assert error.code == grpc.StatusCode.DATA_LOSS
    else:
        np.testing.assert_array_equal(result.heatmaps, heatmaps)
        if weights is not None:
            np.testing.assert_array_equal(result.weights, weights)


def _fails(chunks, request, **options) -> HeatmapError:
    with pytest.raises(HeatmapError) as caught:
        result_from_chunks(iter(chunks), request=request, **options)
    assert caught.value.code == grpc.StatusCode.DATA_LOSS, caught.value
    return caught.value


@pytest.mark.parametrize("codec", ["zstd", "none", "separable", "profile_table"])
def test_an_intact_reply_decodes_exactly(codec):
    request, chunks, heatmaps, weights = reply(codec)
    assert len(chunks) > 3
    result = result_from_chunks(iter(chunks), request=request)
    np.testing.assert_array_equal(result.heatmaps, heatmaps)
    np.testing.assert_array_equal(result.weights, weights)
    assert result.request_id == 5 and result.timings.total_us == 6


# --- damaged streams ----------------------------------------------------------------------------


def _drop(index: int):
    return lambda chunks: chunks[:index] + chunks[index + 1:]


def _truncate_last(chunks):
    chunks[-1].data = chunks[-1].data[:-3]
    return chunks


def _truncate_consistently(chunks):
    # Payload and announced size agree, but the payload is cut short.
    cut = len(chunks[-1].data) // 2
    chunks[-1].data = chunks[-1].data[:cut]
    chunks[0].header.payload_bytes = sum(len(chunk.data) for chunk in chunks)
    return chunks


def _extend_consistently(chunks):
    chunks[-1].data += b"\0" * 8
    chunks[0].header.payload_bytes += 8
    return chunks


def _header(**fields):
    def change(chunks):
        for name, value in fields.items():
            if name == "shape":
                chunks[0].header.ClearField("shape")
                chunks[0].header.shape.extend(value)
            else:
                setattr(chunks[0].header, name, value)
        return chunks
    return change


def _last(**fields):
    def change(chunks):
        for name, value in fields.items():
            if name == "weights":
                chunks[-1].weights.CopyFrom(value)
            else:
                setattr(chunks[-1], name, value)
        return chunks
    return change


def _payload_bytes(chunks, change: int):
    chunks[0].header.payload_bytes += change
    return chunks


def _clear_crc(chunks):
    chunks[0].header.ClearField("payload_crc32")
    return chunks


def _wrong_crc(chunks):
    chunks[0].header.payload_crc32 ^= 1
    return chunks


def _flip_middle(chunks):
    middle = chunks[len(chunks) // 2]
    data = bytearray(middle.data)
    data[len(data) // 2] ^= 0x40
    middle.data = bytes(data)
    return chunks


DAMAGE = {
    "drop the first chunk": _drop(0),
    "drop a middle chunk": _drop(2),
    "missing last chunk": lambda chunks: chunks[:-1],
    "no chunks at all": lambda chunks: [],
    "truncated last chunk": _truncate_last,
    "truncated, sizes agreeing": _truncate_consistently,
    "padded, sizes agreeing": _extend_consistently,
    "flipped byte": _flip_middle,
    "payload_crc32: missing": _clear_crc,
    "payload_crc32: wrong": _wrong_crc,
    "payload_bytes + 1": lambda chunks: _payload_bytes(chunks, +1),
    "payload_bytes - 1": lambda chunks: _payload_bytes(chunks, -1),
    "shape: wider": _header(shape=[BATCH, KEYPOINTS, HEIGHT, WIDTH + 1]),
    "shape: permuted": _header(shape=[KEYPOINTS, BATCH, HEIGHT, WIDTH]),
    "shape: transposed": _header(shape=[BATCH, KEYPOINTS, WIDTH, HEIGHT]),
    "shape: rank 3": _header(shape=[BATCH * KEYPOINTS, HEIGHT, WIDTH]),
    "shape: negative": _header(shape=[-BATCH, KEYPOINTS, HEIGHT, WIDTH]),
    "shape: petabytes": _header(shape=[2**20, 2**20, 100, 100]),
    "shape: beyond int64 bytes": _header(shape=[2**40, 2**40, 2**40, 2**40]),
    "dtype: float16": _header(dtype=pb.DTYPE_FLOAT16),
    "dtype: uint8": _header(dtype=pb.DTYPE_UINT8),
    "dtype: unknown": _header(dtype=42),
    "codec: none": _header(codec=pb.CODEC_NONE),
    "codec: zstd": _header(codec=pb.CODEC_ZSTD),
    "codec: separable": _header(codec=pb.CODEC_SEPARABLE),
    "codec: unknown": _header(codec=42),
    "instances: many": _header(instances=2**50),
    "instances: negative": _header(instances=-1),
    "weights: byte count": _last(weights=pb.Tensor(shape=[BATCH, KEYPOINTS], data=b"\0" * 7)),
    "weights: shape": _last(weights=tensor_from_array(np.ones((BATCH + 1, KEYPOINTS)), "w")),
    "weights: missing": _last(weights=pb.Tensor()),
    "request_id": _last(request_id=6),
}
def _applies(codec: str, damage: str) -> bool:
    if codec == "none" and (damage == "flipped byte" or damage.startswith("payload_crc32")):
        return False  # raw bytes carry no checksum: gRPC and TCP (or TLS) guard them in transit
    return damage != f"codec: {codec}"  # not a lie for this codec


@pytest.mark.parametrize(("codec", "damage"), [
    pytest.param(codec, damage, id=f"{damage}-{codec}")
    for codec in ("zstd", "separable", "profile_table", "none") for damage in DAMAGE
    if _applies(codec, damage)
])
def test_damage_is_data_loss(codec, damage):
    request, chunks, heatmaps, _ = reply(codec)
    damaged = DAMAGE[damage](_copy(chunks))
    _fails(damaged, request)


def test_chunks_after_the_last_are_left_unread():
    request, chunks, heatmaps, _ = reply()
    extra = iter(chunks + [pb.RenderChunk(data=b"junk")])
    np.testing.assert_array_equal(result_from_chunks(extra, request=request).heatmaps, heatmaps)
    assert next(extra).data == b"junk"


def test_a_lying_header_with_out_never_writes_a_wrong_tensor():
    request, chunks, _, _ = reply()
    out = np.full((BATCH, KEYPOINTS, HEIGHT, WIDTH), 7.0, np.float32)
    _fails(_header(shape=[KEYPOINTS, BATCH, HEIGHT, WIDTH])(_copy(chunks)), request, out=out)
    assert (out == 7.0).all()


# --- random damage ------------------------------------------------------------------------------

REPLIES = {codec: reply(codec) for codec in ("zstd", "separable")}
REPLIES["instances"] = reply("separable", instances=3)
REPLIES["float16"] = reply("zstd", dtype="float16")
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def _payload_flip(chunks, position: int, mask: int):
    sizes = [len(chunk.data) for chunk in chunks]
    position %= sum(sizes)
    for chunk, size in zip(chunks, sizes, strict=True):
        if position < size:
            data = bytearray(chunk.data)
            data[position] ^= mask
            chunk.data = bytes(data)
            return chunks
        position -= size
    raise AssertionError("position outside the payload")


@FUZZ
@given(which=st.sampled_from(sorted(REPLIES)), position=st.integers(0, 2**20),
       mask=st.integers(1, 255))
def test_any_flipped_payload_byte_is_caught(which, position, mask):
    # The payload's CRC-32 catches a flip anywhere before anything is decoded.
    request, chunks, heatmaps, _ = REPLIES[which]
    _lost_or_exact(_payload_flip(_copy(chunks), position, mask), heatmaps, request)


@FUZZ
@given(which=st.sampled_from(sorted(REPLIES)), data=st.data())
def test_random_damage_to_the_stream_is_caught(which, data):
    request, chunks, heatmaps, weights = REPLIES[which]
    damaged = _copy(chunks)
    index = data.draw(st.integers(0, len(damaged) - 1))
    action = data.draw(st.sampled_from(["cut", "drop", "duplicate", "swap", "garbage"]))
    if action == "cut":
        keep = data.draw(st.integers(0, len(damaged[index].data)))
        damaged[index].data = damaged[index].data[:keep]
    elif action == "drop":
        del damaged[index]
    elif action == "duplicate":
        damaged.insert(index, _copy([damaged[index]])[0])
    elif action == "swap" and len(damaged) > 1:
        other = data.draw(st.integers(0, len(damaged) - 1))
        damaged[index].data, damaged[other].data = damaged[other].data, damaged[index].data
    else:
        damaged[index].data = data.draw(st.binary(min_size=1, max_size=300))
    _lost_or_exact(damaged, heatmaps, request, weights)


# --- memory -------------------------------------------------------------------------------------


def test_rebuilding_many_instances_needs_about_two_dense_tensors():
    # 40 instances: an einsum over all of them at once would hold 40 dense tensors (7.5 MB here).
    rng = np.random.default_rng(3)
    rows = rng.random((2, 40, 3, 96), dtype=np.float32)
    cols = rng.random((2, 40, 3, 80), dtype=np.float32)
    expected = np.max(rows[..., :, None] * cols[..., None, :], axis=1)
    tracemalloc.start()
    try:
        out = rebuild_dense(rows, cols)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, expected)
    assert peak <= 3 * out.nbytes, (peak, out.nbytes)


def _retabled(chunks: list[pb.RenderChunk], request, arrays: list[np.ndarray], **tables):
    """``chunks`` with their payload re-encoded from ``arrays`` and a header telling ``tables``."""
    wire = CODECS[request.codec]
    pieces, crc32 = encode_payload(wire, arrays, CHUNK_BYTES)
    header = pb.TensorHeader()
    header.CopyFrom(chunks[0].header)
    header.payload_bytes = sum(len(piece) for piece in pieces)
    header.decoded_bytes = sum(array.nbytes for array in arrays)
    header.payload_crc32 = crc32
    for name, value in tables.items():
        setattr(header, name, value)
    return list(reply_chunks(request.request_id, header, pieces, chunks[-1].weights,
                             chunks[-1].timings))


def test_a_profile_index_past_its_table_is_data_loss():
    request, chunks, _, _ = reply("profile_table")
    rows, cols = _profiles(1)
    arrays, tables = _tables(rows, cols)
    arrays[2] = arrays[2].copy()
    arrays[2][0, 0, 0] = tables["table_rows"]  # one past the last row: a lie a CRC cannot catch
    error = _fails(_retabled(chunks, request, arrays, **tables), request)
    assert "index past its table" in error.message


def test_tables_larger_than_the_request_can_need_are_data_loss():
    request, chunks, _, _ = reply("profile_table")
    rows, cols = _profiles(1)
    arrays, tables = _tables(rows, cols)
    points = BATCH * KEYPOINTS
    grown = np.zeros((points + 1, HEIGHT), "<f4")
    arrays[0] = grown
    error = _fails(_retabled(chunks, request, arrays, table_rows=points + 1,
                             table_cols=tables["table_cols"]), request)
    assert "more than the" in error.message
