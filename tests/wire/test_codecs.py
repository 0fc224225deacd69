"""Every codec round-trips every dtype; broken payloads raise CodecError, never a wrong tensor."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import (
    CODECS,
    WIRE_DTYPES,
    CodecError,
    codec_by_name,
    dequantize,
    dtype_by_name,
    payload_crc32,
    quantize,
    rebuild_dense,
)

DTYPE_NAMES = ["float32", "float16", "bfloat16", "uint16", "uint8"]


def _heatmaps(shape=(3, 5, 20, 16), seed=0) -> np.ndarray:
    values = np.random.default_rng(seed).uniform(0, 1, size=shape).astype(np.float32)
    values[values < 0.7] = 0  # heatmaps are mostly zero
    return values


def _pieces(payload: bytes, size: int) -> list[bytes]:
    return [payload[start : start + size] for start in range(0, len(payload), size)] or [b""]


@pytest.mark.parametrize("piece_size", [1 << 20, 1000, 7])
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_dense_round_trip(codec, dtype, piece_size):
    wire = dtype_by_name(dtype)
    stored = quantize(_heatmaps(), wire)
    payload = codec_by_name(codec).encode([stored])
    decoded = np.empty_like(stored)
    codec_by_name(codec).decode(_pieces(payload, piece_size), [decoded])
    np.testing.assert_array_equal(decoded, stored)


@pytest.mark.parametrize("piece_size", [1 << 20, 1000, 7])
def test_zstd_decodes_concatenated_frames(piece_size):
    stored = _heatmaps((4, 5, 20, 16))
    flat = stored.reshape(-1)
    zstd = codec_by_name("zstd")
    payload = b"".join(zstd.encode([part]) for part in np.array_split(flat, 3))
    decoded = np.empty_like(stored)
    zstd.decode(_pieces(payload, piece_size), [decoded])
    np.testing.assert_array_equal(decoded, stored)


@pytest.mark.parametrize("instances", [0, 1, 3])
def test_separable_round_trip_rebuilds_the_max_over_instances(instances):
    rng = np.random.default_rng(instances)
    rows = rng.uniform(0, 1, size=(2, instances, 4, 12)).astype(np.float32)
    cols = rng.uniform(0, 1, size=(2, instances, 4, 9)).astype(np.float32)
    codec = CODECS[pb.CODEC_SEPARABLE]
    payload = codec.encode([rows, cols])
    got_rows, got_cols = np.empty_like(rows), np.empty_like(cols)
    codec.decode(_pieces(payload, 100), [got_rows, got_cols])
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_cols, cols)
    dense = rebuild_dense(got_rows, got_cols)
    expected = np.zeros((2, 4, 12, 9), np.float32)
    for n in range(instances):
        expected = np.maximum(expected, rows[:, n, :, :, None] * cols[:, n, :, None, :])
    np.testing.assert_array_equal(dense, expected)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_quantize_dequantize_error_bounds(dtype):
    wire = dtype_by_name(dtype)
    values = np.random.default_rng(3).uniform(0, 1, size=10_000).astype(np.float32)
    values[:3] = [0.0, 1.0, 0.5]
    restored = dequantize(quantize(values, wire), wire)
    bound = {"float32": 0, "float16": 2**-11, "bfloat16": 2**-8, "uint16": 0.5 / 65535,
             "uint8": 0.5 / 255}[dtype]
    assert np.max(np.abs(restored - values)) <= bound + 1e-7
    assert restored[0] == 0.0 and restored[1] == 1.0


def test_bfloat16_bits_match_torch():
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(4).uniform(0, 1, size=5000).astype(np.float32)
    ours = quantize(values, dtype_by_name("bfloat16"))
    theirs = torch.from_numpy(values).to(torch.bfloat16).view(torch.uint16).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_every_proto_value_has_a_codec_and_dtype():
    assert set(pb.Codec.values()) == set(CODECS)
    assert set(pb.DType.values()) == set(WIRE_DTYPES)


def _zstd_payload() -> tuple[bytes, np.ndarray]:
    stored = _heatmaps((2, 3, 16, 16))
    return codec_by_name("zstd").encode([stored]), stored


def test_a_broken_zstd_frame_header_is_detected():
    payload, stored = _zstd_payload()
    broken = bytearray(payload)
    broken[0] ^= 0x5A  # the frame's magic number
    with pytest.raises(CodecError, match="payload"):
        codec_by_name("zstd").decode([bytes(broken)], [np.empty_like(stored)])


@pytest.mark.parametrize("piece_size", [1 << 20, 1000, 7])
def test_payload_crc32_is_zlibs_crc_of_the_whole_payload_however_it_is_cut(piece_size):
    payload, _ = _zstd_payload()
    assert payload_crc32(_pieces(payload, piece_size)) == zlib.crc32(payload)


def test_every_single_bit_flip_changes_the_payload_crc32():
    # The frames carry no checksum of their own; the header's CRC-32 is what catches damage.
    payload, _ = _zstd_payload()
    expected = payload_crc32([payload])
    for position in range(len(payload)):
        for bit in range(8):
            broken = bytearray(payload)
            broken[position] ^= 1 << bit
            assert payload_crc32([bytes(broken)]) != expected, (position, bit)


def test_only_the_compressed_codecs_are_checksummed():
    assert {codec.name for codec in CODECS.values() if codec.checksummed} == {
        "zstd", "separable", "profile_table"}


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_truncated_payload_is_detected(codec):
    stored = _heatmaps((2, 3, 16, 16))
    payload = codec_by_name(codec).encode([stored])
    with pytest.raises(CodecError, match="shorter"):
        codec_by_name(codec).decode([payload[: len(payload) // 2]], [np.empty_like(stored)])


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_overlong_payload_is_detected(codec):
    stored = _heatmaps((2, 3, 16, 16))
    payload = codec_by_name(codec).encode([stored])
    with pytest.raises(CodecError, match="longer"):
        codec_by_name(codec).decode([payload, payload], [np.empty_like(stored)])


def test_unknown_names_raise_value_error_naming_the_field():
    with pytest.raises(ValueError, match="^codec:"):
        codec_by_name("gzip")
    with pytest.raises(ValueError, match="^dtype:"):
        dtype_by_name("float64")
