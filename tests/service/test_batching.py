"""The dynamic batcher: coalesced renders equal separate ones, and nothing leaks between callers."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from heatmap_client import HeatmapClient
from heatmap_render import check_render_args, render_heatmaps
from heatmap_server import device as device_module
from heatmap_server import pieces as pieces_module
from heatmap_server.batching import Batcher, QueueFull
from heatmap_server.buffers import BufferPool
from heatmap_server.jobs import RenderJob

from live_server import running_server
from probes import render_job


def _job(batch: int, *, keypoints: int = 5, size=(16, 12), sigma=2.0, seed=0, dtype="float32",
         separable=False, method="msra") -> RenderJob:
    points = np.random.default_rng(seed).uniform(0, 12, size=(batch, keypoints, 2))
    points = points.astype(np.float32)
    args = check_render_args(points, size, sigma, method=method, coords="heatmap", input_size=None,
                             visibility=None, dtype=torch.float32)
    return render_job(args, dtype=dtype, codec="separable" if separable else "zstd")


def _expected(job: RenderJob) -> np.ndarray:
    args = job.args
    return render_heatmaps(
        args.keypoints[:, 0], args.size, args.sigmas[0], method=args.method).heatmaps.numpy()


async def _submitted_together(batcher: Batcher, jobs: list[RenderJob]) -> list[asyncio.Task]:
    """Queues every job before the device thread may look (as a burst of callers would): holding
    the batcher's condition keeps its thread out while the tasks run up to their first await."""
    with batcher._condition:
        tasks = [asyncio.ensure_future(batcher.render(job)) for job in jobs]
        await asyncio.sleep(0)
    return tasks


async def _render_all(batcher: Batcher, jobs: list[RenderJob]):
    return await asyncio.gather(*await _submitted_together(batcher, jobs))


def test_coalesced_results_equal_separate_renders_and_each_caller_gets_its_slice(device):
    batcher = Batcher(device, max_delay_us=200_000)
    try:
        jobs = [_job(batch, seed=batch) for batch in (1, 3, 2, 4)]
        results = asyncio.run(_render_all(batcher, jobs))
    finally:
        batcher.close()
    assert [result.coalesced_requests for result in results] == [4, 4, 4, 4]
    for job, result in zip(jobs, results):
        assert result.arrays[0].shape == (job.args.batch, 5, 16, 12)
        np.testing.assert_array_equal(result.arrays[0], _expected(job))
        assert result.weights.shape == (job.args.batch, 5)
        result.release()


def test_mixed_parameters_are_never_coalesced(device):
    batcher = Batcher(device, max_delay_us=200_000)
    jobs = [_job(2), _job(2, sigma=3.0), _job(2, size=(16, 16)), _job(2, keypoints=6),
            _job(2, dtype="float16"), _job(2, separable=True), _job(2, method="udp"),
            _job(2, seed=9)]
    try:
        results = asyncio.run(_render_all(batcher, jobs))
    finally:
        batcher.close()
    # Only the first and the last share every parameter.
    assert results[0].coalesced_requests == 2 and results[-1].coalesced_requests == 2
    assert all(result.coalesced_requests == 1 for result in results[1:-1])
    np.testing.assert_array_equal(results[-1].arrays[0], _expected(jobs[-1]))


def test_max_batch_keypoints_splits_groups(device):
    batcher = Batcher(device, max_delay_us=100_000, max_batch_keypoints=20)
    try:
        results = asyncio.run(_render_all(batcher, [_job(2, seed=i) for i in range(4)]))  # 10 each
    finally:
        batcher.close()
    assert [result.coalesced_requests for result in results] == [2, 2, 2, 2]


def test_a_cancelled_caller_does_not_disturb_the_others(device):
    async def scenario(batcher: Batcher):
        (await batcher.render(_job(2, seed=9))).release()  # so that the next ones expect company
        jobs = [_job(2, seed=i) for i in range(3)]
        tasks = await _submitted_together(batcher, jobs)
        await asyncio.sleep(0.01)  # all three are queued, waiting for the delay to pass
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return jobs, done

    batcher = Batcher(device, max_delay_us=150_000)
    try:
        jobs, done = asyncio.run(scenario(batcher))
    finally:
        batcher.close()
    assert isinstance(done[1], asyncio.CancelledError)
    for index in (0, 2):
        np.testing.assert_array_equal(done[index].arrays[0], _expected(jobs[index]))
        done[index].release()


