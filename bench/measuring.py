"""Timing one row of bench/service.py: calls or a stream for a time budget, with the client's
and the server's CPU, and the summary statistics of the samples.

Only numpy and the light client at import time: the spawned client processes import it too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from heatmap_client import HeatmapClient

from scenarios import Scenario


def render_kwargs(sc: Scenario) -> dict:
    return {"size": sc.size, "sigma": sc.sigma, "method": sc.method, "coords": sc.coords}


def proc_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Run:
    """Samples of one row accumulated over rounds."""

    def __init__(self):
        self.wall_ms: list[float] = []  # per batch
        self.batches = 0
        self.elapsed_s = 0.0
        self.client_cpu_s = 0.0
        self.server_cpu_s = 0.0
        self.wire_bytes: list[int] = []
        self.coalesced: list[int] = []
        self.server_us: dict[str, list[int]] = {
            key: [] for key in ("queue", "render", "encode", "total")
        }

    def add_result(self, result) -> None:
        t = result.timings
        self.wire_bytes.append(result.wire_bytes)
        self.coalesced.append(t.coalesced_requests)
        for key in self.server_us:
            self.server_us[key].append(getattr(t, f"{key}_us"))


def timed_calls(call, budget_s: float, min_calls: int, run: Run, server_pid: int | None) -> None:
    """Calls ``call()`` one at a time for about ``budget_s`` (at least ``min_calls`` times)."""
    s0 = proc_cpu_s(server_pid) if server_pid else 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    while True:
        start = time.perf_counter()
        call()
        end = time.perf_counter()
        run.wall_ms.append((end - start) * 1e3)
        n += 1
        if n >= min_calls and end - t0 >= budget_s:
            break
    run.elapsed_s += time.perf_counter() - t0
    run.client_cpu_s += time.process_time() - c0
    if server_pid:
        run.server_cpu_s += proc_cpu_s(server_pid) - s0
    run.batches += n


def timed_stream(client: HeatmapClient, sc: Scenario, batches: list[np.ndarray], budget_s: float,
                 run: Run, server_pid: int, window: int) -> None:
    """``render_many`` over one stream for about ``budget_s``; per-batch time between results."""
    kwargs = render_kwargs(sc)
    ring = [np.empty(sc.shape, np.float32) for _ in range(2)]
    deadline = [0.0]

    def requests():
        i = 0
        while time.perf_counter() < deadline[0] or i < 2 * window:
            yield {"keypoints": batches[i % len(batches)], "out": ring[i % 2], **kwargs}
            i += 1

    s0 = proc_cpu_s(server_pid)
    c0, t0 = time.process_time(), time.perf_counter()
    deadline[0] = t0 + budget_s
    last, n = t0, 0
    for result in client.render_many(requests(), window=window):
        now = time.perf_counter()
        run.wall_ms.append((now - last) * 1e3)
        last = now
        run.add_result(result)
        n += 1
    run.elapsed_s += time.perf_counter() - t0
    run.client_cpu_s += time.process_time() - c0
    run.server_cpu_s += proc_cpu_s(server_pid) - s0
    run.batches += n


def summarize(run: Run, sc: Scenario, request_bytes: int | None) -> dict:
    wall = np.asarray(run.wall_ms)
    out = {
        "batches": run.batches,
        "median_ms": float(np.median(wall)),
        "p99_ms": float(np.percentile(wall, 99)),
        "mean_ms": float(wall.mean()),
        "samples_per_s": run.batches * sc.batch / run.elapsed_s,
        "batches_per_s": run.batches / run.elapsed_s,
        "client_cpu_ms_per_batch": run.client_cpu_s * 1e3 / run.batches,
        "elapsed_s": run.elapsed_s,
    }
    if run.wire_bytes:
        out.update(
            reply_payload_bytes=float(np.mean(run.wire_bytes)),
            request_bytes=request_bytes,
            wire_bytes_per_batch=float(np.mean(run.wire_bytes)) + (request_bytes or 0),
            mean_coalesced=float(np.mean(run.coalesced)),
            server_cpu_ms_per_batch=run.server_cpu_s * 1e3 / run.batches,
            server_median_us={k: float(np.median(v)) for k, v in run.server_us.items()},
        )
    return out
