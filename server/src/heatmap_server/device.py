"""Execution on the device: one coalesced group of jobs in, host arrays out.

A dense group renders into a pooled host buffer; each caller gets a slice of it, and the buffer
returns to the pool when the last caller has encoded its slice. On the CPU the renderer writes
straight into that buffer (float) or through a scratch that is quantised into it (fixed point). On
CUDA every piece is rendered and converted on the device and copied into pinned host memory on a
dedicated stream, so the copy of one piece overlaps the render of the next. A CUDA
out-of-memory error retries the group in more, smaller pieces. Profiles, profile tables and
SimCC labels render as ``factorised.py`` says.

Pieces are sized by work (``pieces.py``: about ``PIECE_WORK`` element passes, a few ms on a CPU
core): a heavy request is many pieces. Between pieces the caller's ``between_pieces`` runs: it
raises :class:`Abandoned` when every caller went away, and lets lighter work queued meanwhile go
first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from heatmap_client.wire import HeatmapLayout, ProfilesLayout, ProfileTableLayout, SimccLayout
from heatmap_render import (
    DTYPES,
    RenderArgs,
    SimccArgs,
    concatenate_render_args,
    heatmaps_from_args,
)

from .buffers import BufferPool, Lease
from .factorised import by_job, host_array, render_profile_table, render_profiles, render_simcc
from .jobs import Rendered, RenderJob
from .pieces import ALL, PIECE_WORK, dense_pieces, piece_args

__all__ = ["PIECE_WORK", "Abandoned", "DeviceRenderer"]


class Abandoned(Exception):
    """Every caller of a render went away; it stopped at a piece boundary."""


# The integer storage of the fixed-point wire dtypes, as torch dtypes.
_FIXED_POINT_STORAGE = {np.dtype("<u2"): torch.uint16, np.dtype("u1"): torch.uint8}


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
        # How each reply layout's family renders: (args, jobs, between_pieces) -> (per job, its
        # host arrays in the layout's payload order and its host weights; the buffers' lease or
        # None).
        self._families = {
            HeatmapLayout: self._dense_arrays,
            ProfilesLayout: self._profiles,
            ProfileTableLayout: self._profile_table,
            SimccLayout: self._simcc,
        }

    def render(
        self, jobs: list[RenderJob], between_pieces: Callable[[], None] | None = None
    ) -> list[Rendered]:
        """One device call for ``jobs`` (equal keys); one :class:`Rendered` per job, in order.

        Args:
            between_pieces: called between the pieces of a render; what it raises (e.g.
                :class:`Abandoned`) stops the render and gives its buffer back.

        Raises:
            torch.OutOfMemoryError: when even one sample at a time does not fit.
        """
        started = time.perf_counter()
        args = self._joined_args(jobs)
        family = self._families[type(jobs[0].layout)]
        parts, lease = family(args, jobs, between_pieces or (lambda: None))
        render_us = int((time.perf_counter() - started) * 1e6)
        return [
            Rendered(
                arrays=arrays,
                weights=weights,
                queue_us=int((started - job.arrived) * 1e6),
                render_us=render_us,
                coalesced_requests=len(jobs),
                lease=lease,
            )
            for job, (arrays, weights) in zip(jobs, parts)
        ]

    def _joined_args(self, jobs: list[RenderJob]) -> RenderArgs | SimccArgs:
        """The jobs' samples in one batch on the device: every per-sample field (keypoints,
        visibility, per-element sigmas) concatenated along B."""
        return concatenate_render_args([job.args for job in jobs]).to(self.device)

    def _profiles(self, args: RenderArgs, jobs: list[RenderJob], between_pieces):
        return render_profiles(args, jobs, between_pieces), None

    def _profile_table(self, args: RenderArgs, jobs: list[RenderJob], between_pieces):
        return render_profile_table(args, jobs, between_pieces), None

    def _simcc(self, args: SimccArgs, jobs: list[RenderJob], between_pieces):
        return render_simcc(args, jobs, between_pieces,
                            lambda labels: self._labels_to_wire(labels, jobs[0])), None

    def _dense_arrays(self, args: RenderArgs, jobs: list[RenderJob], between_pieces):
        """The dense tensor in a pooled host buffer shared by the jobs, and the weights."""
        users = len(jobs)
        host, lease, weights = self._dense(args, jobs[0], users, between_pieces)
        try:
            return by_job([host_array(host)], host_array(weights), jobs), lease
        except BaseException:
            _release_all(lease, users)
            raise

    def _labels_to_wire(self, labels: torch.Tensor, job: RenderJob) -> torch.Tensor:
        """float32 labels as the wire stores them (the service refuses fixed point above 1)."""
        if job.wire.scale is not None:
            scaled = torch.round(labels * job.wire.scale)
            return scaled.to(_FIXED_POINT_STORAGE[job.wire.storage])
        return labels.to(DTYPES[job.wire.render_as])

    def _dense(
        self, args: RenderArgs, job: RenderJob, users: int, between_pieces: Callable[[], None]
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
                weights = self._dense_pieces(args, job, host, pieces, between_pieces)
                return host, lease, weights
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
        self,
        args: RenderArgs,
        job: RenderJob,
        host: torch.Tensor,
        min_pieces: int,
        between_pieces: Callable[[], None],
    ) -> torch.Tensor:
        """Renders ``args`` into ``host`` piece by piece (at least ``min_pieces`` batch slices);
        returns the weights, ``(B, N, K)`` or ``(B, K)`` as the keypoints were given."""
        batch, instances, keypoints, _ = args.keypoints.shape
        shape = (batch, instances, keypoints) if args.has_instances else (batch, keypoints)
        weights = torch.empty(shape, dtype=torch.float32, device=args.keypoints.device)
        scratch: list[Lease] = []
        try:
            for index, (rows, keys, instance_range) in enumerate(dense_pieces(args, min_pieces)):
                if index:
                    between_pieces()
                part = piece_args(args, rows, keys, instance_range)
                # Whole samples, or one sample's keypoint range: contiguous either way.
                target = host[rows] if keys == ALL else host[rows, keys]
                later_instances = instance_range != ALL and instance_range.start > 0
                if later_instances:
                    piece_weights = self._merged_piece(part, job, target, scratch)
                else:
                    piece_weights = self._render_piece(part, job, target, scratch)
                at = (rows, instance_range, keys) if args.has_instances else (rows, keys)
                weights[at] = piece_weights
        finally:
            if self._copy_stream is not None:
                self._copy_stream.synchronize()  # device buffers are reused only after their copy
            for lease in scratch:
                lease.release()
        return weights

    def _render_piece(
        self, args: RenderArgs, job: RenderJob, target: torch.Tensor, scratch: list[Lease]
    ) -> torch.Tensor:
        """One piece into ``target`` (host); returns its weights."""
        if self._copy_stream is None:
            return self._piece_on_cpu(args, job, target)
        weights = self._piece_on_cuda(args, job, target, scratch)
        if len(scratch) > 8:  # bound the device scratch a many-piece render holds
            self._copy_stream.synchronize()
            for lease in scratch:
                lease.release()
            scratch.clear()
        return weights

    def _merged_piece(
        self, args: RenderArgs, job: RenderJob, target: torch.Tensor, scratch: list[Lease]
    ) -> torch.Tensor:
        """Renders a later range of instances and max-merges it into ``target`` (exact: the
        renderer merges instances by maximum, and quantisation is monotonic)."""
        part, lease = self.pool.take(
            tuple(target.shape), target.dtype, torch.device("cpu"),
            pinned=self._copy_stream is not None,
        )
        try:
            weights = self._render_piece(args, job, part, scratch)
            if self._copy_stream is not None:
                self._copy_stream.synchronize()  # both host planes complete before the merge
            torch.maximum(target, part, out=target)
        finally:
            lease.release()
        return weights

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