def test_buffers_are_reused_and_the_pool_is_bounded(device):
    pool = BufferPool(max_bytes=4 * 1024 * 1024)
    batcher = Batcher(device, max_delay_us=0, pool=pool)

    async def sequential(count: int):
        for seed in range(count):
            result = await batcher.render(_job(3, seed=seed, size=(32, 32)))
            result.release()

    try:
        asyncio.run(sequential(1))
        first = pool.allocations  # the host buffer (and on CUDA a device buffer)
        asyncio.run(sequential(20))
    finally:
        batcher.close()
    assert pool.allocations == first <= 2
    assert pool.idle_buffers == first and pool.idle_bytes <= pool.max_bytes


def test_a_full_queue_refuses_new_jobs(device):
    batcher = Batcher(device, max_delay_us=300_000, max_queue=2)

    async def flood():
        # Different sizes never coalesce: the device thread holds one, two wait, the rest bounce.
        jobs = [_job(1, seed=i, size=(8, 8 + i)) for i in range(6)]
        tasks = await _submitted_together(batcher, jobs)
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        outcomes = asyncio.run(flood())
    finally:
        batcher.close()
    refused = [outcome for outcome in outcomes if isinstance(outcome, QueueFull)]
    served = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    assert len(refused) >= 3 and len(served) >= 2
    for result in served:
        result.release()


def test_a_request_after_a_quiet_spell_does_not_wait_for_company(device):
    batcher = Batcher(device, max_delay_us=5_000_000)
    try:
        result = asyncio.run(batcher.render(_job(2)))
    finally:
        batcher.close()
    assert result.coalesced_requests == 1
    assert result.queue_us < 2_500_000  # far from the 5 s it would wait for company
    result.release()


def test_a_request_close_behind_another_waits_for_company(device):
    async def scenario(batcher: Batcher):
        (await batcher.render(_job(2, seed=0))).release()  # alone and at once: a quiet spell
        waiting = asyncio.ensure_future(batcher.render(_job(2, seed=1)))  # close behind it
        await asyncio.sleep(0.05)
        joining = asyncio.ensure_future(batcher.render(_job(2, seed=2)))
        return await asyncio.gather(waiting, joining)

    batcher = Batcher(device, max_delay_us=400_000)
    try:
        results = asyncio.run(scenario(batcher))
    finally:
        batcher.close()
    assert [result.coalesced_requests for result in results] == [2, 2]
    for result in results:
        result.release()


def test_zero_delay_never_coalesces(device):
    never = Batcher(device, max_delay_us=0)
    try:
        results = asyncio.run(_render_all(never, [_job(1, seed=i) for i in range(4)]))
    finally:
        never.close()
    assert [result.coalesced_requests for result in results] == [1, 1, 1, 1]


def test_concurrent_clients_are_coalesced_by_the_real_server():
    keypoints = [np.random.default_rng(i).uniform(0, 48, size=(4, 17, 2)).astype(np.float32)
                 for i in range(8)]
    with running_server("--max-delay-us", "100000") as server:
        with HeatmapClient(server.target, timeout=30) as client:
            client.render(keypoints[0], size=(64, 48), sigma=2.0)  # warm up
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(
                    lambda points: client.render(points, size=(64, 48), sigma=2.0), keypoints))
    assert max(result.timings.coalesced_requests for result in results) > 1
    for points, result in zip(keypoints, results):
        np.testing.assert_array_equal(
            result.heatmaps, render_heatmaps(points, (64, 48), 2.0).heatmaps.numpy())


def test_out_of_memory_splits_the_batch_and_retries(monkeypatch, device):


    real = device_module.heatmaps_from_args
    sizes = []

    def fails_above_two(args, out=None):
        sizes.append(args.batch)
        if args.batch > 2:
            raise torch.OutOfMemoryError("injected: the device is full")
        return real(args, out=out)

    monkeypatch.setattr(device_module, "heatmaps_from_args", fails_above_two)
    batcher = Batcher(device, max_delay_us=0)
    job = _job(7, seed=3)
    try:
        result = asyncio.run(batcher.render(job))
    finally:
        batcher.close()
    # 7 fails, then 4 (fails), then pieces of 2, 2, 2, 1.
    assert sizes[:2] == [7, 4] and sizes[-4:] == [2, 2, 2, 1]
    np.testing.assert_array_equal(result.arrays[0], _expected(job))
    result.release()


def test_out_of_memory_for_one_sample_is_reported(monkeypatch, device):


    def always_fails(args, out=None):
        raise torch.OutOfMemoryError("injected")

    monkeypatch.setattr(device_module, "heatmaps_from_args", always_fails)
    batcher = Batcher(device, max_delay_us=0)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            asyncio.run(batcher.render(_job(2)))
        assert batcher.pool.idle_buffers >= 1  # the host buffer went back despite the failure
    finally:
        batcher.close()


