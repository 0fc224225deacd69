"""Replies in: one reply's chunks checked against its request and decoded into a result.

A reply must be the one its request asked for (target, shapes, dtype, codec, instances, weights'
shape, request id), so a header that lies consistently cannot pass off a wrong tensor, and the
payload may never exceed what that request can need. Decoding writes straight into a preallocated
array (or the caller's ``out``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import grpc
import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from .._errors import HeatmapError
from ..results import ProfilesResult, RenderResult, SimccResult, Timings
from .codecs import CODECS, Codec, CodecError, payload_crc32, rebuild_dense
from .dtypes import DTYPES, WireDType, dequantize, quantize
from .framing import FramingError, Reply, ReplyReader, compressed_bound
from .tensors import FLOAT32_LE, array_from_tensor
from .vocabulary import TARGETS

__all__ = ["PendingReply", "profiles_from_chunks", "result_from_chunks", "unanswered"]


def _data_loss(message: str) -> HeatmapError:
    return HeatmapError(grpc.StatusCode.DATA_LOSS, message)


class _Expected:
    """What a reply to ``request`` must look like, and the most payload it can carry."""

    def __init__(self, request: pb.RenderRequest):
        keypoints = tuple(request.keypoints.shape)
        self.target = TARGETS.name(request.target)
        if (
            len(keypoints) not in (3, 4) or request.dtype not in DTYPES
            or request.codec not in CODECS or self.target is None
        ):
            raise _data_loss("reply: to a request the server should refuse")
        self.codec: Codec = CODECS[request.codec]
        self.wire: WireDType = DTYPES[request.dtype]
        batch, count = keypoints[0], keypoints[-2]
        self.instances = keypoints[1] if len(keypoints) == 4 else 1
        self.weights = list(keypoints[:-1])
        self.request_id = request.request_id
        self.y_shape: tuple[int, ...] = ()
        if self.simcc:
            self.shape, self.y_shape = _label_shapes(request)
            decoded = (math.prod(self.shape) + math.prod(self.y_shape)) * self.wire.itemsize
        elif self.codec.separable:
            self.shape = (batch, count, request.height, request.width)
            decoded = batch * self.instances * count * (request.height + request.width) * 4
        else:
            self.shape = (batch, count, request.height, request.width)
            decoded = math.prod(self.shape) * self.wire.itemsize
        self.decoded_bytes = decoded
        self.max_payload = compressed_bound(decoded) if self.codec.checksummed else decoded

    @property
    def simcc(self) -> bool:
        return self.target == "simcc"

    def check(self, reply: Reply) -> None:
        header, last = reply.header, reply.last
        expected = dict(
            target=self.target, shape=list(self.shape), y_labels_shape=list(self.y_shape),
            dtype=self.wire.proto, codec=self.codec.proto, instances=self.instances,
            weights=self.weights, request_id=self.request_id, decoded_bytes=self.decoded_bytes,
        )
        got = dict(
            target=TARGETS.name(header.target), shape=list(header.shape),
            y_labels_shape=list(header.y_labels_shape), dtype=header.dtype, codec=header.codec,
            instances=header.instances, weights=list(last.weights.shape),
            request_id=last.request_id, decoded_bytes=header.decoded_bytes,
        )
        wrong = [name for name in expected if got[name] != expected[name]]
        if wrong:
            details = ", ".join(f"{name} {got[name]} (asked {expected[name]})" for name in wrong)
            raise _data_loss(f"reply: does not match the request: {details}")


def _label_shapes(request: pb.RenderRequest) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The x and y label shapes a SimCC request asks for (lengths half to even, as mmpose)."""
    ratio = request.simcc.split_ratio
    if request.codec not in CODECS or CODECS[request.codec].separable or not 0 < ratio < math.inf:
        raise _data_loss("reply: to a request the server should refuse")
    lead = tuple(request.keypoints.shape)[:-1]
    width = round(request.input_width * ratio)
    height = round(request.input_height * ratio)
    return (*lead, width), (*lead, height)


def _check_payload(reply: Reply, expected: _Expected) -> None:
    expected.check(reply)
    if expected.codec.checksummed:
        # Checked before decoding, so a damaged payload never reaches ``out``.
        if not reply.header.HasField("payload_crc32"):
            raise _data_loss(f"header: no payload_crc32 for codec {expected.codec.name}")
        if payload_crc32(reply.pieces) != reply.header.payload_crc32:
            raise _data_loss("payload: CRC-32 mismatch, the bytes were damaged on the way")


def _weights(reply: Reply) -> np.ndarray:
    try:
        return array_from_tensor(reply.last.weights, "weights")
    except ValueError as error:
        raise _data_loss(str(error)) from None


def _timings(reply: Reply) -> Timings:
    timings = reply.last.timings
    return Timings(
        queue_us=timings.queue_us,
        render_us=timings.render_us,
        encode_us=timings.encode_us,
        total_us=timings.total_us,
        coalesced_requests=timings.coalesced_requests,
    )


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
        raise CodecError(f"header: shape {list(shape)} is too large to allocate") from None


def _profiles(reply: Reply, expected: _Expected) -> tuple[np.ndarray, np.ndarray]:
    batch, count, height, width = expected.shape
    rows = _empty((batch, expected.instances, count, height), FLOAT32_LE)
    cols = _empty((batch, expected.instances, count, width), FLOAT32_LE)
    expected.codec.decode(reply.pieces, [rows, cols])
    return rows, cols


