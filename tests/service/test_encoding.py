"""Reply payloads on the encoder pool: a large dense tensor is compressed in slabs, one zstd frame
each, and the client decodes the concatenated frames to the very same tensor."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from heatmap_client.wire import codec_by_name, payload_crc32
from heatmap_server.encoding import MIN_SLAB_BYTES, encode_reply, slabs

CHUNK_BYTES = 1 << 20


def _heatmaps(nbytes: int, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).uniform(0, 1, nbytes // 4).astype(np.float32)
    values[values < 0.9] = 0  # heatmaps are mostly zero
    return values.reshape(-1, 4, 8, 8)


def test_small_tensors_single_workers_and_other_codecs_get_one_frame():
    zstd = codec_by_name("zstd")
    assert slabs(zstd, [_heatmaps(2 * MIN_SLAB_BYTES - 1024)], workers=8) is None
    assert slabs(zstd, [_heatmaps(8 * MIN_SLAB_BYTES)], workers=1) is None
    for name in ("none", "separable"):
        assert slabs(codec_by_name(name), [_heatmaps(8 * MIN_SLAB_BYTES)], workers=8) is None


def test_slabs_cover_the_tensor_once_in_order():
    tensor = _heatmaps(5 * MIN_SLAB_BYTES)
    parts = slabs(codec_by_name("zstd"), [tensor], workers=8)
    assert len(parts) == 5
    assert all(part.nbytes >= MIN_SLAB_BYTES and part.flags.c_contiguous for part in parts)
    np.testing.assert_array_equal(np.concatenate(parts), tensor.reshape(-1))
    assert len(slabs(codec_by_name("zstd"), [tensor], workers=3)) == 3


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_reply_encoded_in_slabs_decodes_to_the_same_tensor(workers):
    tensor = _heatmaps(6 * MIN_SLAB_BYTES, seed=workers)
    codec = codec_by_name("zstd")
    with ThreadPoolExecutor(workers) as encoders:
        pieces, crc32 = asyncio.run(encode_reply(codec, [tensor], CHUNK_BYTES, encoders, workers))
    assert all(len(piece) <= CHUNK_BYTES for piece in pieces)
    assert crc32 == payload_crc32(pieces)
    single = codec.encode([tensor])
    assert (b"".join(pieces) == single) == (workers == 1)  # several frames unless one worker
    decoded = np.empty_like(tensor)
    codec.decode(pieces, [decoded])
    np.testing.assert_array_equal(decoded, tensor)


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_two_arrays_are_cut_in_order_and_decode_to_the_same_arrays(workers):
    """SimCC's x then y labels: each array's own slabs, x's first."""
    x_labels = _heatmaps(3 * MIN_SLAB_BYTES, seed=1).reshape(-1, 96)
    y_labels = _heatmaps(5 * MIN_SLAB_BYTES, seed=2).reshape(-1, 128)
    codec = codec_by_name("zstd")
    parts = slabs(codec, [x_labels, y_labels], workers)
    assert 2 <= len(parts) <= workers + 1
    np.testing.assert_array_equal(
        np.concatenate(parts), np.concatenate([x_labels.reshape(-1), y_labels.reshape(-1)])
    )
    with ThreadPoolExecutor(workers) as encoders:
        pieces, crc32 = asyncio.run(
            encode_reply(codec, [x_labels, y_labels], CHUNK_BYTES, encoders, workers)
        )
    assert crc32 == payload_crc32(pieces)
    decoded = [np.empty_like(x_labels), np.empty_like(y_labels)]
    codec.decode(pieces, decoded)
    np.testing.assert_array_equal(decoded[0], x_labels)
    np.testing.assert_array_equal(decoded[1], y_labels)
