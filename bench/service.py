"""Benchmark: the heatmap service end to end, against rendering in the loader process.

Starts the real server three times as subprocesses on loopback and measures, in one run, per
scenario (A: the dynamic batcher on, default delay; B: ``--max-delay-us 0``, coalescing off;
C: ``--max-delay-us 0 --max-batch-keypoints 1``, one request per device call whatever the flags
do, i.e. batcher off):

  seed_loop        local: the classic per-keypoint function (bench/reference_loops.py)
  mmpose_loop      local: mmpose-style numpy loop (the baseline to beat)
  vectorised       local: heatmap_render.render_heatmaps(..., out=reused tensor)
  render           remote: HeatmapClient.render(..., out=reused array), one call at a time, server A
  render_fresh     remote: the same without out= (a fresh array per call)
  render_nobatch   remote: as ``render`` but on server C (batcher off)
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
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client import HeatmapClient  # noqa: E402  (light: no torch at import time)

from client_pool import ClientPool  # noqa: E402
from client_profile import profile_client  # noqa: E402
from local_server import Server  # noqa: E402
from measuring import Run, render_kwargs, summarize, timed_calls, timed_stream  # noqa: E402
from reference_loops import mmpose_loop, seed_loop  # noqa: E402
from report import write_json  # noqa: E402
from scenarios import (  # noqa: E402
    SCENARIOS as ALL_SCENARIOS,
)
from scenarios import (
    Scenario,
    from_normalized,
    make_keypoints,
    parse_scenarios,
    to_normalized,
)
from service_report import (  # noqa: E402
    CLIENTS,
    LOCAL_ROWS,
    MULTI_ROWS,
    ROWS,
    TARGET_SCENARIOS,
    WINDOW,
    evaluate_targets,
    metadata,
    print_report,
    write_png,
)

# torch and heatmap_server are imported lazily, in the parent only: the spawned client processes
# import this module too (as __mp_main__) and must stay as light as a loader's gRPC client.

TOLERANCE = 1e-6
MULTI_SERVER = {"8proc_batcher": "A", "8proc_nodelay": "B", "8proc_nobatch": "C"}


# S2, S3, S1 in this order: it is the default --scenarios, and a scenario's index in it seeds its
# keypoints (default_rng([seed, index]) in scenario_inputs), so it stays as it was.
SCENARIOS = {name: ALL_SCENARIOS[name] for name in ("S2", "S3", "S1")}


# --- inputs (bench/scenarios.py, drawn as bench/render.py draws them) -----------------------------


def scenario_inputs(
    sc: Scenario, seed: int, count: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
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


# --- one scenario ---------------------------------------------------------------------------------


class MismatchError(RuntimeError):
    """The server, the renderer or a loop disagree: the benchmark refuses to time them."""


def check_correctness(sc: Scenario, sent, pixels, clients: dict[str, HeatmapClient]) -> dict:
    """Remote == local renderer bit for bit (every server); loops within TOLERANCE of it."""
    import torch

    from heatmap_render import render_heatmaps

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

    from heatmap_client import RenderOptions
    from heatmap_client.requests import build_request
    from heatmap_render import render_heatmaps

    sent, pixels = scenario_inputs(sc, args.seed, count=8)
    checks = check_correctness(sc, sent, pixels, clients)
    kwargs = render_kwargs(sc)
    request_bytes = build_request(sent[0], RenderOptions(**kwargs)).ByteSize()
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
    for call, _ in rows.values():
        for _ in range(3):
            call()
    for run in runs.values():
        run.__init__()
    timed_stream(a, sc, sent, 0.05, Run(), pid_a, WINDOW)

    order = list(rows) + ["render_many"]
    shuffler = random.Random(args.seed)
    budget = args.budget_s / args.rounds
    for _ in range(args.rounds):
        shuffler.shuffle(order)
        for name in order:
            if name == "render_many":
                timed_stream(a, sc, sent, budget, runs[name], pid_a, WINDOW)
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
                sent, _ = scenario_inputs(SCENARIOS[name], args.seed, count=8)
                profiles.append(
                    profile_client(SCENARIOS[name], clients["A"], sent, args.profile_calls))
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
