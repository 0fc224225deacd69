"""The dynamic batcher and the device thread that owns the device.

Requests with the same render parameters are rendered in one call (up to ``max_batch_keypoints``
keypoints) when they arrive within ``max_delay_us`` of the oldest, as Triton's dynamic batcher
does with ``max_queue_delay_microseconds``. The oldest only waits for company when company is
likely: when the request before it arrived less than ``max_delay_us`` earlier. A lone loader
calling one batch at a time would otherwise pay the whole delay on every call for nothing; under
load the requests come closer together than the delay and wait as before.

One thread runs every device call, so CUDA work is serialised without locks and the asyncio event
loop never waits on rendering. Each caller gets host arrays that are slices of one pooled buffer;
the buffer returns to the pool when the last caller has encoded its slice and released it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .buffers import BufferPool, Lease
from .render import RenderArgs, heatmaps_from_args, profiles_from_args

__all__ = [
    "Batcher",
    "BatcherClosed",
    "QueueFull",
    "RenderJob",
    "Rendered",
    "render_dtype",
]

log = logging.getLogger(__name__)

# Output dtypes the renderer produces directly; fixed point is quantised from float32.
_RENDER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FIXED_POINT = {"uint16": (65535, torch.uint16), "uint8": (255, torch.uint8)}


def render_dtype(wire_dtype: str) -> torch.dtype:
    """The dtype the renderer produces for a wire dtype."""
    return _RENDER_DTYPES.get(wire_dtype, torch.float32)


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` requests already."""


class BatcherClosed(RuntimeError):
    """The batcher takes no more work: it was closed, or its device thread stopped."""


@dataclass(frozen=True)
class RenderJob:
    """One request's checked render arguments and how its output travels.

    ``args`` carries the render dtype; ``wire_dtype`` names the storage on the wire (``uint16`` and
    ``uint8`` render in float32 and are quantised). ``separable`` asks for profiles only.
    """

    args: RenderArgs
    wire_dtype: str
    separable: bool
    arrived: float

    @property
    def key(self) -> tuple:
        """Jobs with equal keys can be rendered as one batch (concatenated along B)."""
        args = self.args
        _, instances, keypoints, _ = args.keypoints.shape
        return (
            args.size, args.sigmas, args.method, args.coords, args.input_size, args.dtype,
            args.has_instances, instances, keypoints, self.wire_dtype, self.separable,
        )

    @property
    def keypoint_count(self) -> int:
        return self.args.keypoints.shape[:3].numel()


@dataclass
class Rendered:
    """Host arrays for a codec (the dense tensor, or rows then cols), weights and timings.

    Call :meth:`release` once the arrays are encoded: they may be views of a pooled buffer.
    """

    arrays: list[np.ndarray]
    weights: np.ndarray
    instances: int
    queue_us: int
    render_us: int
    coalesced_requests: int
    lease: Lease | None = None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


@dataclass(eq=False)
class _Entry:
    job: RenderJob
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    cancelled: threading.Event = field(default_factory=threading.Event)
    # The request before it arrived within the delay: worth waiting for more.
    expects_company: bool = False


def _host(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.uint16)  # numpy has no bfloat16: ship the raw bits
    return tensor.cpu().numpy()


def _release_all(lease: Lease, users: int) -> None:
    for _ in range(users):
        lease.release()


def _joined_visibility(jobs: list[RenderJob]) -> torch.Tensor | None:
    """The jobs' visibilities concatenated along B (ones for jobs that gave none), or None."""
    if all(job.args.visibility is None for job in jobs):
        return None
    return torch.cat([
        job.args.visibility if job.args.visibility is not None
        else torch.ones(job.args.keypoints.shape[:-1], dtype=torch.float32)
        for job in jobs
    ])


