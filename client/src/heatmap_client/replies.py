"""Replies in: one reply's chunks checked against its request and decoded into a result.

A reply must be the one its request asked for (its :class:`~heatmap_client.wire.ReplyLayout`:
target, shapes, dtype, codec, instances, weights' shape, request id), so a header that lies
consistently cannot pass off a wrong tensor, and the payload may never exceed what that request
can need. Decoding writes straight into the result's arrays (or the caller's ``out``): one copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
import numpy as np

from heatmap.v1 import heatmap_pb2 as pb

from ._errors import HeatmapError
from .results import ProfilesResult, RenderResult, SimccResult, Timings
from .wire.codecs import CodecError, gather_rows, payload_crc32, rebuild_dense
from .wire.dtypes import dequantize, quantize
from .wire.framing import FramingError, ReceivedReply, ReplyReader
from .wire.layouts import ProfileTableLayout, ReplyLayout, SimccLayout, layout_of
from .wire.tensors import array_from_tensor
from .wire.vocabulary import TARGETS, ArgumentError

__all__ = ["PendingReply", "result_from_chunks", "unanswered"]


def _data_loss(message: str) -> HeatmapError:
    return HeatmapError(grpc.StatusCode.DATA_LOSS, message)


def _expected(layout: ReplyLayout, request_id: int, header: pb.TensorHeader) -> dict:
    """What the reply's header and last chunk must say, field by field."""
    shapes = layout.header_shapes()
    try:
        decoded_bytes = layout.decoded_bytes_for(header)
    except ValueError as error:
        raise _data_loss(str(error)) from None
    return dict(
        target=layout.target, shape=shapes["shape"],
        y_labels_shape=shapes.get("y_labels_shape", []), dtype=layout.wire.proto,
        codec=layout.codec.proto, instances=layout.instances, weights=list(layout.lead),
        request_id=request_id, decoded_bytes=decoded_bytes,
    )


def _check_header(reply: ReceivedReply, layout: ReplyLayout, request_id: int) -> None:
    header, last = reply.header, reply.last
    expected = _expected(layout, request_id, header)
    got = dict(
        target=TARGETS.name(header.target), shape=header.shape,
        y_labels_shape=header.y_labels_shape, dtype=header.dtype, codec=header.codec,
        instances=header.instances, weights=last.weights.shape, request_id=last.request_id,
        decoded_bytes=header.decoded_bytes,
    )
    wrong = [name for name, value in expected.items() if got[name] != value]
    if wrong:
        details = ", ".join(f"{name} {list(got[name]) if name in _LISTS else got[name]} "
                            f"(asked {expected[name]})" for name in wrong)
        raise _data_loss(f"reply: does not match the request: {details}")
    if layout.codec.checksummed:
        # Checked before decoding, so a damaged payload never reaches ``out``.
        if not header.HasField("payload_crc32"):
            raise _data_loss(f"header: no payload_crc32 for codec {layout.codec.name}")
        if payload_crc32(reply.pieces) != header.payload_crc32:
            raise _data_loss("payload: CRC-32 mismatch, the bytes were damaged on the way")


_LISTS = ("shape", "y_labels_shape", "weights")


def _timings(reply: ReceivedReply) -> Timings:
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
        raise ArgumentError("out", f"expected a {dtype} array of shape {shape}, got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ArgumentError("out", "must be C-contiguous and writeable")


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError):
        raise CodecError(f"header: shape {list(shape)} is too large to allocate") from None


def _decoded(reply: ReceivedReply, layout: ReplyLayout) -> list[np.ndarray]:
    """The payload's arrays, as the layout and the header have them, each written once."""
    arrays = [_empty(shape, dtype) for shape, dtype in layout.arrays(reply.header)]
    layout.codec.decode(reply.pieces, arrays)
    return arrays


