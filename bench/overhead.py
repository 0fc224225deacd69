"""Benchmark: what asking the service costs, against floors measured in the same run.

Per call, on one server (a real CPU server on loopback, default flags), interleaved in rounds:

  bare             a unary grpc.health.v1 Check to the same server: the floor for a call
  profiles         HeatmapClient.render_profiles (msra, sigma 2): the targets as profiles
  dense            HeatmapClient.render(out=...) with the default codec (zstd for msra)
  local profiles   heatmap_render.render_profiles in this process: the floor for the work

with the client process's CPU, the server process's CPU (from /proc) and the wall time per call,
each as a ratio to the bare call's. Then a DataLoader's view: the CPU a collate costs above
torch's ``default_collate`` of the same samples, for ``HeatmapCollate(target, output="separable")``
against ``HeatmapCollate("local", output="separable")``. Then throughput: 8 loader processes
(spawned, light: numpy and the client) each calling ``render_profiles`` for a fixed time against
the one server, samples/s together; then the same with each process streaming its batches as
``render_many`` profiles items, four in flight.

Scenarios (bench/scenarios.py): S2 B=32 K=17 64x48, S3 B=32 K=68 64x64, S4 B=8 K=133 96x72.

Usage: .venv/bin/python bench/overhead.py [--scenarios S2,S3,S4] [--rounds 7] [--calls 150]
       [--processes 8] [--seconds 4] [--json PATH] [--server-flag=--flag=value ...]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client import HeatmapClient  # noqa: E402

from local_server import Server  # noqa: E402
from measuring import proc_cpu_s  # noqa: E402
from report import cpu_model, git_commit, write_json  # noqa: E402
from scenarios import SCENARIOS, make_keypoints, parse_scenarios  # noqa: E402

ROWS = ("bare", "profiles", "dense", "local profiles")


def _options(sc) -> dict:
    return {"size": sc.size, "sigma": sc.sigma, "method": sc.method}


def _calls(client: HeatmapClient, sc, batches: list[np.ndarray]) -> dict:
    """One callable per row, each making one call (the local row renders in this process)."""
    import torch

    import heatmap_render

    torch.set_num_threads(1)  # the loader's one core, as the server and the workers run it
    options = _options(sc)
    out = np.empty(sc.shape, np.float32)
    ring = iter(range(1 << 62))
    pick = lambda: batches[next(ring) % len(batches)]  # noqa: E731
    return {
        "bare": lambda: client.health(),
        "profiles": lambda: client.render_profiles(pick(), **options),
        "dense": lambda: client.render(pick(), out=out, **options),
        "local profiles": lambda: heatmap_render.render_profiles(pick(), **options),
    }


def _round(call, calls: int, server_pid: int) -> tuple[float, float, float]:
    """``calls`` calls: client CPU and server CPU per call (ms), and the median wall (ms)."""
    walls = []
    server0, client0 = proc_cpu_s(server_pid), time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        call()
        walls.append(time.perf_counter() - started)
    client_ms = (time.process_time() - client0) * 1e3 / calls
    server_ms = (proc_cpu_s(server_pid) - server0) * 1e3 / calls
    return client_ms, server_ms, statistics.median(walls) * 1e3


def per_call(client: HeatmapClient, server: Server, sc, args) -> dict:
    rng = np.random.default_rng([0, list(SCENARIOS).index(sc.name)])
    batches = [make_keypoints(sc, rng) for _ in range(8)]
    calls = _calls(client, sc, batches)
    for call in calls.values():  # warm up: the channel, the caches, the buffers
        for _ in range(20):
            call()
    samples: dict[str, list[tuple[float, float, float]]] = {row: [] for row in ROWS}
    for _ in range(args.rounds):
        for row in ROWS:
            samples[row].append(_round(calls[row], args.calls, server.pid))
    return {row: [statistics.median(values[i] for values in samples[row]) for i in range(3)]
            for row in ROWS}


def collate_cost(target: str, sc, args) -> dict:
    """CPU ms per batch of each collate above ``default_collate`` of the same samples."""
    import torch
    from torch.utils.data import default_collate

    from heatmap_client.torch import HeatmapCollate

    torch.set_num_threads(1)
    rng = np.random.default_rng([1, list(SCENARIOS).index(sc.name)])
    batches = [[{"keypoints": torch.from_numpy(points)} for points in make_keypoints(sc, rng)]
               for _ in range(8)]
    collates = {
        "default_collate": default_collate,
        "service": HeatmapCollate(target, output="separable", **_options(sc)),
        "local": HeatmapCollate("local", output="separable", **_options(sc)),
    }
    for collate in collates.values():
        for batch in batches * 3:
            collate(batch)
    cpu: dict[str, list[float]] = {name: [] for name in collates}
    for _ in range(args.rounds):
        for name, collate in collates.items():
            started = time.process_time()
            for i in range(args.calls):
                collate(batches[i % len(batches)])
            cpu[name].append((time.process_time() - started) * 1e3 / args.calls)
    base = statistics.median(cpu["default_collate"])
    return {name: statistics.median(values) - base for name, values in cpu.items()
            if name != "default_collate"} | {"default_collate": base}


# How a loader process asks: one render_profiles call per batch, or a render_many stream of
# profiles items with this many batches in flight.
STREAM_WINDOW = 4


def _loader(target: str, sc_name: str, seconds: float, streamed: bool, start, results) -> None:
    """One loader-like process: render_profiles in a loop (or a stream) until its time is up."""
    sc = SCENARIOS[sc_name]
    rng = np.random.default_rng([2, list(SCENARIOS).index(sc_name)])
    batches = [make_keypoints(sc, rng) for _ in range(4)]
    client = HeatmapClient(target, timeout=60)
    for batch in batches:
        client.render_profiles(batch, **_options(sc))
    start.wait()
    deadline, calls = time.monotonic() + seconds, 0
    if streamed:
        def items():
            index = 0
            while time.monotonic() < deadline:
                yield dict(keypoints=batches[index % len(batches)], profiles=True, **_options(sc))
                index += 1

        for _ in client.render_many(items(), window=STREAM_WINDOW):
            calls += 1
    else:
        while time.monotonic() < deadline:
            client.render_profiles(batches[calls % len(batches)], **_options(sc))
            calls += 1
    results.put(calls)


def throughput(server: Server, sc, args, streamed: bool) -> dict:
    context = mp.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_loader, args=(server.target, sc.name, args.seconds,
                                                     streamed, start, results))
               for _ in range(args.processes)]
    for worker in workers:
        worker.start()
    time.sleep(3.0)  # every child has imported, connected and warmed up
    server0 = proc_cpu_s(server.pid)
    started = time.perf_counter()
    start.set()
    calls = sum(results.get(timeout=120) for _ in workers)
    elapsed = time.perf_counter() - started
    server_cpu = proc_cpu_s(server.pid) - server0
    for worker in workers:
        worker.join(30)
    return {"samples_per_s": calls * sc.batch / elapsed, "calls": calls,
            "server_cpu_ms_per_call": server_cpu * 1e3 / max(calls, 1)}


def _ratio(value: float, floor: float) -> str:
    return f"{value:.2f} ms ({value / floor:.1f}x)"


def report(results: dict, meta: dict) -> None:
    print(f"# overhead: {meta['date']}, {meta['machine']}, commit {meta['commit']}")
    print("\nPer call (medians of rounds; ratios to the bare call in the same run):\n")
    print("| scenario | row | client CPU / call | server CPU / call | wall p50 |")
    print("|---|---|---:|---:|---:|")
    for name, result in results.items():
        bare = result["per_call"]["bare"]
        for row in ROWS:
            client_ms, server_ms, wall_ms = result["per_call"][row]
            if row == "bare":
                cells = [f"{client_ms:.2f} ms", f"{server_ms:.2f} ms", f"{wall_ms:.2f} ms"]
            elif row == "local profiles":
                cells = [f"{client_ms:.2f} ms", "", f"{wall_ms:.2f} ms"]
            else:
                cells = [_ratio(client_ms, bare[0]), _ratio(server_ms, bare[1]),
                         _ratio(wall_ms, bare[2])]
            print(f"| {name} | {row} | " + " | ".join(cells) + " |")
    print("\nCollate CPU per batch above default_collate (output='separable'):\n")
    print("| scenario | default_collate | service | local | service / local |")
    print("|---|---:|---:|---:|---:|")
    for name, result in results.items():
        cost = result["collate"]
        print(f"| {name} | {cost['default_collate']:.2f} ms | {cost['service']:.2f} ms | "
              f"{cost['local']:.2f} ms | {cost['service'] / cost['local']:.2f} |")
    if any("throughput" in result for result in results.values()):
        print(f"\n{meta['processes']} loader processes asking for profiles, one server:\n")
        print("| scenario | calls | samples/s | server CPU / batch |")
        print("|---|---|---:|---:|")
        for name, result in results.items():
            for way, label in (("throughput", "render_profiles per batch"),
                               ("streamed", f"render_many, window {STREAM_WINDOW}")):
                if way in result:
                    t = result[way]
                    print(f"| {name} | {label} | {t['samples_per_s']:,.0f} | "
                          f"{t['server_cpu_ms_per_call']:.2f} ms |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="S2,S3,S4")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=150, help="calls per row and round")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--throughput", default="S2", help="scenarios for the loader processes")
    parser.add_argument("--json")
    parser.add_argument("--server-flag", action="append", default=[])
    args = parser.parse_args(argv)
    names = parse_scenarios(parser, args.scenarios, SCENARIOS)
    meta = {"date": datetime.date.today().isoformat(), "commit": (git_commit() or "?")[:7],
            "machine": f"{cpu_model()}, {mp.cpu_count()} cores, {platform.python_version()}",
            "processes": args.processes}
    results: dict = {}
    with Server("overhead", ["--device", "cpu", *args.server_flag]) as server:
        client = HeatmapClient(server.target, timeout=60)
        for name in names:
            sc = SCENARIOS[name]
            results[name] = {"per_call": per_call(client, server, sc, args),
                             "collate": collate_cost(server.target, sc, args)}
        for name in [n for n in args.throughput.split(",") if n]:
            entry = results.setdefault(name, {})
            entry["throughput"] = throughput(server, SCENARIOS[name], args, streamed=False)
            entry["streamed"] = throughput(server, SCENARIOS[name], args, streamed=True)
    report({name: r for name, r in results.items() if "per_call" in r}, meta)
    if args.json:
        write_json(args.json, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
