"""Benchmark: the heatmap service end to end, against rendering in the loader process.

Starts the real server three times as subprocesses on loopback and measures, in one run, per
scenario (A: the dynamic batcher on, default delay; B: ``--max-delay-us 0``, which still coalesces
whatever is already queued when the device thread picks up a request; C: ``--max-delay-us 0
--max-batch-keypoints 1``, which really renders one request per device call, i.e. batcher off):

  seed_loop        local: the classic per-keypoint function (bench/reference_loops.py)
  mmpose_loop      local: mmpose-style numpy loop (the "Done when" anchor)
  vectorised       local: heatmap_server.render.render_heatmaps(..., out=reused tensor)
  render           remote: HeatmapClient.render(..., out=reused array), one call at a time, server A
  render_fresh     remote: the same without out= (a fresh array per call)
  render_nobatch   remote: as ``render`` but on server C (a lone client pays no coalescing delay)
  render_many      remote: HeatmapClient.render_many(window=4) over one stream, server A
  8proc_batcher    8 client processes (spawn), each rendering with out= for a fixed time, server A
  8proc_nodelay    the same on server B (no delay, opportunistic coalescing)
  8proc_nobatch    the same on server C (batcher off)

Columns: ms per batch (median, p99; per call for render and the local rows, time between
consecutive results for render_many, per call in each child for the 8-process rows), samples/s
(samples / wall time of the whole loop; all 8 processes together for the 8proc rows), client CPU
ms per batch (time.process_time of the client process / batches; averaged over the children),
server CPU ms per batch (utime+stime of the server process from /proc), bytes on the wire per batch
(request message + reply payload, without gRPC/HTTP2 framing) and the mean coalesced batch size
(result.timings.coalesced_requests).

Everything shares this machine's cores: the server, the clients and the local loops. On a
dedicated server machine the client CPU column is what a loader pays.

The local loops return a list of per-sample (K, H, W) arrays as a Dataset's __getitem__ does; the
collate into one batch is not timed (which only favours them). Before timing, the server's reply
is checked bit-for-bit against the local renderer and the loops against it (max |diff| <= 1e-6).

Usage: .venv/bin/python bench/service.py [--json PATH] [--png PATH] [--quick] [--profile]
       [--device cpu|cuda] [--scenarios S2,S3,S1]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import multiprocessing as mp
import os
import platform
import pstats
import queue
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client import HeatmapClient  # noqa: E402  (light: no torch at import time)
from reference_loops import mmpose_loop, seed_loop  # noqa: E402
from report import cpu_model, git_commit, grouped_bars, pyplot, write_json  # noqa: E402
from scenarios import (  # noqa: E402
    SCENARIOS as ALL_SCENARIOS,
    Scenario,
    from_normalized,
    make_keypoints,
    parse_scenarios,
    to_normalized,
)

# torch and heatmap_server are imported lazily, in the parent only: the spawned client processes
# import this module too and must stay as light as a loader's gRPC client.

TOLERANCE = 1e-6
WALL_TARGET = 0.5  # remote render wall / mmpose loop wall, at TARGET_SCENARIOS
CPU_TARGET = 0.15  # remote render client CPU / mmpose loop CPU, at TARGET_SCENARIOS
MANY_TARGET = 1.3  # render_many batches/s / render batches/s
TARGET_SCENARIOS = ("S2", "S3")
ANCHOR_MMPOSE_MS = {"S2": 5.9, "S3": 25.0}  # the anchors for the mmpose-style loop
WINDOW = 4
CLIENTS = 8

LOCAL_ROWS = ("seed_loop", "mmpose_loop", "vectorised")
SINGLE_REMOTE_ROWS = ("render", "render_fresh", "render_nobatch", "render_many")
MULTI_ROWS = ("8proc_batcher", "8proc_nodelay", "8proc_nobatch")
MULTI_SERVER = {"8proc_batcher": "A", "8proc_nodelay": "B", "8proc_nobatch": "C"}
ROWS = LOCAL_ROWS + SINGLE_REMOTE_ROWS + MULTI_ROWS
DESCRIPTIONS = {
    "seed_loop": "local, seed-style loop",
    "mmpose_loop": "local, mmpose-style numpy loop",
    "vectorised": "local, render_heatmaps(out=)",
    "render": "remote render(out=), batcher on",
    "render_fresh": "remote render(), no out=, batcher on",
    "render_nobatch": "remote render(out=), batcher off",
    "render_many": f"remote render_many(window={WINDOW}), batcher on",
    "8proc_batcher": f"{CLIENTS} client processes, batcher on",
    "8proc_nodelay": f"{CLIENTS} client processes, --max-delay-us 0",
    "8proc_nobatch": f"{CLIENTS} client processes, batcher off",
}


# S2, S3, S1 in this order: it is the default --scenarios, and a scenario's index in it seeds its
# keypoints (default_rng([seed, index]) in scenario_inputs), so it stays as it was.
SCENARIOS = {name: ALL_SCENARIOS[name] for name in ("S2", "S3", "S1")}


# --- inputs (bench/scenarios.py, drawn as bench/render.py draws them) -----------------------------


def scenario_inputs(sc: Scenario, seed: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` batches as the request sends them, and the same in heatmap pixels (float32, in
    the renderer's order of operations, for the mmpose loop)."""
    rng = np.random.default_rng([seed, list(SCENARIOS).index(sc.name)])
    sent, pixels = [], []
    for _ in range(count):
        points = make_keypoints(sc, rng)
        if sc.coords == "normalized":
            normalized = to_normalized(points, sc)
            sent.append(normalized)
            pixels.append(from_normalized(normalized, sc))
        else:
            sent.append(points)
            pixels.append(points)
    return sent, pixels


