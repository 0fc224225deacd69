"""Wire codecs: symmetric encode/decode pairs, registered by the proto ``Codec`` enum.

A codec packs a sequence of little-endian arrays into one payload and unpacks it into
preallocated arrays of the same shapes, so the receiver never allocates a second copy:

- ``zstd``: zstd (level 3, content size in each frame) of the arrays' bytes: one frame, or for
  a large tensor several concatenated frames that the server compressed in parallel.
- ``none``: the arrays' bytes as they are.
- ``separable``: ``zstd`` packing of the two float32 profile arrays ``rows (B, N, K, H)`` and
  ``cols (B, N, K, W)`` instead of the dense tensor; :func:`rebuild_dense` multiplies them out.
- ``profile_table``: ``zstd`` packing of the distinct profiles and an index per profile (four
  arrays: ``row_table``, ``col_table``, ``row_index``, ``col_index``; see ``layouts.py``).

The compressed codecs are ``checksummed``: the header carries the CRC-32 of the payload, checked
before decoding. That replaces zstd's own frame checksum, an XXH64 of the decoded bytes, which
cost ~2 ms per 36 MB tensor on each side; the CRC of its ~50 KB payload costs ~10 us.

Compressor objects are reused, one per thread (zstd contexts are not thread-safe).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import zstandard

from .vocabulary import CODEC_NAMES

__all__ = [
    "CODECS",
    "Codec",
    "CodecError",
    "codec_by_name",
    "gather_rows",
    "payload_crc32",
    "rebuild_dense",
]

ZSTD_LEVEL = 3


class CodecError(ValueError):
    """A payload that does not decode to the announced arrays (corrupt, truncated or too long)."""


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_content_size=True, write_checksum=False
        )
        _local.compressor = compressor
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = zstandard.ZstdDecompressor()
        _local.decompressor = decompressor
    return decompressor


def payload_crc32(pieces: Iterable[bytes | memoryview]) -> int:
    """CRC-32 of the concatenated pieces (zlib's, as ``TensorHeader.payload_crc32`` holds it)."""
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    return crc


def _byte_view(array: np.ndarray) -> memoryview:
    if not array.flags.c_contiguous:
        raise ValueError("arrays on the wire must be C-contiguous")
    if array.size == 0:
        return memoryview(b"")  # memoryview cannot cast a shape with zeros
    return memoryview(array.reshape(-1)).cast("B")


def _encode_raw(arrays: Sequence[np.ndarray]) -> bytes | memoryview:
    if len(arrays) == 1:
        return _byte_view(arrays[0])  # no copy: the chunks are cut straight from the array
    return b"".join(_byte_view(array) for array in arrays)


def _decode_raw(pieces: Iterable[bytes], outs: Sequence[np.ndarray]) -> None:
    targets = [_byte_view(out) for out in outs]
    target, position = 0, 0
    for piece in pieces:
        piece = memoryview(piece)
        while piece.nbytes:
            if target == len(targets):
                raise CodecError("payload: longer than the announced tensor")
            view = targets[target]
            take = min(piece.nbytes, view.nbytes - position)
            view[position : position + take] = piece[:take]
            piece = piece[take:]
            position += take
            if position == view.nbytes:
                target, position = target + 1, 0
    while target < len(targets) and targets[target].nbytes == 0:
        target += 1
    if target != len(targets):
        raise CodecError("payload: shorter than the announced tensor")


def _encode_zstd(arrays: Sequence[np.ndarray]) -> bytes:
    compressor = _compressor()
    if len(arrays) == 1:
        return compressor.compress(_byte_view(arrays[0]))
    total = sum(array.nbytes for array in arrays)
    stream = compressor.compressobj(size=total)
    parts = [stream.compress(_byte_view(array)) for array in arrays]
    parts.append(stream.flush())
    return b"".join(parts)


class _PieceReader:
    """A read()-able view over the payload pieces, for zstd's stream_reader (no concatenation)."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces = iter(pieces)

    def read(self, size: int = -1) -> bytes:
        return next(self._pieces, b"")


# Payloads decoding to at most this many bytes, in one piece, decode in one call and one copy per
# array (a stream reader's set-up costs more than the copies at this size).
_ONE_SHOT_BYTES = 1 << 20


def _decode_zstd(pieces: Iterable[bytes], outs: Sequence[np.ndarray]) -> None:
    if isinstance(pieces, list) and len(pieces) == 1:
        total = sum(out.nbytes for out in outs)
        if total <= _ONE_SHOT_BYTES and _decode_one_shot(pieces[0], outs, total):
            return
    reader = _decompressor().stream_reader(_PieceReader(pieces), read_across_frames=True)
    try:
        for out in outs:
            view = _byte_view(out)
            filled = 0
            while filled < view.nbytes:
                got = reader.readinto(view[filled:])
                if got == 0:
                    raise CodecError("payload: zstd frame shorter than the announced tensor")
                filled += got
        if reader.read(1):
            raise CodecError("payload: zstd frame longer than the announced tensor")
    except zstandard.ZstdError as error:
        raise CodecError(f"payload: corrupt zstd frame ({error})") from None
    finally:
        reader.close()


def _decode_one_shot(piece: bytes, outs: Sequence[np.ndarray], total: int) -> bool:
    """One zstd frame that says it holds exactly ``total`` bytes, into ``outs``; False (nothing
    written) for anything else, which the stream reader then decodes or refuses."""
    try:
        if zstandard.frame_content_size(piece) != total:
            return False
        data = _decompressor().decompress(piece, max_output_size=total)
    except zstandard.ZstdError:
        return False
    if len(data) != total:
        return False
    data, start = memoryview(data), 0  # slices of a memoryview copy nothing
    for out in outs:
        if out.size:  # an empty array's view is b"", read-only
            view = _byte_view(out)
            view[:] = data[start: start + view.nbytes]
            start += view.nbytes
    return True


@dataclass(frozen=True)
class Codec:
    """A wire codec: its name, the packing pair, whether it ships profiles and whether its
    payload travels with a CRC-32."""

    name: str
    encode: Callable[[Sequence[np.ndarray]], bytes | memoryview]
    decode: Callable[[Iterable[bytes], Sequence[np.ndarray]], None]
    separable: bool = False
    checksummed: bool = False

    @property
    def proto(self) -> int:
        return CODEC_NAMES.proto(self.name)


_CODECS = (
    Codec("zstd", _encode_zstd, _decode_zstd, checksummed=True),
    # Raw bytes are as large as the tensor: a CRC would cost more than TCP and TLS already check.
    Codec("none", _encode_raw, _decode_raw),
    Codec("separable", _encode_zstd, _decode_zstd, separable=True, checksummed=True),
    # The profiles' distinct rows and an index per profile (see layouts.ProfileTableLayout).
    Codec("profile_table", _encode_zstd, _decode_zstd, separable=True, checksummed=True),
)
# By proto value, UNSPECIFIED (0) included.
CODECS: dict[int, Codec] = {0: next(c for c in _CODECS if c.name == CODEC_NAMES.default)}
CODECS.update({codec.proto: codec for codec in _CODECS})


def codec_by_name(name: str) -> Codec:
    """The codec called ``name`` (``zstd``, ``none``, ``separable``).

    Raises:
        ArgumentError: a ``ValueError`` naming ``codec``.
    """
    return CODECS[CODEC_NAMES.proto(name)]


def rebuild_dense(rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Dense float32 heatmaps from separable profiles: one einsum, then max over instances.

    Args:
        rows: ``(B, N, K, H)`` float32; cols: ``(B, N, K, W)`` float32.
        out: optional ``(B, K, H, W)`` float32 array to write into.

    Returns:
        ``(B, K, H, W)`` float32, ``max_n rows[:, n, :, :, None] * cols[:, n, :, None, :]``.
    """
    batch, instances, keypoints, height = rows.shape
    width = cols.shape[-1]
    if out is None:
        out = np.empty((batch, keypoints, height, width), dtype=np.float32)
    if instances == 0 or out.size == 0:
        out.fill(0)
    elif instances == 1:
        np.einsum("bky,bkx->bkyx", rows[:, 0], cols[:, 0], out=out)
    else:
        # One instance at a time: an einsum over all of them would hold N dense tensors at once.
        np.einsum("bky,bkx->bkyx", rows[:, 0], cols[:, 0], out=out)
        scratch = np.empty_like(out)
        for instance in range(1, instances):
            np.einsum("bky,bkx->bkyx", rows[:, instance], cols[:, instance], out=scratch)
            np.maximum(out, scratch, out=out)
    return out


def gather_rows(table: np.ndarray, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``table[index]``: the profiles ``(*index.shape, L)`` of a profile table ``(R, L)``.

    Raises:
        CodecError: for an index past the table (damage, never a wrong row).
    """
    if out is None:
        out = np.empty((*index.shape, table.shape[1]), dtype=table.dtype)
    if index.size and int(index.max()) >= table.shape[0]:
        raise CodecError("payload: a profile index past its table")
    # Checked above, so "clip" clips nothing; "raise" would buffer a copy of the output.
    np.take(table, index.reshape(-1), axis=0, out=out.reshape(-1, table.shape[1]), mode="clip")
    return out