def _deliver(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.cancelled():
        if isinstance(result, Rendered):
            result.release()
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Batcher:
    """Coalesces compatible render jobs and runs them on one device thread.

    Args:
        device: where rendering happens.
        max_delay_us: how long the oldest job may wait for company (0 disables coalescing).
        max_batch_keypoints: most keypoints (B * N * K summed over jobs) in one device call.
        max_queue: jobs waiting at most; beyond, :meth:`render` raises :class:`QueueFull`.
        pool: the output buffer pool.
        on_stopped: called (on the device thread) if that thread stops on an error.
    """

    def __init__(
        self,
        device: torch.device,
        *,
        max_delay_us: int = 300,
        max_batch_keypoints: int = 32768,
        max_queue: int = 256,
        pool: BufferPool | None = None,
        on_stopped: Callable[[BaseException], None] | None = None,
    ):
        if device.type == "cuda" and device.index is None:
            # Tensors report "cuda:N"; the device thread's set_device needs the index too.
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.max_delay_s = max_delay_us / 1e6
        self.max_batch_keypoints = max_batch_keypoints
        self.max_queue = max_queue
        self.pool = pool or BufferPool()
        self._on_stopped = on_stopped
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: collections.deque[_Entry] = collections.deque()
        self._last_arrival = -float("inf")
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="device", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        with self._condition:
            return len(self._pending)

    async def render(self, job: RenderJob) -> Rendered:
        """Queues ``job`` and waits for its slice of a (possibly coalesced) render.

        Raises:
            QueueFull: when ``max_queue`` jobs are already waiting.
        """
        loop = asyncio.get_running_loop()
        entry = _Entry(job, loop.create_future(), loop)
        with self._condition:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"{len(self._pending)} requests already waiting")
            entry.expects_company = job.arrived - self._last_arrival < self.max_delay_s
            self._last_arrival = max(self._last_arrival, job.arrived)
            self._pending.append(entry)
            self._condition.notify()
        try:
            return await entry.future
        except asyncio.CancelledError:
            # The caller went away (deadline, cancellation): its job is skipped if not yet begun,
            # and a result that was already delivered gives its buffer back.
            entry.cancelled.set()
            if entry.future.done() and not entry.future.cancelled() and not entry.future.exception():
                entry.future.result().release()
            raise

    def _next_group(self) -> list[_Entry] | None:
        with self._condition:
            while not self._pending:
                if self._closed:
                    return None
                self._condition.wait()
            first = self._pending.popleft()
            group, keypoints = [first], first.job.keypoint_count
            if self.max_delay_s <= 0:
                return group  # coalescing is off
            # Without company in sight, take what is already queued and go.
            delay = self.max_delay_s if first.expects_company else 0.0
            deadline = first.job.arrived + delay
            while True:
                for entry in list(self._pending):
                    fits = keypoints + entry.job.keypoint_count <= self.max_batch_keypoints
                    if fits and entry.job.key == first.job.key:
                        group.append(entry)
                        keypoints += entry.job.keypoint_count
                        self._pending.remove(entry)
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or keypoints >= self.max_batch_keypoints or self._closed:
                    return group
                self._condition.wait(remaining)

    def _run(self) -> None:
        try:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            self._serve()
        except BaseException as error:
            # Never leave callers waiting on a thread that is gone: fail them, refuse new jobs.
            log.exception("device thread stopped")
            with self._condition:
                self._closed = True
                stranded = list(self._pending)
                self._pending.clear()
            failure = BatcherClosed(f"the device thread stopped: {error!r}")
            for entry in stranded:
                entry.loop.call_soon_threadsafe(_deliver, entry.future, None, failure)
            if self._on_stopped is not None:
                self._on_stopped(error)

    def _serve(self) -> None:
        while (group := self._next_group()) is not None:
            group = [entry for entry in group if not entry.cancelled.is_set()]
            if not group:
                continue
            try:
                results: list = self._render(group)
                errors: list = [None] * len(group)
            except Exception as error:  # noqa: BLE001 - reported to every caller of the group
                results, errors = [None] * len(group), [error] * len(group)
            for entry, result, error in zip(group, results, errors):
                entry.loop.call_soon_threadsafe(_deliver, entry.future, result, error)

    def _render(self, group: list[_Entry]) -> list[Rendered]:
        started = time.perf_counter()
        jobs = [entry.job for entry in group]
        first = jobs[0]
        args = first.args
        if len(jobs) > 1:
            args = replace(
                args,
                keypoints=torch.cat([job.args.keypoints for job in jobs]),
                visibility=_joined_visibility(jobs),
            )
        if args.keypoints.device != self.device:
            visibility = None if args.visibility is None else args.visibility.to(self.device)
            args = replace(args, keypoints=args.keypoints.to(self.device), visibility=visibility)
        lease = None
        if first.separable:
            profiles = profiles_from_args(args)
            outputs = [_host(profiles.rows.contiguous()), _host(profiles.cols.contiguous())]
            weights = profiles.weights
        else:
            out, lease, weights = self._dense(args, first.wire_dtype, users=len(jobs))
        try:
            if lease is not None:
                outputs = [_host(out)]
            weights_host = _host(weights)
        except BaseException:
            if lease is not None:
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

    def _dense(
        self, args: RenderArgs, wire_dtype: str, users: int
    ) -> tuple[torch.Tensor, Lease, torch.Tensor]:
        """Renders into a pooled host buffer; on CUDA out of memory, retries in smaller pieces.

        Returns the host tensor, its lease (shared by ``users``) and the weights.

        Raises:
            torch.OutOfMemoryError: when even one sample at a time does not fit.
        """
        batch, _, keypoints, _ = args.keypoints.shape
        fixed = _FIXED_POINT.get(wire_dtype)
        storage = fixed[1] if fixed else args.dtype
        on_cpu = self.device.type == "cpu"
        host, lease = self.pool.take(
            (batch, keypoints, *args.size), storage, torch.device("cpu"), users=users,
            pinned=not on_cpu,
        )
        pieces = 1
        while True:
            try:
                return host, lease, self._dense_pieces(args, fixed, host, pieces)
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
        self, args: RenderArgs, fixed: tuple | None, host: torch.Tensor, pieces: int
    ) -> torch.Tensor:
        """Renders ``args`` in ``pieces`` slices of the batch into ``host``; returns the weights.

        On the CPU the renderer writes straight into ``host``. On CUDA each piece is rendered and
        converted on the device, then copied into pinned ``host`` memory on a dedicated stream, so
        the copy of one piece overlaps the render of the next.
        """
        batch = host.shape[0]
        step = max(1, -(-batch // pieces))
        copy_stream = self._copy_stream
        scratch: list[Lease] = []
        weights = []
        try:
            for start in range(0, max(batch, 1), step):
                rows = slice(start, start + step)
                visibility = None if args.visibility is None else args.visibility[rows]
                part = replace(args, keypoints=args.keypoints[rows], visibility=visibility)
                target = host[rows]
                if copy_stream is None and fixed is None:
                    weights.append(heatmaps_from_args(part, out=target).weights)
                    continue
                values, values_lease = self.pool.take(tuple(target.shape), args.dtype, self.device)
                scratch.append(values_lease)
                weights.append(heatmaps_from_args(part, out=values).weights)
                if fixed is not None:
                    scale, storage = fixed
                    torch.round(values.mul_(scale), out=values)
                    if copy_stream is not None:
                        quantized, quantized_lease = self.pool.take(
                            tuple(target.shape), storage, self.device
                        )
                        scratch.append(quantized_lease)
                        values = quantized.copy_(values)
                if copy_stream is None:
                    target.copy_(values)
                else:
                    copy_stream.wait_stream(torch.cuda.current_stream(self.device))
                    with torch.cuda.stream(copy_stream):
                        target.copy_(values, non_blocking=True)
        finally:
            if copy_stream is not None:
                copy_stream.synchronize()  # device buffers are reused only after their copy
            for lease in scratch:
                lease.release()
        return torch.cat(weights) if len(weights) > 1 else weights[0]

    def close(self) -> None:
        """Renders what is queued, then stops the device thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join()