def render_kwargs(sc: Scenario) -> dict:
    return {"size": sc.size, "sigma": sc.sigma, "method": sc.method, "coords": sc.coords}


# --- measuring ------------------------------------------------------------------------------------


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
        self.server_us: dict[str, list[int]] = {k: [] for k in ("queue", "render", "encode", "total")}

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
                 run: Run, server_pid: int) -> None:
    """``render_many`` over one stream for about ``budget_s``; per-batch time between results."""
    kwargs = render_kwargs(sc)
    ring = [np.empty(sc.shape, np.float32) for _ in range(2)]
    deadline = [0.0]

    def requests():
        i = 0
        while time.perf_counter() < deadline[0] or i < 2 * WINDOW:
            yield {"keypoints": batches[i % len(batches)], "out": ring[i % 2], **kwargs}
            i += 1

    s0 = proc_cpu_s(server_pid)
    c0, t0 = time.process_time(), time.perf_counter()
    deadline[0] = t0 + budget_s
    last, n = t0, 0
    for result in client.render_many(requests(), window=WINDOW):
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


# --- servers --------------------------------------------------------------------------------------

_LISTENING = re.compile(r"listening on (\S+):(\d+)")


class Server:
    """``heatmap-server serve`` in a subprocess on loopback (as tests/live_server.py does)."""

    def __init__(self, name: str, flags: list[str], timeout: float = 120.0):
        self.name = name
        self.command = [sys.executable, "-m", "heatmap_server", "serve", "--host", "127.0.0.1",
                        "--port", "0", *flags]
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        found, port = threading.Event(), []

        def drain():
            try:
                for line in self.process.stderr:
                    self.lines.append(line.rstrip())
                    match = _LISTENING.search(line)
                    if match and not port:
                        port.append(int(match.group(2)))
                        found.set()
            except (OSError, ValueError):
                pass
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(timeout) or not port:
            self.stop()
            raise RuntimeError(f"server {name} did not start:\n" + "\n".join(self.lines))
        self.target = f"127.0.0.1:{port[0]}"
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# --- the 8 client processes -----------------------------------------------------------------------


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
    """``CLIENTS`` persistent spawned processes, started once for the whole run."""

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


# --- one scenario ---------------------------------------------------------------------------------


class MismatchError(RuntimeError):
    """The server, the renderer or a loop disagree: the benchmark refuses to time them."""


