"""Replies out: a rendered job encoded, framed and measured.

Everything a reply needs comes from its :class:`RenderJob` (request id, wire dtype, codec,
arrival), so no request message is kept beside it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Executor

import grpc
import torch

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import TARGETS, reply_chunks, tensor_from_array

from .batching import Batcher, BatcherClosed, QueueFull
from .encoding import encode_reply
from .errors import RequestError
from .jobs import Rendered, RenderJob
from .metrics import Metrics

__all__ = ["ReplyMaker"]


def _shapes(job: RenderJob, rendered: Rendered) -> dict:
    """The header's shape fields: heatmaps ``[B, K, H, W]``, or SimCC's x then y label shapes."""
    if job.simcc:
        x_labels, y_labels = rendered.arrays
        return dict(
            shape=x_labels.shape, y_labels_shape=y_labels.shape, target=TARGETS.proto("simcc")
        )
    args = job.args
    return dict(shape=[args.batch, args.num_keypoints, *args.size])


class ReplyMaker:
    """Renders a job on the batcher, encodes it on the encoder pool and frames its chunks."""

    def __init__(
        self,
        batcher: Batcher,
        encoders: Executor,
        encode_workers: int,
        chunk_bytes: int,
        metrics: Metrics,
    ):
        self._batcher = batcher
        self._encoders = encoders
        self._encode_workers = encode_workers  # the threads behind ``encoders``
        self._chunk_bytes = chunk_bytes
        self._metrics = metrics

    async def make(self, job: RenderJob) -> Iterator[pb.RenderChunk]:
        """The reply's chunks, made as they are taken.

        Raises:
            RequestError: RESOURCE_EXHAUSTED (queue full, device memory), UNAVAILABLE (closing).
        """
        metrics = self._metrics
        metrics.queue_depth.inc()
        try:
            rendered = await self._batcher.render(job)
        except QueueFull as full:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue", f"full ({full})") from None
        except BatcherClosed as closed:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "device", str(closed)) from None
        except torch.OutOfMemoryError:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "keypoints",
                "the device ran out of memory even rendering one sample at a time",
            ) from None
        finally:
            metrics.queue_depth.dec()
        started = time.perf_counter()
        try:
            pieces, crc32 = await encode_reply(
                job.codec, rendered.arrays, self._chunk_bytes, self._encoders, self._encode_workers
            )
        finally:
            # The arrays may be views of a pooled buffer: it is reusable once encoded.
            rendered.release()
        encoded = time.perf_counter()
        payload_bytes = sum(len(piece) for piece in pieces)
        header = pb.TensorHeader(
            **_shapes(job, rendered),
            dtype=job.wire.proto,
            codec=job.codec.proto,
            payload_bytes=payload_bytes,
            decoded_bytes=sum(array.nbytes for array in rendered.arrays),
            instances=rendered.instances,
            payload_crc32=crc32,
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
        return reply_chunks(job.request_id, header, pieces, weights, timings)
