"""Loader-like client processes for bench/service.py: each spawned process has its own
HeatmapClient and renders with ``out=`` for a fixed time; the parent gathers their samples.

Only numpy and the light client at import time: this module is what the children import.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time

import numpy as np

from heatmap_client import HeatmapClient

from measuring import Run, proc_cpu_s, render_kwargs
from scenarios import Scenario


def _client_worker(index: int, tasks, results, barrier) -> None:
    """A loader-like process: its own HeatmapClient per target, renders with out= until its time is
    up. Runs in a spawned process; reports its samples to ``results``."""
    clients: dict[str, HeatmapClient] = {}
    while (task := tasks.get()) is not None:
        try:
            target = task["target"]
            if target not in clients:
                clients[target] = HeatmapClient(target, timeout=60)
            client = clients[target]
            batches = task["batches"]
            kwargs = task["kwargs"]
            out = np.empty(task["shape"], np.float32)
            for i in range(3):  # warm up: the channel and the server's buffers
                client.render(batches[i % len(batches)], out=out, **kwargs)
        except Exception as error:  # noqa: BLE001 - reported to the parent
            barrier.abort()
            results.put({"index": index, "error": repr(error)})
            continue
        try:
            barrier.wait(120)
            wall, coalesced, wire, queue_us, render_us, encode_us, total_us = ([] for _ in range(7))
            c0 = time.process_time()
            start = time.monotonic()
            deadline = start + task["duration_s"]
            i = index
            while True:
                t0 = time.perf_counter()
                result = client.render(batches[i % len(batches)], out=out, **kwargs)
                wall.append((time.perf_counter() - t0) * 1e3)
                t = result.timings
                coalesced.append(t.coalesced_requests)
                wire.append(result.wire_bytes)
                queue_us.append(t.queue_us)
                render_us.append(t.render_us)
                encode_us.append(t.encode_us)
                total_us.append(t.total_us)
                i += 1
                if time.monotonic() >= deadline:
                    break
            end = time.monotonic()
            results.put({
                "index": index, "start": start, "end": end, "cpu_s": time.process_time() - c0,
                "wall_ms": wall, "coalesced": coalesced, "wire": wire,
                "server_us": {"queue": queue_us, "render": render_us, "encode": encode_us,
                              "total": total_us},
            })
        except Exception as error:  # noqa: BLE001
            results.put({"index": index, "error": repr(error)})
    for client in clients.values():
        client.close()


class ClientPool:
    """``count`` persistent spawned processes, started once for the whole run."""

    def __init__(self, count: int):
        ctx = mp.get_context("spawn")
        self.count = count
        self.barrier = ctx.Barrier(count + 1)
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(count)]
        self.procs = [
            ctx.Process(target=_client_worker, args=(i, self.tasks[i], self.results, self.barrier),
                        daemon=True)
            for i in range(count)
        ]
        for proc in self.procs:
            proc.start()

    def run(self, target: str, sc: Scenario, batches: list[np.ndarray], duration_s: float,
            run: Run, server_pid: int) -> None:
        self.barrier.reset()
        for q in self.tasks:
            q.put({"target": target, "batches": batches, "kwargs": render_kwargs(sc),
                   "shape": sc.shape, "duration_s": duration_s})
        try:
            self.barrier.wait(180)  # the parent is a party too: released when all are warm
        except threading.BrokenBarrierError:
            pass  # a child failed; its error is in the results
        s0 = proc_cpu_s(server_pid)
        replies = []
        for _ in range(self.count):
            try:
                replies.append(self.results.get(timeout=duration_s + 180))
            except queue.Empty:
                raise RuntimeError("client processes did not report in time") from None
        server_cpu = proc_cpu_s(server_pid) - s0
        errors = [r["error"] for r in replies if "error" in r]
        if errors:
            raise RuntimeError(f"client process failed: {errors[0]}")
        run.server_cpu_s += server_cpu
        run.elapsed_s += max(r["end"] for r in replies) - min(r["start"] for r in replies)
        run.batches += sum(len(r["wall_ms"]) for r in replies)
        run.client_cpu_s += sum(r["cpu_s"] for r in replies)  # / all batches = mean per batch
        for r in replies:
            run.wall_ms.extend(r["wall_ms"])
            run.wire_bytes.extend(r["wire"])
            run.coalesced.extend(r["coalesced"])
            for key in run.server_us:
                run.server_us[key].extend(r["server_us"][key])

    def close(self) -> None:
        for q in self.tasks:
            q.put(None)
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
