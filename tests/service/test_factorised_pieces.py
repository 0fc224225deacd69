"""Profiles, profile tables and SimCC labels rendered in pieces: equal to the whole, stopped when
every caller went away, and lighter work served between the pieces."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from heatmap_render import check_render_args, check_simcc_args
from heatmap_server import factorised
from heatmap_server import pieces as pieces_module
from heatmap_server.batching import Batcher

from probes import render_job


def _render_args(shape, method, sigma, seed=0, visible=0.8):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-3, 35, (*shape, 2)).astype(np.float32)
    visibility = (rng.uniform(0, 1, shape) < visible).astype(np.float32)
    if sigma == "per element":
        sigma = rng.uniform(1.0, 3.0, shape).astype(np.float32)
    return check_render_args(points, (32, 40), sigma, method=method, coords="heatmap",
                             input_size=None, visibility=visibility, dtype=torch.float32)


def _simcc_args(shape, seed=0, normalize=True):
    rng = np.random.default_rng(seed)
    # Within the 48 x 64 input, a few past its borders.
    points = (rng.uniform(-0.05, 1.05, (*shape, 2)) * [48, 64]).astype(np.float32)
    visibility = (rng.uniform(0, 1, shape) < 0.8).astype(np.float32)
    return check_simcc_args(points, (64, 48), (2.0, 2.5), visibility=visibility,
                            normalize=normalize)


def _decoded(rendered, codec: str) -> list[np.ndarray]:
    """The reply's arrays as profiles (a table's rows looked up), and its weights."""
    arrays = [array.copy() for array in rendered.arrays]
    if codec == "profile_table":
        row_table, col_table, row_index, col_index = arrays
        arrays = [row_table[row_index], col_table[col_index]]
    return [*arrays, rendered.weights.copy()]


def _render(device, jobs, piece_work=None, monkeypatch=None):
    if piece_work is not None:
        monkeypatch.setattr(pieces_module, "PIECE_WORK", piece_work)
    batcher = Batcher(device, max_delay_us=200_000)
    try:
        async def together():
            with batcher._condition:  # queued before the device thread looks: one group
                tasks = [asyncio.ensure_future(batcher.render(job)) for job in jobs]
                await asyncio.sleep(0)
            return await asyncio.gather(*tasks)

        return asyncio.run(together())
    finally:
        batcher.close()


@pytest.mark.parametrize("piece_work", [300, 4_000, 100_000])
@pytest.mark.parametrize("codec", ["separable", "profile_table"])
@pytest.mark.parametrize("shape,method,sigma", [
    ((3, 5), "msra", 2.0),
    ((2, 3, 4), "udp", 2.0),  # (B, N, K): instances stay together in a piece
    ((2, 3, 4), "seed", "per element"),
    ((3, 6), "dark", [1.0, 2.0, 1.5, 2.5, 3.0, 1.2]),
])
def test_profiles_in_pieces_equal_the_whole(device, monkeypatch, piece_work, codec, shape, method,
                                            sigma):
    jobs = [render_job(_render_args(shape, method, sigma, seed=seed), codec=codec)
            for seed in range(2)]
    whole = [_decoded(result, codec) for result in _render(device, jobs)]
    assert all(np.count_nonzero(weights) > weights.size // 2 for *_, weights in whole)
    pieces = _render(device, jobs, piece_work, monkeypatch)
    assert len(pieces_module.factorised_pieces(jobs[0].args)) > 1 or piece_work == 100_000
    for expected, result in zip(whole, pieces):
        for want, got in zip(expected, _decoded(result, codec)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("piece_work", [500, 5_000])
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("shape", [(3, 7), (2, 3, 5)])
def test_simcc_labels_in_pieces_equal_the_whole(device, monkeypatch, piece_work, dtype, shape):
    normalize = dtype != "uint8"  # fixed point holds labels up to 1
    jobs = [render_job(_simcc_args(shape, seed=seed, normalize=normalize), dtype=dtype)
            for seed in range(2)]
    whole = [_decoded(result, "zstd") for result in _render(device, jobs)]
    assert all(np.count_nonzero(weights) > weights.size // 2 for *_, weights in whole)
    pieces = _render(device, jobs, piece_work, monkeypatch)
    assert len(pieces_module.factorised_pieces(jobs[0].args)) > 1
    for expected, result in zip(whole, pieces):
        for want, got in zip(expected, _decoded(result, "zstd")):
            np.testing.assert_array_equal(got, want)


def _slowed(monkeypatch, name: str, seconds: float, calls: list) -> None:
    """``factorised.<name>`` sleeping ``seconds`` per piece, each call counted in ``calls``."""
    real = getattr(factorised, name)

    def slow(args, *rest, **options):
        calls.append(threading.current_thread().name)
        time.sleep(seconds)
        return real(args, *rest, **options)

    monkeypatch.setattr(factorised, name, slow)


def test_a_profiles_render_whose_callers_went_away_stops_at_a_piece_boundary(device,
                                                                             monkeypatch):
    monkeypatch.setattr(pieces_module, "PIECE_WORK", 2_000)
    rendered: list = []
    _slowed(monkeypatch, "profiles_from_args", 0.02, rendered)
    job = render_job(_render_args((40, 17), "msra", 2.0), codec="separable")
    assert len(pieces_module.factorised_pieces(job.args)) >= 100
    batcher = Batcher(device, max_delay_us=0)

    async def abandon():
        task = asyncio.ensure_future(batcher.render(job))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.sleep(0.3)

    try:
        asyncio.run(abandon())
    finally:
        batcher.close()
    assert batcher.abandoned == 1
    assert len(rendered) < 100


@pytest.mark.parametrize("heavy_target", ["profiles", "simcc"])
def test_light_work_is_served_between_the_pieces_of_a_heavy_factorised_render(device, monkeypatch,
                                                                              heavy_target):
    monkeypatch.setattr(pieces_module, "PIECE_WORK", 50_000)
    rendered: list = []
    name = "simcc_from_args" if heavy_target == "simcc" else "profiles_from_args"
    _slowed(monkeypatch, name, 0.01, rendered)
    if heavy_target == "simcc":
        heavy = render_job(_simcc_args((300, 17)))
    else:
        heavy = render_job(_render_args((300, 17), "udp", 2.0), codec="separable")
    light = render_job(_render_args((1, 3), "msra", 2.0))  # dense, one small piece
    assert len(pieces_module.factorised_pieces(heavy.args)) >= 20
    batcher = Batcher(device, max_delay_us=0)
    finished: dict[str, float] = {}

    async def both():
        async def timed(label, job):
            result = await batcher.render(job)
            finished[label] = time.perf_counter()
            result.release()

        heavy_task = asyncio.ensure_future(timed("heavy", heavy))
        while not rendered:  # the heavy render has begun
            await asyncio.sleep(0.005)
        await timed("light", light)
        await heavy_task

    try:
        asyncio.run(both())
    finally:
        batcher.close()
    assert finished["light"] < finished["heavy"]
