"""The dynamic batcher and the device thread that owns the device.

Requests with the same render parameters are rendered in one call (up to ``max_batch_keypoints``
keypoints) when they arrive within ``max_delay_us`` of the oldest, as Triton's dynamic batcher
does with ``max_queue_delay_microseconds``. The oldest only waits for company when company is
likely: when the request before it arrived less than ``max_delay_us`` earlier. A lone loader
calling one batch at a time would otherwise pay the whole delay on every call for nothing; under
load the requests come closer together than the delay and wait as before.

One thread runs every device call (:class:`~heatmap_server.device.DeviceRenderer`), so CUDA work
is serialised without locks and the asyncio event loop never waits on heavy rendering. Light work
on a CPU server skips the queue and the thread when nothing waits for the device
(:meth:`Batcher.render_inline`): two hand-offs between threads cost more than its render. A heavy
render goes piece by piece; between its pieces the thread stops it if every caller went away, and
serves the light groups (at most ``PIECE_WORK`` each) queued meanwhile, so one heavy request cannot
hold every other caller for seconds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .buffers import BufferPool
from .device import Abandoned, DeviceRenderer
from .jobs import Rendered, RenderJob
from .pieces import PIECE_WORK

__all__ = [
    "INLINE_WORK",
    "Batcher",
    "BatcherClosed",
    "QueueFull",
]

# Jobs of at most this many element passes (see ReplyLayout.work) render on the caller's thread
# when the batcher is idle: one to two ms of work on one core (B=32, K=17, 64x48 dense is 1.7M;
# B=32, K=68, 64x64 profiles 2.2M, B=8, K=133, 96x72 profiles 1.4M), less than the device
# thread's two hand-offs and the coalescing they allow save.
INLINE_WORK = 4 * 1024 * 1024

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` requests already."""


class BatcherClosed(RuntimeError):
    """The batcher takes no more work: it was closed, or its device thread stopped."""


@dataclass(eq=False)
class _Entry:
    job: RenderJob
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    cancelled: threading.Event = field(default_factory=threading.Event)
    # The request before it arrived within the delay: worth waiting for more.
    expects_company: bool = False


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
        self.device = device
        self.max_delay_s = max_delay_us / 1e6
        self.max_batch_keypoints = max_batch_keypoints
        self.max_queue = max_queue
        self.pool = pool or BufferPool()
        self._on_stopped = on_stopped
        self._renderer = DeviceRenderer(device, self.pool)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._last_arrival = -float("inf")
        self._condition = threading.Condition()
        self._closed = False
        self.abandoned = 0  # renders stopped at a piece boundary: every caller went away
        self.inline_renders = 0  # light jobs rendered on their caller's thread
        self._thread = threading.Thread(target=self._run, name="device", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        with self._condition:
            return len(self._pending)

    def render_inline(self, job: RenderJob) -> Rendered | None:
        """Renders a light job on the calling thread when that is the cheapest way: a CPU device,
        work of at most ``INLINE_WORK``, nothing waiting for the device thread, and no company
        likely (the request before it came longer than ``max_delay_us`` ago; under load requests
        come closer together, and coalescing them saves more than the hand-offs cost). None
        otherwise: the job goes through :meth:`render`."""
        if self.device.type != "cpu" or job.work > INLINE_WORK or self._closed:
            return None
        if self._pending:  # read without the lock: a job arriving meanwhile only waits as before
            return None
        company = job.arrived - self._last_arrival < self.max_delay_s
        self._last_arrival = max(self._last_arrival, job.arrived)
        if company:
            return None
        self.inline_renders += 1
        (rendered,) = self._renderer.render([job])
        return rendered

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
            future = entry.future
            if future.done() and not future.cancelled() and not future.exception():
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

    def _next_light_group(self) -> list[_Entry] | None:
        """The first queued light job and the jobs it coalesces with, taken now (no waiting)."""
        with self._condition:
            first = next(
                (entry for entry in self._pending if entry.job.work <= PIECE_WORK), None
            )
            if first is None:
                return None
            self._pending.remove(first)
            group, keypoints = [first], first.job.keypoint_count
            for entry in list(self._pending):
                fits = keypoints + entry.job.keypoint_count <= self.max_batch_keypoints
                if fits and entry.job.key == first.job.key and entry.job.work <= PIECE_WORK:
                    group.append(entry)
                    keypoints += entry.job.keypoint_count
                    self._pending.remove(entry)
            return group

    def _between_pieces(self, group: list[_Entry]) -> None:
        """Runs between the pieces of ``group``'s render, on the device thread."""
        if all(entry.cancelled.is_set() for entry in group):
            raise Abandoned(f"{len(group)} callers went away")
        # Light work only, and a bounded number of groups: no nesting, no starving the heavy one.
        for _ in range(8):
            light = self._next_light_group()
            if light is None:
                return
            self._render_group(light, between_pieces=None)

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
            self._render_group(group, between_pieces=self._between_pieces)

    def _render_group(self, group: list[_Entry], between_pieces) -> None:
        group = [entry for entry in group if not entry.cancelled.is_set()]
        if not group:
            return
        hook = None if between_pieces is None else (lambda: between_pieces(group))
        try:
            results: list = self._renderer.render([entry.job for entry in group], hook)
            errors: list = [None] * len(group)
        except Exception as error:  # noqa: BLE001 - reported to every caller of the group
            if isinstance(error, Abandoned):
                self.abandoned += 1
            results, errors = [None] * len(group), [error] * len(group)
        for entry, result, error in zip(group, results, errors):
            entry.loop.call_soon_threadsafe(_deliver, entry.future, result, error)

    def close(self) -> None:
        """Renders what is queued, then stops the device thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join()
