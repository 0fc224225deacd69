"""Requests out, results in: building ``RenderRequest`` messages and assembling reply chunks.

Shared by the sync and asyncio clients, so both speak the wire identically. Decoding writes
straight into a preallocated array (or the caller's ``out``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from ._codecs import (
    CODECS,
    CodecError,
    codec_by_name,
    has_frame_checksum,
    payload_crc32,
    rebuild_dense,
)
from ._dtypes import DTYPES, WireDType, dequantize, dtype_by_name, quantize
from ._errors import HeatmapError
from ._tensors import FLOAT32_LE, array_from_tensor, tensor_from_array

__all__ = [
    "RenderResult",
    "Timings",
    "build_request",
    "result_from_chunks",
]

_METHODS = {
    "seed": pb.METHOD_SEED,
    "msra": pb.METHOD_MSRA,
    "udp": pb.METHOD_UDP,
    "dark": pb.METHOD_DARK,
}
_COORDS = {
    "heatmap": pb.COORDINATE_SPACE_HEATMAP,
    "pixel": pb.COORDINATE_SPACE_PIXEL,
    "normalized": pb.COORDINATE_SPACE_NORMALIZED,
}


def _choice(table: dict[str, int], value: str, name: str) -> int:
    if value not in table:
        raise ValueError(f"{name}: expected one of {', '.join(table)}, got {value!r}")
    return table[value]


def build_request(
    keypoints: Any,
    *,
    size: tuple[int, int],
    sigma: Any,
    method: str = "msra",
    coords: str = "heatmap",
    input_size: tuple[int, int] | None = None,
    visibility: Any = None,
    dtype: str = "float32",
    codec: str = "zstd",
    request_id: int = 0,
) -> pb.RenderRequest:
    """A ``RenderRequest`` for :meth:`HeatmapClient.render`'s arguments (checked by the server)."""
    height, width = size
    request = pb.RenderRequest(
        request_id=request_id,
        keypoints=tensor_from_array(keypoints, "keypoints"),
        height=height,
        width=width,
        method=_choice(_METHODS, method, "method"),
        coordinate_space=_choice(_COORDS, coords, "coords"),
        dtype=dtype_by_name(dtype).proto,
        codec=codec_by_name(codec).proto,
    )
    if np.ndim(sigma) == 0:
        request.sigma = float(sigma)
    else:
        request.sigmas.extend(float(value) for value in np.asarray(sigma, dtype=np.float64).ravel())
    if visibility is not None:
        request.visibility.CopyFrom(tensor_from_array(visibility, "visibility"))
    if input_size is not None:
        request.input_height, request.input_width = input_size
    return request


@dataclass(frozen=True)
class Timings:
    """Server-side microseconds for one request, and how many requests shared its device call."""

    queue_us: int
    render_us: int
    encode_us: int
    total_us: int
    coalesced_requests: int


@dataclass
class RenderResult:
    """One rendered batch.

    Attributes:
        heatmaps: ``(B, K, H, W)`` numpy array, float32 unless ``keep_dtype`` was asked for (then the
            wire storage: float16, uint16 / uint8 fixed point, or bfloat16 as its uint16 bits).
        weights: float32 ``(B, K)`` or ``(B, N, K)``.
        dtype: the wire dtype's name.
        timings: the server's :class:`Timings`.
        wire_bytes: payload bytes received for the heatmaps.
    """

    heatmaps: np.ndarray
    weights: np.ndarray
    dtype: str
    timings: Timings
    wire_bytes: int
    request_id: int = field(default=0)

    def to_torch(self):
        """``(heatmaps, weights)`` as torch tensors sharing memory (bfloat16 bits become bfloat16)."""
        try:
            import torch
        except ImportError:
            raise ImportError("to_torch() needs torch: pip install 'heatmap-client[torch]'") from None
        heatmaps = torch.from_numpy(self.heatmaps)
        if self.dtype == "bfloat16" and self.heatmaps.dtype == np.uint16:
            heatmaps = heatmaps.view(torch.bfloat16)
        return heatmaps, torch.from_numpy(self.weights)


def _check_out(out: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        got = (getattr(out, "shape", None), getattr(out, "dtype", None))
        raise ValueError(f"out: expected a {dtype} array of shape {shape}, got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: must be C-contiguous and writeable")


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError):
        # Only a corrupt header asks for more than this process can hold.
        raise CodecError(f"header: shape {list(shape)} is too large to allocate") from None


