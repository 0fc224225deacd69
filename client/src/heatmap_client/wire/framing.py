"""Reply framing, both directions: a reply's chunks out (server) and in (client).

A reply is ``header chunk ... last chunk``: the first chunk carries the :class:`TensorHeader`,
every chunk up to ``chunk_bytes`` of payload (:data:`CHUNK_BYTES`), the last one the weights and
timings; a reply that fits one message is that one chunk. Weights that would make the last chunk
larger than ``chunk_bytes`` travel in a chunk of their own, after the payload (up to 8 MiB for a
request of 2M keypoints): so no streamed message is larger than the chunk size or the weights,
and a client sets gRPC's receive limit from its largest request. Readers take both framings.

The server builds chunks with :func:`reply_chunks` as gRPC takes them; the client reads them with
a :class:`ReplyReader`, which stops as soon as the payload outgrows what the header announced or
what the request can need (its :class:`~heatmap_client.wire.layouts.ReplyLayout`), so no server
can make it hold more than that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from heatmap.v1 import heatmap_pb2 as pb

from .layouts import MAX_UNARY_REPLY_BYTES, MESSAGE_FRAMING_BYTES

__all__ = [
    "CHUNK_BYTES",
    "FramingError",
    "ReceivedReply",
    "ReplyReader",
    "max_reply_message_bytes",
    "reply_chunks",
]


# Payload bytes per streamed chunk: large enough that framing costs nothing, small enough that a
# reader that stalls holds little.
CHUNK_BYTES = 1 << 20


def max_reply_message_bytes(max_request_bytes: int) -> int:
    """The largest message of any legal reply to a request of at most ``max_request_bytes``: a
    client's receive limit.

    A reply is one message of at most ``MAX_UNARY_REPLY_BYTES`` of payload and weights, or chunks
    of at most ``CHUNK_BYTES`` of payload with the weights alone when they would make the last
    one larger. Weights are 4 bytes per keypoint and a request carries 8 bytes of coordinates
    per keypoint: they are at most half a request.
    """
    largest_weights = max_request_bytes // 2
    return max(MAX_UNARY_REPLY_BYTES, CHUNK_BYTES, largest_weights) + MESSAGE_FRAMING_BYTES


class FramingError(ValueError):
    """Chunks that do not make one well-formed reply."""


def reply_chunks(
    request_id: int,
    header: pb.TensorHeader,
    pieces: Sequence[bytes | memoryview],
    weights: pb.Tensor,
    timings: pb.Timings,
    chunk_bytes: int | None = None,
) -> Iterator[pb.RenderChunk]:
    """The chunks of one reply, made one at a time (a consumer that stops reading holds one).

    ``pieces`` are the payload cut to ``chunk_bytes``; an empty payload still makes one chunk, the
    one that carries header, weights and timings. With ``chunk_bytes``, weights that would make
    the last chunk larger than that come in a chunk of their own; without, they always ride with
    the last piece (a reply sent as one message).
    """
    count = max(len(pieces), 1)
    last_piece = len(pieces[-1]) if pieces else 0
    alone = (chunk_bytes is not None and last_piece > 0
             and last_piece + len(weights.data) > chunk_bytes)
    for index in range(count):
        chunk = pb.RenderChunk(request_id=request_id, data=bytes(pieces[index]) if pieces else b"")
        if index == 0:
            chunk.header.CopyFrom(header)
        if index == count - 1 and not alone:
            chunk.last = True
            chunk.weights.CopyFrom(weights)
            chunk.timings.CopyFrom(timings)
        yield chunk
    if alone:
        yield pb.RenderChunk(request_id=request_id, weights=weights, timings=timings, last=True)


# Pieces smaller than this are joined before they are kept (see ReplyReader).
_JOIN_BELOW = 64 << 10


@dataclass
class ReceivedReply:
    """One reply's framing: its header, payload pieces in order and last chunk."""

    header: pb.TensorHeader
    pieces: list[bytes]
    last: pb.RenderChunk

    @property
    def payload_bytes(self) -> int:
        return sum(len(piece) for piece in self.pieces)


class ReplyReader:
    """Reads one reply chunk by chunk, from a blocking or an asyncio loop alike.

    What it holds is bounded by ``max_payload_bytes`` plus a little: a header that announces more,
    or chunks that deliver more than announced, fail at once, before more is read; every chunk
    between the first and the last must carry payload, so a reply has at most
    ``payload_bytes + 2`` chunks; and small pieces are joined, so that a payload sent a few bytes
    at a time costs no more memory than one sent in whole chunks.

    Args:
        max_payload_bytes: the most payload the request can need.
    """

    def __init__(self, max_payload_bytes: int):
        self.max_payload_bytes = max_payload_bytes
        self._header: pb.TensorHeader | None = None
        self._pieces: list[bytes] = []
        self._small = bytearray()  # small pieces, joined until they make one of _JOIN_BELOW bytes
        self._received = 0
        self._chunks = 0

    def feed(self, chunk: pb.RenderChunk) -> ReceivedReply | None:
        """Takes the next chunk; returns the :class:`ReceivedReply` once ``chunk`` is its last.

        Raises:
            FramingError: a missing header, a payload over either bound, or a chunk between the
                first and the last that carries no payload.
        """
        header = self._header
        if header is None:
            if not chunk.HasField("header"):
                raise FramingError("reply: first chunk has no header")
            header = self._header = chunk.header
            if header.payload_bytes > self.max_payload_bytes:
                raise FramingError(
                    f"reply: header announces {header.payload_bytes} payload bytes, more than "
                    f"the {self.max_payload_bytes} the request can need"
                )
        data = chunk.data
        self._chunks += 1
        if not data and not chunk.last and self._chunks > 1:
            # Else a server could keep a reply open for ever with chunks that bring nothing.
            raise FramingError(
                f"reply: chunk {self._chunks - 1} carries no payload and is not the last"
            )
        self._received += len(data)
        if self._received > header.payload_bytes:
            raise FramingError(
                f"reply: payload exceeds the {header.payload_bytes} bytes the header announced"
            )
        self._keep(data)
        if not chunk.last:
            return None
        if self._received != header.payload_bytes:
            raise FramingError(
                f"reply: received {self._received} payload bytes, header announced "
                f"{header.payload_bytes}"
            )
        self._flush_small()
        return ReceivedReply(header, self._pieces, chunk)

    def _keep(self, data: bytes) -> None:
        if len(data) >= _JOIN_BELOW:
            self._flush_small()
            self._pieces.append(data)
        elif data:
            # A bytes object costs ~40 bytes beside its data: kept one per chunk, a payload sent
            # a byte at a time would take 40x its size.
            self._small += data
            if len(self._small) >= _JOIN_BELOW:
                self._flush_small()

    def _flush_small(self) -> None:
        if self._small:
            self._pieces.append(bytes(self._small))
            self._small = bytearray()
