"""A reply's payload, encoded on the encoder thread pool: compressed (or viewed), checksummed and
cut into chunk-sized pieces.

Pieces are views, never copies: each is copied once, into its chunk, when gRPC takes that chunk.
For codec ``none`` they are views of the rendered (pooled) buffer itself, which therefore stays
leased until the reply's last chunk is taken.

A large dense ``zstd`` payload is compressed as several frames at once, one slab of the tensor per
encoder thread, and the frames are concatenated: still one zstd stream, which the client reads
across frames. Compression is what a reply waits for longest (a 36 MB tensor takes ~4 ms on one
core), and each slab on its own core divides that wait.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np

from heatmap_client.wire import Codec, payload_crc32

__all__ = ["MIN_SLAB_BYTES", "EncodedPayload", "encode_payload", "encode_reply", "slabs"]

# Below this a slab costs more in thread hand-offs than its own core saves.
MIN_SLAB_BYTES = 1 << 20


class EncodedPayload(NamedTuple):
    """A reply's payload cut into chunk-sized pieces, and its CRC-32 for checksummed codecs."""

    pieces: list[memoryview]
    crc32: int | None

    @property
    def nbytes(self) -> int:
        return sum(len(piece) for piece in self.pieces)


def _cut(payload: bytes | memoryview, chunk_bytes: int) -> list[memoryview]:
    view = memoryview(payload)
    # An empty payload (B or K = 0, codec none) still makes a chunk: it carries header and weights.
    starts = range(0, max(len(view), 1), chunk_bytes)
    return [view[start : start + chunk_bytes] for start in starts]


def encode_payload(codec: Codec, arrays: list[np.ndarray], chunk_bytes: int) -> EncodedPayload:
    """The whole payload in one task: compresses (or views), checksums and cuts it."""
    payload = codec.encode(arrays)
    crc32 = payload_crc32([payload]) if codec.checksummed else None
    return EncodedPayload(_cut(payload, chunk_bytes), crc32)


def slabs(codec: Codec, arrays: list[np.ndarray], workers: int) -> list[np.ndarray] | None:
    """The arrays (the dense tensor, or SimCC's x then y labels) cut in order into about
    ``workers`` slabs of at least ``MIN_SLAB_BYTES``, one zstd frame each; None when a single
    frame is the better choice."""
    if codec.name != "zstd" or workers < 2:
        return None
    total = sum(array.nbytes for array in arrays)
    count = min(workers, total // MIN_SLAB_BYTES)
    if count < 2:
        return None
    parts = []
    for array in arrays:
        if array.size == 0:
            continue
        # Each array gets its share of the slabs, so that the frames are of similar sizes.
        share = max(1, min(round(count * array.nbytes / total), array.nbytes // MIN_SLAB_BYTES))
        parts.extend(np.array_split(array.reshape(-1), share))
    return parts


async def encode_reply(
    codec: Codec, arrays: list[np.ndarray], chunk_bytes: int, encoders: Executor, workers: int
) -> EncodedPayload:
    """Encodes on ``encoders`` (``workers`` threads), in slabs where that pays."""
    loop = asyncio.get_running_loop()
    parts = slabs(codec, arrays, workers)
    if parts is None:
        return await loop.run_in_executor(encoders, encode_payload, codec, arrays, chunk_bytes)
    frames = await asyncio.gather(
        *(loop.run_in_executor(encoders, codec.encode, [part]) for part in parts)
    )
    return EncodedPayload(_cut(b"".join(frames), chunk_bytes), payload_crc32(frames))