class PendingReply:
    """The reply to one request, read chunk by chunk (from a blocking or an asyncio loop).

    Args:
        request: what was asked; the reply must match it and is bounded by it.
        profiles: return the ``separable`` profiles as a :class:`ProfilesResult`.
        keep_dtype, out: as :meth:`HeatmapClient.render` (heatmaps only).

    A SimCC (``target="simcc"``) request's reply is a :class:`SimccResult`.

    Raises:
        ArgumentError: for a request no server would answer (it names the field), or options
            this reply cannot honour.
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
        self.layout = layout = layout_of(request)
        if profiles and not layout.codec.separable:
            raise ArgumentError("codec", "profiles travel with codec 'separable'")
        simcc = isinstance(layout, SimccLayout)
        if simcc and (keep_dtype or out is not None):
            raise ArgumentError(
                "keep_dtype" if keep_dtype else "out",
                "SimCC labels come as float32, without keep_dtype or out",
            )
        if out is not None:
            dtype = layout.wire.storage if keep_dtype else np.dtype(np.float32)
            _check_out(out, (layout.batch, layout.keypoints, layout.height, layout.width), dtype)
        self._reader = ReplyReader(layout.max_payload)
        self._profiles = profiles
        self._keep_dtype = keep_dtype
        self._out = out

    def restart(self) -> None:
        """Forgets the chunks taken so far: the request is sent again, and its reply starts over
        (nothing was decoded: that happens at a reply's last chunk)."""
        self._reader = ReplyReader(self.layout.max_payload)

    @property
    def max_message_bytes(self) -> int:
        """The largest reply message this request can bring: its whole payload in one message,
        the weights and the framing."""
        return self.layout.max_payload + self.layout.weights_bytes + (64 << 10)

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
        layout = self.layout
        _check_header(reply, layout, self.request.request_id)
        try:
            weights = array_from_tensor(reply.last.weights, "weights")
        except ValueError as error:
            raise _data_loss(str(error)) from None
        common = dict(weights=weights, timings=_timings(reply), wire_bytes=reply.payload_bytes,
                      request_id=reply.last.request_id)
        try:
            if isinstance(layout, SimccLayout):
                x_labels, y_labels = self._labels(reply)
                return SimccResult(x_labels=x_labels, y_labels=y_labels,
                                   dtype=layout.wire.name, **common)
            if self._profiles:
                arrays = _decoded(reply, layout)
                if isinstance(layout, ProfileTableLayout):
                    return ProfilesResult(tables=tuple(arrays), **common)
                return ProfilesResult(rows=arrays[0], cols=arrays[1], **common)
            heatmaps = self._dense(reply)
        except CodecError as error:
            raise _data_loss(str(error)) from None
        return RenderResult(heatmaps=heatmaps, dtype=layout.wire.name, **common)

    def _labels(self, reply: ReceivedReply) -> tuple[np.ndarray, np.ndarray]:
        """SimCC's x and y labels as float32, decoded from one payload (x's bytes, then y's)."""
        x_labels, y_labels = _decoded(reply, self.layout)
        wire = self.layout.wire
        if wire.name == "float32":
            return x_labels, y_labels
        return dequantize(x_labels, wire), dequantize(y_labels, wire)

    def _dense(self, reply: ReceivedReply) -> np.ndarray:
        layout, out = self.layout, self._out
        wire = layout.wire
        shape = (layout.batch, layout.keypoints, layout.height, layout.width)
        if layout.codec.separable:
            arrays = _decoded(reply, layout)
            if isinstance(layout, ProfileTableLayout):
                row_table, col_table, row_index, col_index = arrays
                arrays = [gather_rows(row_table, row_index), gather_rows(col_table, col_index)]
            rows, cols = arrays
            into_out = out is not None and wire.name == "float32"
            dense = rebuild_dense(rows, cols,
                                  out if into_out else _empty(shape, np.dtype(np.float32)))
            if wire.name == "float32":
                return dense
            stored = quantize(dense, wire)
        elif self._keep_dtype or wire.name == "float32":
            stored = out if out is not None else _empty(shape, wire.storage)
            layout.codec.decode(reply.pieces, [stored])
            return stored
        else:
            stored = _decoded(reply, layout)[0]
        if self._keep_dtype:
            if out is None:
                return stored
            np.copyto(out, stored)
            return out
        return dequantize(stored, wire, out if out is not None else _empty(shape, np.float32))


def unanswered(pending: Sequence[PendingReply]) -> HeatmapError:
    """``DATA_LOSS`` for a stream the server ended (with OK) before it answered every request:
    ``pending`` are the requests sent and not answered."""
    if pending:
        return _data_loss(
            f"reply: the stream ended before the reply to request {pending[0].request.request_id}"
        )
    return _data_loss("reply: the stream ended before every request was sent")


def result_from_chunks(
    chunks: Iterable[pb.RenderChunk],
    *,
    request: pb.RenderRequest,
    profiles: bool = False,
    keep_dtype: bool = False,
    out: np.ndarray | None = None,
) -> RenderResult | ProfilesResult | SimccResult:
    """One reply (header chunk ... last chunk) to ``request`` as its result; reading stops at its
    last chunk. For tools that make their own gRPC calls (``Render``'s chunks, or the one message
    ``RenderUnary`` returns, as a list).

    Raises:
        HeatmapError: ``DATA_LOSS`` as :meth:`PendingReply.feed`, or when the chunks end early.
    """
    pending = PendingReply(request, profiles=profiles, keep_dtype=keep_dtype, out=out)
    for chunk in chunks:
        result = pending.feed(chunk)
        if result is not None:
            return result
    raise _data_loss("reply: stream ended before its last chunk")
