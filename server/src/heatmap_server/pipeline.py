"""The pipeline: a checked job rendered, encoded, framed and measured, within the reply budget.

Everything a reply needs comes from its :class:`RenderJob` (request id, reply layout, arrival), so
no request message is kept beside it. A reply reserves the bytes its layout holds from the server's
:class:`~heatmap_server.budget.ByteBudget` before it is rendered, and holds them until
:meth:`OutgoingReply.close` (after gRPC took its last chunk, or when its caller went away).

The work in most requests is small, so the machinery around it must be smaller: light work is
rendered on the event loop's own thread when nothing waits for the device (the batcher decides,
:meth:`Batcher.render_inline`), and a small payload is compressed there too. Only heavy work pays
the hand-offs to the device thread and the encoder pool, which let it run beside everything else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import Executor

import grpc
import torch

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import TARGETS, reply_chunks, tensor_from_array

from .batching import Batcher, BatcherClosed, QueueFull
from .budget import ByteBudget, Grant
from .encoding import EncodedPayload, encode_payload, encode_reply
from .errors import RequestError
from .jobs import Rendered, RenderJob
from .metrics import Metrics

__all__ = ["INLINE_ENCODE_BYTES", "OutgoingReply", "Pipeline"]

# Payloads this small (decoded bytes) are compressed on the event loop's thread: a hand-off to the
# encoder pool and back costs more than zstd takes for them (~0.1 ms for 256 KiB of profiles).
INLINE_ENCODE_BYTES = 256 << 10


class OutgoingReply:
    """One reply ready to send: its chunks are made (each payload piece copied once) as they are
    taken. :meth:`close` gives its memory back (buffer lease and budget bytes); call it always.

    ``chunk_bytes`` is the largest chunk of a streamed reply (weights that would make the last one
    larger come alone, so that a client's receive limit follows from its requests); None for a
    reply sent as one message.
    """

    def __init__(
        self,
        request_id: int,
        header: pb.TensorHeader,
        payload: EncodedPayload,
        weights: pb.Tensor,
        timings: pb.Timings,
        holds: list,
        chunk_bytes: int | None = None,
    ):
        self.request_id = request_id
        self.header = header
        self._payload = payload
        self._weights = weights
        self._timings = timings
        self._holds = holds  # what close() releases: a buffer lease (codec none), the grant
        self._chunk_bytes = chunk_bytes

    def chunks(self) -> Iterator[pb.RenderChunk]:
        return reply_chunks(
            self.request_id, self.header, self._payload.pieces, self._weights, self._timings,
            self._chunk_bytes,
        )

    def message(self) -> pb.RenderChunk:
        """The whole reply as one message (a reply made with ``whole=True``)."""
        (chunk,) = self.chunks()
        return chunk

    def close(self) -> None:
        holds, self._holds = self._holds, []
        self._payload = EncodedPayload([], None)
        for hold in holds:
            hold.release()


class Pipeline:
    """Renders a job on the batcher, encodes it on the encoder pool and frames its chunks.

    Args:
        budget: the server's reply budget; ``budget_wait_s`` how long a reply waits for room.
    """

    def __init__(
        self,
        batcher: Batcher,
        encoders: Executor,
        encode_workers: int,
        chunk_bytes: int,
        metrics: Metrics,
        budget: ByteBudget,
        budget_wait_s: float,
    ):
        self._batcher = batcher
        self._encoders = encoders
        self._encode_workers = encode_workers  # the threads behind ``encoders``
        self._chunk_bytes = chunk_bytes
        self._metrics = metrics
        self._budget = budget
        self._budget_wait_s = budget_wait_s

    @property
    def budget_bytes(self) -> int:
        """The reply budget's size, as ``GetServerInfo`` reports it."""
        return self._budget.limit

    async def _render(self, job: RenderJob) -> Rendered:
        rendered = self._batcher.render_inline(job)
        if rendered is not None:
            self._metrics.inline_renders.inc()
            return rendered
        metrics = self._metrics
        metrics.queue_depth.inc()
        try:
            return await self._batcher.render(job)
        except QueueFull as full:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "queue", f"full ({full})") from None
        except BatcherClosed as closed:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "device", str(closed)) from None
        except torch.OutOfMemoryError:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "keypoints",
                "the device ran out of memory even rendering one sample at a time",
            ) from None
        finally:
            metrics.queue_depth.dec()

    async def _encode(
        self, job: RenderJob, rendered: Rendered, grant: Grant, chunk_bytes: int
    ) -> EncodedPayload:
        """The payload's pieces. Codec ``none`` views the rendered buffer, which stays leased
        until the reply closes; a compressed payload frees it and shrinks ``grant`` to itself."""
        if not job.codec.checksummed:
            return encode_payload(job.codec, rendered.arrays, chunk_bytes)
        if sum(array.nbytes for array in rendered.arrays) <= INLINE_ENCODE_BYTES:
            payload = encode_payload(job.codec, rendered.arrays, chunk_bytes)
            rendered.release()
            grant.resize(payload.nbytes)
            return payload
        work = asyncio.ensure_future(
            encode_reply(
                job.codec, rendered.arrays, chunk_bytes, self._encoders, self._encode_workers
            )
        )
        try:
            payload = await asyncio.shield(work)
        except asyncio.CancelledError:
            # The encoder threads still read the buffer: it is given back when they are done.
            work.add_done_callback(lambda _: rendered.release())
            raise
        rendered.release()
        grant.resize(payload.nbytes)
        return payload

    async def make(self, job: RenderJob, whole: bool = False) -> OutgoingReply:
        """The reply, rendered and encoded; its chunks are made as they are taken (one chunk,
        the whole reply, with ``whole``: only for a layout that fits one message).

        Raises:
            RequestError: RESOURCE_EXHAUSTED (reply budget, queue full, device memory),
                UNAVAILABLE (closing).
        """
        metrics, layout = self._metrics, job.layout
        grant = await self._budget.acquire(layout.held_bytes, self._budget_wait_s)
        try:
            rendered = await self._render(job)
            described = layout.payload_header(rendered.arrays)
            decoded_bytes = sum(array.nbytes for array in rendered.arrays)
            started = time.perf_counter()
            try:
                chunk_bytes = job.layout.max_payload + 1 if whole else self._chunk_bytes
                payload = await self._encode(job, rendered, grant, chunk_bytes)
            except BaseException:
                if job.codec.checksummed:
                    raise  # _encode gives the buffer back
                rendered.release()
                raise
        except BaseException:
            grant.release()
            raise
        encoded = time.perf_counter()
        payload_bytes = payload.nbytes
        header = pb.TensorHeader(
            **described,
            target=TARGETS.proto(layout.target),
            dtype=job.wire.proto,
            codec=job.codec.proto,
            payload_bytes=payload_bytes,
            decoded_bytes=decoded_bytes,
            instances=layout.instances,
            payload_crc32=payload.crc32,
        )
        timings = pb.Timings(
            queue_us=rendered.queue_us,
            render_us=rendered.render_us,
            encode_us=int((encoded - started) * 1e6),
            total_us=int((encoded - job.arrived) * 1e6),
            coalesced_requests=rendered.coalesced_requests,
        )
        metrics.queue_seconds.observe(rendered.queue_us / 1e6)
        metrics.render_seconds.observe(rendered.render_us / 1e6)
        metrics.encode_seconds.observe(encoded - started)
        metrics.total_seconds.observe(encoded - job.arrived)
        metrics.coalesced.observe(rendered.coalesced_requests)
        metrics.bytes_out.inc(payload_bytes)
        metrics.renders.labels("OK").inc()
        weights = tensor_from_array(rendered.weights, "weights")
        holds = [grant] if job.codec.checksummed else [rendered, grant]
        return OutgoingReply(job.request_id, header, payload, weights, timings, holds,
                             None if whole else self._chunk_bytes)