@pytest.mark.timeout(30)
def test_a_dead_device_thread_fails_its_callers_instead_of_hanging(monkeypatch, device):
    def broken(self):
        raise RuntimeError("injected: the device is gone")

    monkeypatch.setattr(Batcher, "_serve", broken)
    stopped = []
    batcher = Batcher(device, max_delay_us=0, on_stopped=stopped.append)
    batcher._thread.join(10)  # the thread has already died
    assert [str(error) for error in stopped] == ["injected: the device is gone"]

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.render(_job(1)))
    batcher.close()


def test_a_closed_batcher_refuses_with_batcher_closed(device):
    from heatmap_server.batching import BatcherClosed

    batcher = Batcher(device, max_delay_us=0)
    batcher.close()
    with pytest.raises(BatcherClosed):
        asyncio.run(batcher.render(_job(1)))


def test_a_failed_render_returns_its_buffer_to_the_pool(monkeypatch, device):


    def fails(args, out=None):
        raise RuntimeError("injected: not an out-of-memory error")

    batcher = Batcher(device, max_delay_us=0)
    try:
        asyncio.run(batcher.render(_job(2))).release()
        idle = batcher.pool.idle_buffers
        monkeypatch.setattr(device_module, "heatmaps_from_args", fails)
        with pytest.raises(RuntimeError, match="injected"):
            asyncio.run(batcher.render(_job(2)))
        assert batcher.pool.idle_buffers == idle  # the host buffer came back
    finally:
        batcher.close()


def test_idle_buffers_are_trimmed_after_a_while(device):
    pool = BufferPool(max_bytes=64 * 1024 * 1024, idle_s=0.2)
    first, lease = pool.take((1024, 1024), torch.float32, torch.device("cpu"))
    assert pool.leased_bytes >= first.numel() * 4
    lease.release()
    assert pool.idle_buffers == 1 and pool.leased_bytes == 0
    time.sleep(0.3)
    assert pool.trim() >= first.numel() * 4
    assert pool.idle_buffers == 0 and pool.idle_bytes == 0


def test_the_pool_keeps_no_more_than_its_idle_budget_idle():
    pool = BufferPool(max_bytes=6 * 1024 * 1024)
    leases = [pool.take((1024, 1024), torch.float32, torch.device("cpu"))[1] for _ in range(3)]
    for lease in leases:
        lease.release()
    assert pool.idle_buffers == 1 and pool.idle_bytes == 4 * 1024 * 1024


def _instances_job(shape, size, dtype="float32", seed=0, visible=None) -> RenderJob:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-3, size[1] + 3, size=(*shape, 2)).astype(np.float32)
    visibility = None
    if visible is not None:
        visibility = (rng.uniform(0, 1, shape) < visible).astype(np.float32)
    args = check_render_args(points, size, 2.0, method="msra", coords="heatmap", input_size=None,
                             visibility=visibility, dtype=torch.float32)
    return render_job(args, dtype=dtype)


@pytest.mark.parametrize("piece_work", [200, 5_000, 1 << 24])
@pytest.mark.parametrize("shape,dtype,visible", [
    ((2, 5, 3), "float32", None),  # (B, N, K): by sample, keypoint and instance range
    ((2, 7, 3), "uint8", 0.7),
    ((3, 4), "bfloat16", None),
])
def test_pieces_of_any_size_render_exactly_the_whole(device, monkeypatch, piece_work, shape, dtype,
                                                     visible):
    job = _instances_job(shape, (32, 40), dtype=dtype, visible=visible)
    batcher = Batcher(device, max_delay_us=0)
    try:
        whole = asyncio.run(batcher.render(job))
        expected = [whole.arrays[0].copy(), whole.weights.copy()]
        whole.release()
        monkeypatch.setattr(pieces_module, "PIECE_WORK", piece_work)
        pieces = asyncio.run(batcher.render(job))
    finally:
        batcher.close()
    np.testing.assert_array_equal(pieces.arrays[0], expected[0])
    np.testing.assert_array_equal(pieces.weights, expected[1])
    pieces.release()


def test_a_render_whose_callers_all_went_away_stops_at_a_piece_boundary(device, monkeypatch):
    monkeypatch.setattr(pieces_module, "PIECE_WORK", 64 * 64)  # one keypoint plane per piece
    batcher = Batcher(device, max_delay_us=0)
    rendered = []
    real = device_module.DeviceRenderer._render_piece

    def slow_piece(self, *args):
        rendered.append(1)
        time.sleep(0.02)
        return real(self, *args)

    monkeypatch.setattr(device_module.DeviceRenderer, "_render_piece", slow_piece)

    async def abandon():
        task = asyncio.ensure_future(batcher.render(_job(1, keypoints=200, size=(64, 64))))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.sleep(0.3)

    try:
        asyncio.run(abandon())
    finally:
        batcher.close()
    assert batcher.abandoned == 1
    assert len(rendered) < 100  # of 200 pieces