def _decode(
    header: pb.TensorHeader, pieces: list[bytes], keep_dtype: bool, out: np.ndarray | None
) -> np.ndarray:
    codec = CODECS.get(header.codec)
    wire: WireDType | None = DTYPES.get(header.dtype)
    if codec is None or wire is None or len(header.shape) != 4 or min(header.shape, default=0) < 0:
        raise CodecError("header: unknown codec or dtype, or a shape that is not (B, K, H, W)")
    if codec.checksummed:
        # Checked before decoding, so a damaged payload never reaches ``out``.
        if header.HasField("payload_crc32"):
            if payload_crc32(pieces) != header.payload_crc32:
                raise CodecError("payload: CRC-32 mismatch, the bytes were damaged on the way")
        elif not has_frame_checksum(pieces):
            raise CodecError(
                f"header: no payload_crc32, and the {codec.name} frame has no checksum of its own"
            )
    shape = tuple(int(side) for side in header.shape)
    result_dtype = wire.storage if keep_dtype else np.dtype(np.float32)
    if out is not None:
        _check_out(out, shape, result_dtype)
    if codec.separable:
        batch, keypoints, height, width = shape
        instances = int(header.instances)
        if instances < 0:
            raise CodecError("header: negative instance count")
        rows = _empty((batch, instances, keypoints, height), FLOAT32_LE)
        cols = _empty((batch, instances, keypoints, width), FLOAT32_LE)
        codec.decode(pieces, [rows, cols])
        into_out = out is not None and wire.name == "float32"
        dense = rebuild_dense(rows, cols, out if into_out else _empty(shape, np.dtype(np.float32)))
        if wire.name == "float32":
            return dense
        stored = quantize(dense, wire)
    else:
        if keep_dtype or wire.name == "float32":
            stored = out if out is not None else _empty(shape, wire.storage)
            codec.decode(pieces, [stored])
            return stored
        stored = _empty(shape, wire.storage)
        codec.decode(pieces, [stored])
    if keep_dtype:
        if out is None:
            return stored
        np.copyto(out, stored)
        return out
    return dequantize(stored, wire, out if out is not None else _empty(shape, np.dtype(np.float32)))


def _check_against_request(
    header: pb.TensorHeader, last: pb.RenderChunk, request: pb.RenderRequest
) -> None:
    """A reply must be the one ``request`` asked for: its shape, dtype, codec, instances, weights'
    shape and request id."""
    keypoints = tuple(request.keypoints.shape)
    if len(keypoints) not in (3, 4):
        raise HeatmapError(grpc.StatusCode.DATA_LOSS, "reply: to a request the server should refuse")
    expected = dict(
        shape=[keypoints[0], keypoints[-2], request.height, request.width],
        dtype=DTYPES[request.dtype].proto if request.dtype in DTYPES else request.dtype,
        codec=CODECS[request.codec].proto if request.codec in CODECS else request.codec,
        instances=keypoints[1] if len(keypoints) == 4 else 1,
        weights=list(keypoints[:-1]),
        request_id=request.request_id,
    )
    got = dict(shape=list(header.shape), dtype=header.dtype, codec=header.codec,
               instances=header.instances, weights=list(last.weights.shape),
               request_id=last.request_id)
    wrong = [name for name in expected if got[name] != expected[name]]
    if wrong:
        details = ", ".join(f"{name} {got[name]} (asked {expected[name]})" for name in wrong)
        raise HeatmapError(
            grpc.StatusCode.DATA_LOSS, f"reply: does not match the request: {details}"
        )


def result_from_chunks(
    chunks: Iterable[pb.RenderChunk],
    *,
    keep_dtype: bool = False,
    out: np.ndarray | None = None,
    request: pb.RenderRequest | None = None,
) -> RenderResult:
    """Assembles one reply (header chunk ... last chunk) into a :class:`RenderResult`.

    With ``request``, the reply must also be the one it asked for (shape, dtype, codec, instances,
    weights' shape, request id): a header that lies consistently cannot pass off a wrong tensor.

    Raises:
        HeatmapError: ``DATA_LOSS`` when the chunks are inconsistent or the payload corrupt.
    """
    header: pb.TensorHeader | None = None
    pieces: list[bytes] = []
    received = 0
    last: pb.RenderChunk | None = None
    for chunk in chunks:
        if header is None:
            if not chunk.HasField("header"):
                raise HeatmapError(grpc.StatusCode.DATA_LOSS, "reply: first chunk has no header")
            header = chunk.header
        pieces.append(chunk.data)
        received += len(chunk.data)
        if chunk.last:
            last = chunk
            break
    if header is None or last is None:
        raise HeatmapError(grpc.StatusCode.DATA_LOSS, "reply: stream ended before its last chunk")
    if received != header.payload_bytes:
        raise HeatmapError(
            grpc.StatusCode.DATA_LOSS,
            f"reply: received {received} payload bytes, header announced {header.payload_bytes}",
        )
    if request is not None:
        _check_against_request(header, last, request)
    try:
        weights = array_from_tensor(last.weights, "weights")
    except ValueError as error:
        raise HeatmapError(grpc.StatusCode.DATA_LOSS, str(error)) from None
    shape = tuple(header.shape)
    if len(shape) == 4 and weights.shape not in ((shape[0], shape[1]),
                                                 (shape[0], header.instances, shape[1])):
        raise HeatmapError(
            grpc.StatusCode.DATA_LOSS,
            f"reply: weights of shape {list(weights.shape)} for heatmaps of shape {list(shape)}",
        )
    try:
        heatmaps = _decode(header, pieces, keep_dtype, out)
    except CodecError as error:
        raise HeatmapError(grpc.StatusCode.DATA_LOSS, str(error)) from None
    timings = last.timings
    return RenderResult(
        heatmaps=heatmaps,
        weights=weights,
        dtype=DTYPES[header.dtype].name,
        timings=Timings(
            queue_us=timings.queue_us,
            render_us=timings.render_us,
            encode_us=timings.encode_us,
            total_us=timings.total_us,
            coalesced_requests=timings.coalesced_requests,
        ),
        wire_bytes=received,
        request_id=last.request_id,
    )
