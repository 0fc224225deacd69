"""Coalescing SimCC jobs and per-element sigmas: one device call equals separate renders, each
caller gets its own slice, and jobs that differ in any shared parameter never join."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from heatmap_client import HeatmapClient
from heatmap_render import check_render_args, check_simcc_args, render_heatmaps, render_simcc
from heatmap_server.batching import Batcher
from heatmap_server.jobs import RenderJob

from live_server import running_server
from probes import render_job

INPUT_SIZE, SIGMA = (256, 192), (4.9, 5.66)


def _points(shape, seed):
    return np.random.default_rng(seed).uniform(-20, 210, shape).astype(np.float32)


def _simcc_job(batch, *, seed=0, instances=None, visible=True, dtype="float32", **options):
    shape = (batch, 17, 2) if instances is None else (batch, instances, 17, 2)
    points = _points(shape, seed)
    visibility = None if visible else np.random.default_rng(seed).choice([0.0, 1.0], shape[:-1])
    args = check_simcc_args(points, INPUT_SIZE, options.pop("sigma", SIGMA),
                            visibility=visibility, **options)
    return render_job(args, dtype=dtype)


def _sigma_job(batch, *, seed=0, per_element=True):
    points = _points((batch, 3, 5, 2), seed)[..., :2] / 8
    sigma = 2.0
    if per_element:
        sigma = np.random.default_rng(seed + 100).uniform(0.8, 3.0, (batch, 3, 1))
    args = check_render_args(points, (32, 24), sigma, method="udp", coords="heatmap",
                             input_size=None, visibility=None, dtype=torch.float32)
    return render_job(args, dtype="float32"), points, sigma


async def _together(batcher: Batcher, jobs: list[RenderJob]):
    # Holding the batcher's condition keeps its thread out until every job is queued.
    with batcher._condition:
        tasks = [asyncio.ensure_future(batcher.render(job)) for job in jobs]
        await asyncio.sleep(0)
    return await asyncio.gather(*tasks)


def _render(device, jobs):
    batcher = Batcher(device, max_delay_us=200_000)
    try:
        return asyncio.run(_together(batcher, jobs))
    finally:
        batcher.close()


def _separately(job: RenderJob):
    args = job.args
    points = args.keypoints if args.has_instances else args.keypoints[:, 0]
    visibility = args.visibility
    if visibility is not None and not args.has_instances:
        visibility = visibility[:, 0]
    return render_simcc(points.cpu(), args.input_size, args.sigma, split_ratio=args.split_ratio,
                        smoothing=args.smoothing, label_smooth_weight=args.label_smooth_weight,
                        normalize=args.normalize,
                        visibility=None if visibility is None else visibility.cpu())


def test_simcc_jobs_coalesce_and_equal_separate_renders(device):
    # Visibility given by some and not others: the joined batch fills ones for the others.
    jobs = [_simcc_job(batch, seed=batch, visible=batch % 2 == 0) for batch in (1, 3, 2, 4)]
    results = _render(device, jobs)
    assert [result.coalesced_requests for result in results] == [4] * 4
    for job, result in zip(jobs, results):
        expected = _separately(job)
        x_labels, y_labels = result.arrays
        np.testing.assert_array_equal(x_labels, expected.x_labels.numpy())
        np.testing.assert_array_equal(y_labels, expected.y_labels.numpy())
        np.testing.assert_array_equal(result.weights, expected.weights.numpy())


def test_simcc_jobs_with_instances_coalesce(device):
    jobs = [_simcc_job(2, seed=seed, instances=3, normalize=False) for seed in range(3)]
    results = _render(device, jobs)
    assert all(result.coalesced_requests == 3 for result in results)
    for job, result in zip(jobs, results):
        np.testing.assert_array_equal(result.arrays[0], _separately(job).x_labels.numpy())


def test_simcc_jobs_that_differ_never_coalesce(device):
    jobs = [
        _simcc_job(2), _simcc_job(2, sigma=(4.9, 6.0)), _simcc_job(2, split_ratio=3.0),
        _simcc_job(2, normalize=False), _simcc_job(2, smoothing="standard"),
        _simcc_job(2, smoothing="standard", label_smooth_weight=0.1), _simcc_job(2, instances=1),
        _simcc_job(2, dtype="float16"), _sigma_job(2, per_element=False)[0], _simcc_job(2, seed=9),
    ]
    results = _render(device, jobs)
    assert results[0].coalesced_requests == 2 and results[-1].coalesced_requests == 2
    assert all(result.coalesced_requests == 1 for result in results[1:-1])
    np.testing.assert_array_equal(results[-1].arrays[1], _separately(jobs[-1]).y_labels.numpy())


def test_per_element_sigmas_coalesce_each_with_its_own_batch(device):
    made = [_sigma_job(batch, seed=batch) for batch in (2, 1, 3)]
    results = _render(device, [job for job, _, _ in made])
    assert [result.coalesced_requests for result in results] == [3] * 3
    for (_, points, sigma), result in zip(made, results):
        expected = render_heatmaps(points, (32, 24), sigma, method="udp").heatmaps.numpy()
        np.testing.assert_array_equal(result.arrays[0], expected)


def test_per_element_and_shared_sigma_do_not_join(device):
    shared, per_element = _sigma_job(2, per_element=False), _sigma_job(2, seed=5)
    results = _render(device, [shared[0], per_element[0]])
    assert [result.coalesced_requests for result in results] == [1, 1]
    expected = render_heatmaps(per_element[1], (32, 24), per_element[2], method="udp").heatmaps
    np.testing.assert_array_equal(results[1].arrays[0], expected.numpy())


def test_concurrent_simcc_clients_coalesce_on_the_real_server():
    # Four of each normalisation: only requests with equal parameters may join.
    requests = [(_points((4, 17, 2), seed), seed % 2 == 0) for seed in range(8)]
    with running_server("--max-delay-us", "100000") as server:
        with HeatmapClient(server.target, timeout=60) as client:
            client.render_simcc(requests[0][0], INPUT_SIZE, SIGMA)  # warm up
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(
                    lambda item: client.render_simcc(item[0], INPUT_SIZE, SIGMA, normalize=item[1]),
                    requests,
                ))
    assert max(result.timings.coalesced_requests for result in results) > 1
    for (points, normalize), result in zip(requests, results):
        expected = render_simcc(points, INPUT_SIZE, SIGMA, normalize=normalize)
        np.testing.assert_array_equal(result.x_labels, expected.x_labels.numpy())
        np.testing.assert_array_equal(result.y_labels, expected.y_labels.numpy())
        np.testing.assert_array_equal(result.weights, expected.weights.numpy())