def check_correctness(sc: Scenario, sent, pixels, clients: dict[str, HeatmapClient]) -> dict:
    """Remote == local renderer bit for bit (every server); loops within TOLERANCE of it."""
    import torch
    from heatmap_server.render import render_heatmaps

    kwargs = render_kwargs(sc)
    local = render_heatmaps(torch.from_numpy(sent[0]), sc.size, sc.sigma, method=sc.method,
                            coords=sc.coords)
    expected, expected_w = local.heatmaps.numpy(), local.weights.numpy()
    checks = {}
    for name, client in clients.items():
        name = f"server_{name}"
        r = client.render(sent[0], **kwargs)
        if not (np.array_equal(r.heatmaps, expected) and np.array_equal(r.weights, expected_w)):
            diff = float(np.abs(r.heatmaps - expected).max())
            raise MismatchError(f"{sc.name}: {name} reply differs from render_heatmaps by {diff:g}")
        checks[name] = 0.0
    msra = render_heatmaps(torch.from_numpy(pixels[0]), sc.size, sc.sigma, method="msra")
    for name, (maps, weights), ref in (
        ("seed_loop", seed_loop(sent[0], sc.size, sc.sigma, sc.method), local),
        ("mmpose_loop", mmpose_loop(pixels[0], sc.size, sc.sigma, "msra"), msra),
    ):
        diff = float(np.abs(np.stack(maps) - ref.heatmaps.numpy()).max())
        if not diff <= TOLERANCE or not np.array_equal(weights, ref.weights.numpy()):
            raise MismatchError(f"{sc.name}: {name} differs from render_heatmaps by {diff:g}")
        checks[name] = diff
    return checks


def run_scenario(sc: Scenario, args, servers: dict[str, Server], clients: dict[str, HeatmapClient],
                 pool: ClientPool | None) -> dict:
    import torch
    from heatmap_client._messages import build_request
    from heatmap_server.render import render_heatmaps

    sent, pixels = scenario_inputs(sc, args.seed, count=8)
    checks = check_correctness(sc, sent, pixels, clients)
    kwargs = render_kwargs(sc)
    request_bytes = build_request(sent[0], **kwargs).ByteSize()
    a, b = clients["A"], clients["C"]
    pid_a, pid_b = servers["A"].pid, servers["C"].pid
    out = np.empty(sc.shape, np.float32)
    out_t = torch.empty(sc.shape, dtype=torch.float32)
    sent_t = [torch.from_numpy(x) for x in sent]
    counter = [0]

    def nxt(items):
        counter[0] += 1
        return items[counter[0] % len(items)]

    runs = {name: Run() for name in ROWS}

    def remote(client, run, use_out=True):
        def call():
            result = client.render(nxt(sent), out=out if use_out else None, **kwargs)
            run.add_result(result)
        return call

    rows = {
        "seed_loop": (lambda: seed_loop(nxt(sent), sc.size, sc.sigma, sc.method), None),
        "mmpose_loop": (lambda: mmpose_loop(nxt(pixels), sc.size, sc.sigma, "msra"), None),
        "vectorised": (lambda: render_heatmaps(nxt(sent_t), sc.size, sc.sigma, method=sc.method,
                                               coords=sc.coords, out=out_t), None),
        "render": (remote(a, runs["render"]), pid_a),
        "render_fresh": (remote(a, runs["render_fresh"], use_out=False), pid_a),
        "render_nobatch": (remote(b, runs["render_nobatch"]), pid_b),
    }
    # Warm-up: every path once or a few times (kernels, buffers, channels, the stream).
    for name, (call, _) in rows.items():
        for _ in range(3):
            call()
    for run in runs.values():
        run.__init__()
    timed_stream(a, sc, sent, 0.05, Run(), pid_a)

    order = list(rows) + ["render_many"]
    shuffler = random.Random(args.seed)
    budget = args.budget_s / args.rounds
    for _ in range(args.rounds):
        shuffler.shuffle(order)
        for name in order:
            if name == "render_many":
                timed_stream(a, sc, sent, budget, runs[name], pid_a)
            else:
                call, pid = rows[name]
                timed_calls(call, budget, args.min_calls, runs[name], pid)

    if pool is not None:
        # ABCCBA so that drift hits them alike.
        for name in (MULTI_ROWS + MULTI_ROWS[::-1])[: len(MULTI_ROWS) * args.multi_rounds]:
            server = servers[MULTI_SERVER[name]]
            pool.run(server.target, sc, sent, args.multi_s / args.multi_rounds, runs[name],
                     server.pid)

    stats = {}
    for name, run in runs.items():
        if run.batches == 0:
            continue
        remote_row = name not in LOCAL_ROWS
        stats[name] = summarize(run, sc, request_bytes if remote_row else None)
    return {
        "scenario": asdict(sc),
        "output_shape": list(sc.shape),
        "output_mb": int(np.prod(sc.shape)) * 4 / 1e6,
        "correctness_max_abs_diff": checks,
        "stats": stats,
        "wall_ms_samples": {name: runs[name].wall_ms for name in stats},
    }


