"""Execution on the device: one coalesced group of jobs in, host arrays out.

A dense group renders into a pooled host buffer; each caller gets a slice of it, and the buffer
returns to the pool when the last caller has encoded its slice. On the CPU the renderer writes
straight into that buffer (float) or through a scratch that is quantised into it (fixed point). On
CUDA every piece is rendered and converted on the device and copied into pinned host memory on a
dedicated stream, so the copy of one piece overlaps the render of the next. A CUDA
out-of-memory error retries the group in more, smaller pieces. SimCC labels are small
(B*N*K*(Wx+Hy)): they render in one call and are converted to the wire dtype on the device.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .buffers import BufferPool, Lease
from .jobs import Rendered, RenderJob
from .render import (
    RenderArgs,
    SimccArgs,
    concatenate_render_args,
    heatmaps_from_args,
    profiles_from_args,
    simcc_from_args,
)

__all__ = ["DeviceRenderer", "torch_dtype"]

# The integer storage of the fixed-point wire dtypes, as torch dtypes.
_FIXED_POINT_STORAGE = {np.dtype("<u2"): torch.uint16, np.dtype("u1"): torch.uint8}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name`` (``float32``, ``float16``, ``bfloat16``)."""
    return getattr(torch, name)


def _host(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.uint16)  # numpy has no bfloat16: ship the raw bits
    return tensor.cpu().numpy()


def _release_all(lease: Lease, users: int) -> None:
    for _ in range(users):
        lease.release()


