"""Small requests that cost a lot: their cost is counted before they run, they render in pieces,
they leave no memory behind, and a normal caller is served meanwhile (a real server, default
limits, loopback). RSS figures are the server process's own (``/proc``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from heatmap_client import HeatmapClient
from heatmap_render import render_heatmaps, render_profiles

from live_server import running_server
from probes import free_port, scrape

NORMAL = np.random.default_rng(1).uniform(0, 48, (8, 17, 2)).astype(np.float32)
# What a server may hold whatever its clients do (docs/memory.md), and a test server's cap.
RSS_LIMIT = 2 << 30


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def server():
    port = free_port()
    with running_server("--metrics-port", str(port)) as live:
        yield live, port


@pytest.fixture(scope="module")
def client(server):
    with HeatmapClient(server[0].target, timeout=120) as client:
        client.render(NORMAL, size=(64, 48), sigma=2.0)  # warm: pool, kernels
        yield client


def _while_running(call, client) -> tuple[object, list[float]]:
    """``call()`` in a thread; meanwhile a normal caller's finish times. Returns the call's
    result (or error) and, first, its own finish time."""
    outcome: list = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:  # noqa: BLE001 - asserted by the caller
            outcome.append(error)
        outcome.append(time.perf_counter())

    thread = threading.Thread(target=run)
    thread.start()
    served = []
    while thread.is_alive() and len(served) < 50:
        client.render(NORMAL, size=(64, 48), sigma=2.0)
        served.append(time.perf_counter())
    thread.join(120)
    result, finished = outcome
    return result, [finished, *served]


def test_a_long_profiles_request_renders_exactly_while_normal_calls_are_served(server, client):
    """16,000 keypoints on a 4096 x 1 map, udp: 128 KB asks for 262 MB of rows. It is served
    exactly, normal calls are served while it renders, and the server stays under its cap."""
    live, _ = server
    points = np.random.default_rng(2).uniform(0, 4096, (1, 16_000, 2)).astype(np.float32)
    points[..., 0] = 0.0
    result, (finished, *served) = _while_running(
        lambda: client.render_profiles(points, size=(4096, 1), sigma=2.0, method="udp"), client)
    local = render_profiles(points, (4096, 1), 2.0, method="udp")
    np.testing.assert_array_equal(result.rows, local.rows.numpy())
    np.testing.assert_array_equal(result.cols, local.cols.numpy())
    assert any(moment < finished for moment in served), "no normal call finished meanwhile"
    assert _status_bytes(live.process.pid, "VmHWM") < RSS_LIMIT


def test_simcc_at_its_output_limit_stays_under_the_cap(server, client):
    live, _ = server
    points = np.random.default_rng(3).uniform(0, 192, (4400, 17, 2)).astype(np.float32)
    result = client.render_simcc(points, (256, 192), (4.9, 5.66))
    assert result.x_labels.shape == (4400, 17, 384)
    assert np.isfinite(result.x_labels).all() and result.weights.any()
    assert _status_bytes(live.process.pid, "VmHWM") < RSS_LIMIT


def test_forty_thousand_distinct_sigmas_render_exactly_with_nothing_cached(server, client):
    """One sigma per keypoint, every one different: evaluated at the keypoints' own centres (the
    plan is linear in K), equal to the renderer, and the kernel cache gains no per-keypoint key."""
    _, port = server
    count = 40_000
    points = np.random.default_rng(4).uniform(0, 4, (1, count, 2)).astype(np.float32)
    sigma = np.linspace(0.3, 1.3, count, dtype=np.float32).reshape(1, count)
    before = scrape(port).value("heatmap_kernel_cache_bytes")
    result = client.render(points, size=(4, 4), sigma=sigma)
    local = render_heatmaps(points, (4, 4), sigma)
    np.testing.assert_array_equal(result.heatmaps, local.heatmaps.numpy())
    assert scrape(port).value("heatmap_kernel_cache_bytes") - before < 1 << 20


def test_new_sigma_sets_leave_no_memory_behind(server, client):
    """Ten requests of a million keypoints, each with a new pair of sigma values: each pair's
    plan is keyed by its two values, so the server grows by far less than the requests."""
    live, port = server
    count = 1_000_000
    points = np.zeros((1, count, 2), np.float32)
    cached = scrape(port).value("heatmap_kernel_cache_bytes")
    grown = []
    for index in range(10):
        sigma = np.where(np.arange(count) % 2 == 0, 0.5 + index / 100, 0.8 + index / 100)
        result = client.render(points, size=(1, 1), sigma=sigma.astype(np.float32)[None])
        assert result.weights.shape == (1, count)
        grown.append(_status_bytes(live.process.pid, "VmRSS"))
    assert scrape(port).value("heatmap_kernel_cache_bytes") - cached < 1 << 20
    assert grown[-1] - grown[0] < 300 << 20, [value >> 20 for value in grown]
