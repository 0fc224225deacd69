"""Load: concurrent clients, mixed shapes, codecs and dtypes; no errors, exact results, flat memory.

Sizes come from the environment, so that ``make test`` (and CI) runs a bounded version:

    HEATMAP_LOAD_CLIENTS    concurrent clients (default 16)
    HEATMAP_LOAD_REQUESTS   requests per client after warm-up (default 40)

The long run, a few hundred requests per client::

    HEATMAP_LOAD_REQUESTS=400 .venv/bin/python -m pytest tests/e2e/test_load.py -s

The server's resident memory (``VmRSS`` of its process) is read after warm-up and at the end; run
with ``-s`` to see the figures.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from heatmap_client import HeatmapClient, HeatmapError
from heatmap_render import render_heatmaps

from live_server import running_server
from probes import free_port, scrape, wait_for

CLIENTS = int(os.environ.get("HEATMAP_LOAD_CLIENTS", "16"))
REQUESTS = int(os.environ.get("HEATMAP_LOAD_REQUESTS", "40"))
WARM_UP = 12  # requests per client before the first memory reading
# After warm-up the pooled buffers, kernel tables and allocator arenas are in place: what is left
# to grow is a leak. Allowance for allocator noise and for coalesced batch shapes not yet seen.
RSS_GROWTH_LIMIT = 96 * 1024 * 1024
FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# (batch, keypoints, instances or None, size, sigma, method, codec, dtype)
SHAPES = [
    (1, 17, None, (64, 48), 2.0, "msra", "zstd", "float32"),
    (4, 17, None, (64, 48), 2.0, "msra", "zstd", "float32"),
    (8, 17, None, (96, 72), 3.0, "udp", "separable", "float32"),
    (2, 68, None, (64, 64), 1.5, "dark", "zstd", "float16"),
    (3, 5, None, (32, 32), 1.0, "seed", "none", "float32"),
    (2, 17, 3, (64, 48), 2.0, "msra", "separable", "float32"),
    (1, 21, 2, (128, 96), 2.0, "udp", "zstd", "bfloat16"),
    (6, 14, None, (48, 48), 2.5, "msra", "none", "float16"),
    (0, 17, None, (64, 48), 2.0, "msra", "zstd", "float32"),
    (5, 0, None, (64, 48), 2.0, "msra", "zstd", "float32"),
]


def _case(index: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Request options, and the heatmaps and weights the local renderer gives for them."""
    batch, keypoints, instances, size, sigma, method, codec, dtype = SHAPES[index]
    shape = (batch, keypoints) if instances is None else (batch, instances, keypoints)
    rng = np.random.default_rng(index)
    points = rng.uniform(-4, max(size) + 4, size=(*shape, 2)).astype(np.float32)
    visibility = (rng.uniform(size=shape) > 0.2).astype(np.float32)
    options = dict(keypoints=points, size=size, sigma=sigma, method=method, codec=codec,
                   dtype=dtype, visibility=visibility)
    local = render_heatmaps(points, size, sigma, method=method, visibility=visibility,
                            dtype=FLOAT_DTYPES[dtype])
    return options, local.heatmaps.float().numpy(), local.weights.numpy()


CASES = [_case(index) for index in range(len(SHAPES))]


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


def _work(client: HeatmapClient, client_index: int, count: int, errors: list, done: list) -> None:
    """One client's requests: even clients pipeline with render_many, odd ones call render."""
    order = [(client_index + step) % len(CASES) for step in range(count)]
    try:
        if client_index % 2 == 0:
            results = client.render_many((CASES[index][0] for index in order), window=4)
        else:
            results = (client.render(**CASES[index][0]) for index in order)
        for index, result in zip(order, results, strict=True):
            _, heatmaps, weights = CASES[index]
            np.testing.assert_array_equal(result.heatmaps, heatmaps)
            np.testing.assert_array_equal(result.weights, weights)
            done.append(1)
    except (HeatmapError, AssertionError) as error:
        errors.append(f"client {client_index}: {error}")


def _round(clients: list[HeatmapClient], count: int) -> tuple[int, list[str], float]:
    errors: list[str] = []
    done: list[int] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        for future in [pool.submit(_work, client, index, count, errors, done)
                       for index, client in enumerate(clients)]:
            future.result()
    return len(done), errors, time.perf_counter() - started


@pytest.mark.timeout(600)
def test_concurrent_clients_get_exact_results_and_server_memory_stays_flat():
    port = free_port()
    with running_server("--metrics-port", str(port)) as server:
        pid = server.process.pid
        rss_start = _rss_bytes(pid)
        clients = [HeatmapClient(server.target, timeout=120) for _ in range(CLIENTS)]
        try:
            warmed, errors, _ = _round(clients, WARM_UP)
            assert not errors, errors[:5]
            rss_warm = _rss_bytes(pid)
            peak, sampling = [rss_warm], threading.Event()

            def sample() -> None:
                while not sampling.wait(0.2):
                    peak.append(_rss_bytes(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            served, errors, seconds = _round(clients, REQUESTS)
            sampling.set()
            sampler.join()
            rss_end = _rss_bytes(pid)
            samples = scrape(port)
        finally:
            for client in clients:
                client.close()
        assert wait_for(lambda: scrape(port).value("heatmap_in_flight_requests") == 0)
    total = CLIENTS * REQUESTS
    mib = 1024 * 1024
    coalesced = (samples.value("heatmap_coalesced_requests_sum")
                 / max(1, samples.value("heatmap_coalesced_requests_count")))
    print(f"\nload: {CLIENTS} clients x {REQUESTS} requests = {total} after {warmed} warm-up, "
          f"{served} exact, {len(errors)} errors, {seconds:.1f} s ({served / seconds:.0f} req/s); "
          f"server RSS start {rss_start / mib:.0f} MiB, after warm-up {rss_warm / mib:.0f} MiB, "
          f"peak {max(peak) / mib:.0f} MiB, end {rss_end / mib:.0f} MiB "
          f"(growth {(rss_end - rss_warm) / mib:+.1f} MiB); "
          f"requests per device call {coalesced:.2f}")
    assert not errors, errors[:5]
    assert served == total
    assert sum(samples.value("heatmap_requests_total", rpc=rpc, code="OK")
               for rpc in ("Render", "RenderUnary")) > 0
    assert rss_end - rss_warm < RSS_GROWTH_LIMIT, (rss_warm, rss_end)