# --- targets --------------------------------------------------------------------------------------


def evaluate_targets(results: list[dict]) -> list[dict]:
    rows = []
    for res in results:
        name, s = res["scenario"]["name"], res["stats"]
        if name in TARGET_SCENARIOS and {"render", "mmpose_loop"} <= s.keys():
            r, m = s["render"], s["mmpose_loop"]
            wall = r["median_ms"] / m["median_ms"]
            rows.append({
                "scenario": name, "target": f"render wall <= {WALL_TARGET:g}x mmpose loop",
                "value": wall, "met": wall <= WALL_TARGET,
                "detail": f"{r['median_ms']:.2f} ms vs {m['median_ms']:.2f} ms in this run "
                          f"(vs anchor {ANCHOR_MMPOSE_MS[name]:g} ms: "
                          f"{r['median_ms'] / ANCHOR_MMPOSE_MS[name]:.2f}x)",
            })
            cpu = r["client_cpu_ms_per_batch"] / m["client_cpu_ms_per_batch"]
            rows.append({
                "scenario": name, "target": f"render client CPU <= {CPU_TARGET:.0%} of mmpose loop",
                "value": cpu, "met": cpu <= CPU_TARGET,
                "detail": f"{r['client_cpu_ms_per_batch']:.2f} ms vs "
                          f"{m['client_cpu_ms_per_batch']:.2f} ms CPU "
                          f"(vs anchor {ANCHOR_MMPOSE_MS[name]:g} ms: "
                          f"{r['client_cpu_ms_per_batch'] / ANCHOR_MMPOSE_MS[name]:.0%})",
            })
        if {"render", "render_many"} <= s.keys():
            ratio = s["render_many"]["batches_per_s"] / s["render"]["batches_per_s"]
            rows.append({
                "scenario": name, "target": f"render_many >= {MANY_TARGET:g}x render batches/s",
                "value": ratio, "met": ratio >= MANY_TARGET,
                "detail": f"{s['render_many']['batches_per_s']:.0f} vs "
                          f"{s['render']['batches_per_s']:.0f} batches/s",
            })
        if set(MULTI_ROWS) <= s.keys():
            on, off = s["8proc_batcher"], s["8proc_nobatch"]
            rows.append({
                "scenario": name, "target": f"{CLIENTS} clients: mean coalesced > 1 (batcher on)",
                "value": on["mean_coalesced"], "met": on["mean_coalesced"] > 1,
                "detail": f"batcher on {on['mean_coalesced']:.2f}, off {off['mean_coalesced']:.2f}",
            })
            nodelay = s["8proc_nodelay"]
            rows.append({
                "scenario": name,
                "target": f"{CLIENTS} clients (server's help): --max-delay-us 0 = no coalescing",
                "value": nodelay["mean_coalesced"], "met": nodelay["mean_coalesced"] == 1,
                "detail": f"mean coalesced on server B (samples/s {nodelay['samples_per_s']:.0f})",
            })
            ratio = on["samples_per_s"] / off["samples_per_s"]
            rows.append({
                "scenario": name, "target": f"{CLIENTS} clients: samples/s batcher on > off",
                "value": ratio, "met": ratio > 1,
                "detail": f"{on['samples_per_s']:.0f} vs {off['samples_per_s']:.0f} samples/s",
            })
    return rows


# --- profile of the client side of one remote render ---------------------------------------------