def _labels(reply: Reply, expected: _Expected) -> tuple[np.ndarray, np.ndarray]:
    """The x and y labels as float32, decoded from one payload (x's bytes, then y's)."""
    wire = expected.wire
    labels = [_empty(expected.shape, wire.storage), _empty(expected.y_shape, wire.storage)]
    expected.codec.decode(reply.pieces, labels)
    if wire.name == "float32":
        return labels[0], labels[1]
    return dequantize(labels[0], wire), dequantize(labels[1], wire)


def _dense(
    reply: Reply, expected: _Expected, keep_dtype: bool, out: np.ndarray | None
) -> np.ndarray:
    wire, shape = expected.wire, expected.shape
    result_dtype = wire.storage if keep_dtype else np.dtype(np.float32)
    if out is not None:
        _check_out(out, shape, result_dtype)
    if expected.codec.separable:
        rows, cols = _profiles(reply, expected)
        into_out = out is not None and wire.name == "float32"
        dense = rebuild_dense(rows, cols, out if into_out else _empty(shape, np.dtype(np.float32)))
        if wire.name == "float32":
            return dense
        stored = quantize(dense, wire)
    elif keep_dtype or wire.name == "float32":
        stored = out if out is not None else _empty(shape, wire.storage)
        expected.codec.decode(reply.pieces, [stored])
        return stored
    else:
        stored = _empty(shape, wire.storage)
        expected.codec.decode(reply.pieces, [stored])
    if keep_dtype:
        if out is None:
            return stored
        np.copyto(out, stored)
        return out
    return dequantize(stored, wire, out if out is not None else _empty(shape, np.dtype(np.float32)))


class PendingReply:
    """The reply to one request, read chunk by chunk (from a blocking or an asyncio loop).

    Args:
        request: what was asked; the reply must match it and is bounded by it.
        profiles: return the ``separable`` profiles as a :class:`ProfilesResult`.
        keep_dtype, out: as :meth:`HeatmapClient.render` (heatmaps only).

    A SimCC (``target="simcc"``) request's reply is a :class:`SimccResult`.
    """

    def __init__(
        self,
        request: pb.RenderRequest,
        *,
        profiles: bool = False,
        keep_dtype: bool = False,
        out: np.ndarray | None = None,
    ):
        self.request = request
        self._expected = _Expected(request)
        if profiles and not self._expected.codec.separable:
            raise ValueError("request: profiles travel with codec 'separable'")
        if self._expected.simcc and (keep_dtype or out is not None):
            raise ValueError("request: SimCC labels come as float32, without keep_dtype or out")
        self._reader = ReplyReader(self._expected.max_payload)
        self._profiles = profiles
        self._keep_dtype = keep_dtype
        self._out = out

    def feed(self, chunk: pb.RenderChunk) -> RenderResult | ProfilesResult | SimccResult | None:
        """Takes the next chunk; returns the result once ``chunk`` is the reply's last.

        Raises:
            HeatmapError: ``DATA_LOSS`` when the chunks are inconsistent, the payload corrupt or
                too long, or the reply not the one the request asked for.
        """
        try:
            reply = self._reader.feed(chunk)
        except FramingError as error:
            raise _data_loss(str(error)) from None
        if reply is None:
            return None
        expected = self._expected
        _check_payload(reply, expected)
        weights = _weights(reply)
        try:
            if expected.simcc:
                x_labels, y_labels = _labels(reply, expected)
                return SimccResult(
                    x_labels=x_labels, y_labels=y_labels, weights=weights,
                    dtype=expected.wire.name, timings=_timings(reply),
                    wire_bytes=reply.payload_bytes, request_id=reply.last.request_id,
                )
            if self._profiles:
                rows, cols = _profiles(reply, expected)
                return ProfilesResult(
                    rows=rows, cols=cols, weights=weights, timings=_timings(reply),
                    wire_bytes=reply.payload_bytes, request_id=reply.last.request_id,
                )
            heatmaps = _dense(reply, expected, self._keep_dtype, self._out)
        except CodecError as error:
            raise _data_loss(str(error)) from None
        return RenderResult(
            heatmaps=heatmaps, weights=weights, dtype=expected.wire.name,
            timings=_timings(reply), wire_bytes=reply.payload_bytes,
            request_id=reply.last.request_id,
        )


def unanswered(pending: Sequence[PendingReply]) -> HeatmapError:
    """``DATA_LOSS`` for a stream the server ended (with OK) before it answered every request:
    ``pending`` are the requests sent and not answered."""
    if pending:
        return _data_loss(
            f"reply: the stream ended before the reply to request {pending[0].request.request_id}"
        )
    return _data_loss("reply: the stream ended before every request was sent")


def _read_all(chunks: Iterable[pb.RenderChunk], pending: PendingReply):
    for chunk in chunks:
        result = pending.feed(chunk)
        if result is not None:
            return result
    raise _data_loss("reply: stream ended before its last chunk")


def result_from_chunks(
    chunks: Iterable[pb.RenderChunk],
    *,
    request: pb.RenderRequest,
    keep_dtype: bool = False,
    out: np.ndarray | None = None,
) -> RenderResult:
    """One reply (header chunk ... last chunk) to ``request`` as a :class:`RenderResult`; reading
    stops at its last chunk.

    Raises:
        HeatmapError: ``DATA_LOSS`` as :meth:`PendingReply.feed`, or when the chunks end early.
    """
    return _read_all(chunks, PendingReply(request, keep_dtype=keep_dtype, out=out))


def profiles_from_chunks(
    chunks: Iterable[pb.RenderChunk], *, request: pb.RenderRequest
) -> ProfilesResult:
    """One ``separable`` reply to ``request`` as a :class:`ProfilesResult` (no dense tensor).

    Raises:
        HeatmapError: ``DATA_LOSS`` as :func:`result_from_chunks`.
    """
    return _read_all(chunks, PendingReply(request, profiles=True))