class DeviceRenderer:
    """Renders groups of compatible jobs on ``device`` into buffers from ``pool``.

    Called from one thread only (the batcher's device thread), so CUDA work is serialised.
    """

    def __init__(self, device: torch.device, pool: BufferPool):
        self.device = device
        self.pool = pool
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def render(self, jobs: list[RenderJob]) -> list[Rendered]:
        """One device call for ``jobs`` (equal keys); one :class:`Rendered` per job, in order.

        Raises:
            torch.OutOfMemoryError: when even one sample at a time does not fit.
        """
        started = time.perf_counter()
        first = jobs[0]
        args = self._joined_args(jobs)
        lease = None
        if first.simcc:
            outputs, weights_host = self._simcc(args, first)
        elif first.separable:
            profiles = profiles_from_args(args)
            outputs = [_host(profiles.rows.contiguous()), _host(profiles.cols.contiguous())]
            weights_host = _host(profiles.weights)
        else:
            host, lease, weights = self._dense(args, first, users=len(jobs))
            try:
                outputs = [_host(host)]
                weights_host = _host(weights)
            except BaseException:
                _release_all(lease, len(jobs))
                raise
        render_us = int((time.perf_counter() - started) * 1e6)
        results, offset = [], 0
        for job in jobs:
            rows = slice(offset, offset + job.args.batch)
            offset += job.args.batch
            results.append(
                Rendered(
                    arrays=[array[rows] for array in outputs],
                    weights=weights_host[rows],
                    instances=args.keypoints.shape[1],
                    queue_us=int((started - job.arrived) * 1e6),
                    render_us=render_us,
                    coalesced_requests=len(jobs),
                    lease=lease,
                )
            )
        return results

    def _joined_args(self, jobs: list[RenderJob]) -> RenderArgs | SimccArgs:
        """The jobs' samples in one batch on the device: every per-sample field (keypoints,
        visibility, per-element sigmas) concatenated along B."""
        return concatenate_render_args([job.args for job in jobs]).to(self.device)

    def _simcc(self, args: SimccArgs, job: RenderJob) -> tuple[list[np.ndarray], np.ndarray]:
        """The x and y labels in the wire dtype on the host, and the weights."""
        labels = simcc_from_args(args)
        outputs = [_host(self._labels_to_wire(labels.x_labels, job)),
                   _host(self._labels_to_wire(labels.y_labels, job))]
        return outputs, _host(labels.weights)

    def _labels_to_wire(self, labels: torch.Tensor, job: RenderJob) -> torch.Tensor:
        """float32 labels as the wire stores them (the service refuses fixed point above 1)."""
        if job.wire.scale is not None:
            scaled = torch.round(labels * job.wire.scale)
            return scaled.to(_FIXED_POINT_STORAGE[job.wire.storage])
        return labels.to(torch_dtype(job.wire.render_as))

    def _dense(
        self, args: RenderArgs, job: RenderJob, users: int
    ) -> tuple[torch.Tensor, Lease, torch.Tensor]:
        """Renders into a pooled host buffer shared by ``users``; on CUDA out of memory, retries
        in smaller pieces. Returns the host tensor, its lease and the weights."""
        batch, _, keypoints, _ = args.keypoints.shape
        fixed_point = job.wire.scale is not None
        storage = _FIXED_POINT_STORAGE[job.wire.storage] if fixed_point else args.dtype
        on_cpu = self.device.type == "cpu"
        host, lease = self.pool.take(
            (batch, keypoints, *args.size), storage, torch.device("cpu"), users=users,
            pinned=not on_cpu,
        )
        pieces = 1
        while True:
            try:
                return host, lease, self._dense_pieces(args, job, host, pieces)
            except torch.OutOfMemoryError:
                if pieces < batch:
                    if not on_cpu:
                        torch.cuda.empty_cache()
                    pieces = min(batch, pieces * 2)
                    continue
                _release_all(lease, users)
                raise
            except BaseException:
                _release_all(lease, users)  # the buffer goes back to the pool on any failure
                raise

    def _dense_pieces(
        self, args: RenderArgs, job: RenderJob, host: torch.Tensor, pieces: int
    ) -> torch.Tensor:
        """Renders ``args`` into ``host`` in ``pieces`` slices of the batch; returns the weights."""
        batch = host.shape[0]
        step = max(1, -(-batch // pieces))
        weights = []
        scratch: list[Lease] = []
        try:
            for start in range(0, max(batch, 1), step):
                rows = slice(start, start + step)
                part = args.take(rows)
                if self._copy_stream is None:
                    weights.append(self._piece_on_cpu(part, job, host[rows]))
                else:
                    weights.append(self._piece_on_cuda(part, job, host[rows], scratch))
        finally:
            if self._copy_stream is not None:
                self._copy_stream.synchronize()  # device buffers are reused only after their copy
            for lease in scratch:
                lease.release()
        return torch.cat(weights) if len(weights) > 1 else weights[0]

    def _quantize(self, values: torch.Tensor, job: RenderJob) -> torch.Tensor:
        """``round_half_even(v * scale)`` in place, for a fixed-point wire dtype."""
        return torch.round(values.mul_(job.wire.scale), out=values)

    def _piece_on_cpu(self, args: RenderArgs, job: RenderJob, target: torch.Tensor) -> torch.Tensor:
        """Renders straight into ``target``, or for fixed point into a scratch quantised into it."""
        if job.wire.scale is None:
            return heatmaps_from_args(args, out=target).weights
        values, scratch = self.pool.take(tuple(target.shape), args.dtype, self.device)
        try:
            weights = heatmaps_from_args(args, out=values).weights
            target.copy_(self._quantize(values, job))
        finally:
            scratch.release()
        return weights

    def _piece_on_cuda(
        self, args: RenderArgs, job: RenderJob, target: torch.Tensor, scratch: list[Lease]
    ) -> torch.Tensor:
        """Renders and converts on the device, then copies into pinned ``target`` on the copy
        stream (the caller synchronises it before ``scratch`` is released)."""
        values, values_lease = self.pool.take(tuple(target.shape), args.dtype, self.device)
        scratch.append(values_lease)
        weights = heatmaps_from_args(args, out=values).weights
        if job.wire.scale is not None:
            quantized, quantized_lease = self.pool.take(
                tuple(target.shape), target.dtype, self.device
            )
            scratch.append(quantized_lease)
            values = quantized.copy_(self._quantize(values, job))
        copy_stream = self._copy_stream
        copy_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(copy_stream):
            target.copy_(values, non_blocking=True)
        return weights