def profile_client(sc: Scenario, client: HeatmapClient, args) -> dict:
    """Where a loader's CPU goes in ``render(out=)``: cProfile over many calls, plus each client
    step timed alone on captured reply chunks (request building, decode, weights)."""
    from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
    from heatmap_client._codecs import CODECS, payload_crc32
    from heatmap_client._messages import build_request, result_from_chunks
    from heatmap_client._tensors import array_from_tensor

    sent, _ = scenario_inputs(sc, args.seed, count=8)
    kwargs = render_kwargs(sc)
    out = np.empty(sc.shape, np.float32)
    calls = args.profile_calls
    for i in range(5):
        client.render(sent[i % 8], out=out, **kwargs)

    profiler = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    profiler.enable()
    for i in range(calls):
        client.render(sent[i % 8], out=out, **kwargs)
    profiler.disable()
    per_call_cpu = (time.process_time() - c0) * 1e3 / calls
    per_call_wall = (time.perf_counter() - t0) * 1e3 / calls
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
    top = text.getvalue()

    def cost(fn, n=200):
        c, t = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        return ((time.perf_counter() - t) * 1e3 / n, (time.process_time() - c) * 1e3 / n)

    stub = pb_grpc.HeatmapRendererStub(client._open())
    request = build_request(sent[0], **kwargs)
    chunks = list(stub.Render(request, timeout=60))
    header = chunks[0].header
    pieces = [c.data for c in chunks]
    codec = CODECS[header.codec]

    def grpc_only():  # the RPC and chunk iteration, no decode
        list(stub.Render(request, timeout=60))

    from heatmap.v1 import heatmap_pb2 as pb
    from heatmap_client._codecs import rebuild_dense

    sep = list(stub.Render(build_request(sent[0], codec="separable", **kwargs), timeout=60))
    rows = np.empty((sc.batch, 1, sc.keypoints, sc.height), np.float32)
    cols = np.empty((sc.batch, 1, sc.keypoints, sc.width), np.float32)
    CODECS[sep[0].header.codec].decode([c.data for c in sep], [rows, cols])

    # Two candidate fixes, measured here so that the numbers travel with the run:
    # - the sync unary-stream call without gRPC Python's per-call channel spin thread;
    import grpc
    import grpc.experimental
    import zstandard

    from heatmap_client._channel import channel_options

    single = grpc.insecure_channel(client.target, options=[
        *channel_options(), (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, True)])
    single_stub = pb_grpc.HeatmapRendererStub(single)
    list(single_stub.Render(request, timeout=60))

    def grpc_single_threaded():
        list(single_stub.Render(request, timeout=60))

    # - the same zstd frame with an XXH64 content checksum, as the payload carried before the
    #   header's CRC-32 of the compressed bytes replaced it.
    codec.decode(pieces, [out])
    with_checksum = zstandard.ZstdCompressor(
        level=3, write_content_size=True, write_checksum=True).compress(out)

    def multiply_rebuild():  # a broadcast multiply instead of einsum, for comparison
        np.multiply(rows[:, 0, :, :, None], cols[:, 0, :, None, :], out=out)

    steps = {
        "unary_rpc_baseline_GetServerInfo": cost(
            lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=60), calls),
        "build_request": cost(lambda: build_request(sent[0], **kwargs), 2000),
        "zstd_decode_into_out": cost(lambda: codec.decode(pieces, [out])),
        "weights_array_from_tensor": cost(lambda: array_from_tensor(chunks[-1].weights, "w"), 2000),
        "result_from_chunks_total": cost(lambda: result_from_chunks(chunks, out=out)),
        "grpc_call_and_receive_no_decode": cost(grpc_only, calls),
        "grpc_call_and_receive_SingleThreadedUnaryStream": cost(grpc_single_threaded, calls),
        "zstd_decode_frame_with_xxh64_checksum": cost(
            lambda: codec.decode([with_checksum], [out])),
        "payload_crc32": cost(lambda: payload_crc32(pieces), 2000),
        "full_render_out": cost(lambda: client.render(sent[0], out=out, **kwargs), calls),
        "full_render_out_codec_none": cost(
            lambda: client.render(sent[0], out=out, codec="none", **kwargs), max(10, calls // 5)),
        "full_render_out_codec_separable": cost(
            lambda: client.render(sent[0], out=out, codec="separable", **kwargs), calls),
        "separable_rebuild_einsum": cost(lambda: rebuild_dense(rows, cols, out)),
        "separable_rebuild_np_multiply": cost(multiply_rebuild),
        "floor_out_fill_0": cost(lambda: out.fill(0)),
    }
    single.close()
    decoded_mb = header.decoded_bytes / 1e6
    return {
        "scenario": sc.name,
        "calls": calls,
        "profiled_wall_ms_per_call": per_call_wall,
        "profiled_cpu_ms_per_call": per_call_cpu,
        "steps_wall_cpu_ms": steps,
        "chunks_per_reply": len(chunks),
        "payload_bytes": header.payload_bytes,
        "decoded_mb": decoded_mb,
        "zstd_decode_gb_per_s": decoded_mb / steps["zstd_decode_into_out"][0],  # MB/ms = GB/s
        "cprofile_top_tottime": top,
    }


# --- reporting ------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 3) -> str:
    if value != value:  # nan
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def print_report(results: list[dict], targets: list[dict], profiles: list[dict], meta: dict) -> None:
    print(
        f"# heatmap service benchmark: torch {meta['torch']}, grpcio {meta['grpcio']}, "
        f"{meta['cpu_model']} ({meta['cpu_count']} CPUs), server device {meta['device']}, "
        f"{meta['date']}\n"
    )
    print(
        f"Server, client processes and local loops share these {meta['cpu_count']} CPUs; on a "
        "dedicated server machine the client CPU column is what a loader pays. Local rows use "
        f"{meta['local_torch_threads']} torch thread(s) in the loader process (as a DataLoader "
        "worker). Loops exclude the collate into one batch. Wire bytes = request message + reply "
        "payload (no gRPC framing)."
    )
    load = meta["load_average_at_start"][0]
    if load > 0.5:
        print(f"\nWarning: the machine was busy before the run (1-min load average {load:.1f}); "
              "other processes competed with the server and the clients for the CPUs.")
    for res in results:
        sc = res["scenario"]
        print(
            f"\n## {sc['name']}: B={sc['batch']}, K={sc['keypoints']}, {sc['height']}x{sc['width']}, "
            f"sigma={sc['sigma']:g}, method={sc['method']}, coords={sc['coords']} "
            f"({sc['label']}, output {res['output_mb']:.1f} MB float32)\n"
        )
        print("| approach | ms/batch median | p99 | samples/s | client CPU ms/batch "
              "| server CPU ms/batch | wire KB/batch | mean coalesced | server q/r/e ms | batches |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in ROWS:
            s = res["stats"].get(name)
            if s is None:
                continue
            if "wire_bytes_per_batch" in s:
                su = s["server_median_us"]
                remote = (f"{fmt(s['server_cpu_ms_per_batch'])} | "
                          f"{s['wire_bytes_per_batch'] / 1e3:.1f} | {s['mean_coalesced']:.2f} | "
                          f"{su['queue'] / 1e3:.2f}/{su['render'] / 1e3:.2f}/"
                          f"{su['encode'] / 1e3:.2f}")
            else:
                remote = "- | - | - | -"
            print(
                f"| {name} ({DESCRIPTIONS[name]}) | {fmt(s['median_ms'])} | {fmt(s['p99_ms'])} "
                f"| {s['samples_per_s']:.0f} | {fmt(s['client_cpu_ms_per_batch'])} | {remote} "
                f"| {s['batches']} |"
            )
    if targets:
        print("\n## Targets (the issue's \"Done when\"; evaluated, not asserted)\n")
        print("| scenario | target | value | met | detail |")
        print("|---|---|---:|---|---|")
        for t in targets:
            print(f"| {t['scenario']} | {t['target']} | {t['value']:.2f} "
                  f"| {'yes' if t['met'] else 'NO'} | {t['detail']} |")
    for p in profiles:
        print(f"\n## Client profile, remote render(out=) at {p['scenario']} "
              f"({p['chunks_per_reply']} chunk(s), {p['payload_bytes']} payload bytes, "
              f"{p['decoded_mb']:.1f} MB decoded, zstd decode {p['zstd_decode_gb_per_s']:.1f} GB/s)\n")
        print("| step | wall ms | CPU ms |")
        print("|---|---:|---:|")
        for step, (wall, cpu) in p["steps_wall_cpu_ms"].items():
            print(f"| {step} | {wall:.3f} | {cpu:.3f} |")
        print(f"\ncProfile over {p['calls']} calls (profiled: {p['profiled_wall_ms_per_call']:.2f} "
              f"ms wall, {p['profiled_cpu_ms_per_call']:.2f} ms CPU per call):\n")
        print("```")
        lines = [ln for ln in p["cprofile_top_tottime"].splitlines() if ln.strip()]
        print("\n".join(lines[-16:]))
        print("```")


def write_png(results: list[dict], path: str) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    for ax, key, label in (
        (axes[0], "samples_per_s", "samples/s (higher is better)"),
        (axes[1], "client_cpu_ms_per_batch", "client CPU ms per batch (lower is better)"),
    ):
        grouped_bars(ax, results, ROWS, lambda s, key=key: s[key])
        ax.set_ylabel(label)
    axes[0].legend(fontsize="small")
    fig.suptitle("heatmap service vs local rendering (server and clients share the machine)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def metadata(args, info) -> dict:
    import grpc
    import torch
    import zstandard

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "grpcio": grpc.__version__,
        "zstandard": zstandard.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "device": args.device,
        "server_info": {"version": info.version, "device": info.device,
                        "torch_version": info.torch_version},
        "local_torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "args": vars(args),
        "targets": {"wall_max": WALL_TARGET, "cpu_max": CPU_TARGET, "render_many_min": MANY_TARGET,
                    "scenarios": list(TARGET_SCENARIOS), "anchor_mmpose_ms": ANCHOR_MMPOSE_MS},
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--json", metavar="PATH", help="write every number and the metadata here")
    add("--png", metavar="PATH", help="plot (needs matplotlib; skipped without it), "
        "e.g. bench/out/service.png")
    add("--device", default="cpu", help="the servers' --device (cpu, cuda, auto; default cpu)")
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of S2,S3,S1")
    add("--budget-s", type=float, default=2.4, help="seconds per single-process row and scenario")
    add("--rounds", type=int, default=3, help="interleaved rounds the budget is split into")
    add("--min-calls", type=int, default=5, help="fewest calls per row and round")
    add("--multi-s", type=float, default=6.0,
        help=f"seconds per {CLIENTS}-process row and scenario (split over --multi-rounds)")
    add("--multi-rounds", type=int, default=2, choices=(1, 2),
        help="2: the servers in order A B C C B A; 1: A B C")
    add("--no-multi", action="store_true", help=f"skip the {CLIENTS}-process rows")
    add("--local-threads", type=int, default=1,
        help="torch threads for the local renderer in this process (default 1, as a DataLoader "
        "worker)")
    add("--server-flag", action="append", default=[], metavar="FLAG",
        help="extra flag for both servers, e.g. --server-flag=--encode-threads=4 (repeatable)")
    add("--profile", action="store_true",
        help="also profile the client side of render(out=) at S2 and S3 (cProfile + step timings)")
    add("--profile-calls", type=int, default=300)
    add("--quick", action="store_true", help="smoke run (~30 s): short budgets, one round")
    add("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.scenarios = parse_scenarios(p, args.scenarios, SCENARIOS)
    if args.quick:
        args.budget_s, args.rounds, args.multi_s, args.multi_rounds = 0.25, 1, 0.6, 1
        args.profile_calls = min(args.profile_calls, 60)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.local_threads)
    t_start = time.perf_counter()
    common = ["--device", args.device, *args.server_flag]
    servers: dict[str, Server] = {}
    clients: dict[str, HeatmapClient] = {}
    pool = None
    results, profiles = [], []
    try:
        # Start the client processes first: they import grpc while the servers import torch.
        pool = None if args.no_multi else ClientPool(CLIENTS)
        servers["A"] = Server("A (batcher on)", common)
        servers["B"] = Server("B (no delay)", [*common, "--max-delay-us", "0"])
        servers["C"] = Server("C (batcher off)",
                              [*common, "--max-delay-us", "0", "--max-batch-keypoints", "1"])
        clients = {k: HeatmapClient(s.target, timeout=60) for k, s in servers.items()}
        meta = metadata(args, clients["A"].info())
        meta["servers"] = {k: s.command[3:] for k, s in servers.items()}
        for name in args.scenarios:
            t0 = time.perf_counter()
            results.append(run_scenario(SCENARIOS[name], args, servers, clients, pool))
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.profile:
            for name in TARGET_SCENARIOS:
                profiles.append(profile_client(SCENARIOS[name], clients["A"], args))
    finally:
        for client in clients.values():
            client.close()
        if pool is not None:
            pool.close()
        for server in servers.values():
            server.stop()
    targets = evaluate_targets(results)
    meta["elapsed_s"] = time.perf_counter() - t_start
    meta["load_average_at_end"] = os.getloadavg()
    print_report(results, targets, profiles, meta)
    print(f"\n(total run {meta['elapsed_s']:.0f} s)")
    if args.json:
        write_json(args.json, {"metadata": meta, "results": results, "targets": targets,
                               "profiles": profiles})
    if args.png:
        write_png(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
