"""Benchmark: SimCC labels for RTMPose's configuration through the service, against mmpose's loop.

RTMPose-m (COCO, 256x192): input (H_in, W_in) = (256, 192), simcc_split_ratio 2.0, sigma
(sigma_x, sigma_y) = (4.9, 5.66), normalize=False, K = 17, B = 256. A real server runs in a
subprocess on loopback; one client calls it. Columns, interleaved in a fresh random order each
round:

  service_zstd   client.render_simcc(...): request, render, zstd, decode into numpy
  service_none   the same with codec none (raw float32 bytes)
  service_f16    the same with dtype float16 and zstd (lossy: labels rounded to binary16)
  local          render_simcc(...) in this process (what the server's device call does)
  mmpose_loop    mmpose's SimCCLabel._generate_gaussian, one sample and one keypoint at a time

Before anything is timed the service's labels are checked against the loop (within 2 float32
ulps, weights equal); a mismatch stops the run. Keypoints as bench/simcc.py makes them: most on
the image, ~10 % past its borders, COCO visibility 0/1/2 with ~20 % unlabelled.

Usage: .venv/bin/python bench/simcc_service.py [--torch-threads 1] [--json PATH] [--batch 256]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client import HeatmapClient
from heatmap_render import render_simcc

from local_server import Server
from reference_loops import mmpose_simcc_loop
from report import cpu_model, git_commit, write_json
from simcc import INPUT_SIZE, SIGMA, SPLIT_RATIO, interleaved_stats, make_batch

COLUMNS = ("service_zstd", "service_none", "service_f16", "local", "mmpose_loop")
SERVICE = {"service_zstd": ("float32", "zstd"), "service_none": ("float32", "none"),
           "service_f16": ("float16", "zstd")}


def check_parity(client: HeatmapClient, points, visibility) -> None:
    result = client.render_simcc(points, INPUT_SIZE, SIGMA, split_ratio=SPLIT_RATIO,
                                 normalize=False, visibility=visibility)
    x_loop, y_loop, weights = mmpose_simcc_loop(points, visibility, INPUT_SIZE, SIGMA, SPLIT_RATIO)
    pairs = ((result.x_labels, np.stack(x_loop)), (result.y_labels, np.stack(y_loop)))
    for actual, expected in pairs:
        scale = np.spacing(np.maximum(np.abs(actual), np.abs(expected)))
        ulps = float(np.max(np.abs(actual.astype(np.float64) - expected) / scale))
        if ulps > 2:
            raise SystemExit(f"parity: service labels {ulps:.1f} ulps from the loop; nothing timed")
    if not np.array_equal(result.weights, weights):
        raise SystemExit("parity: service weights differ from the loop; nothing timed")


def run(args, client: HeatmapClient) -> dict:
    rng = np.random.default_rng(args.seed)
    points, visibility = make_batch(rng, args.batch, args.keypoints)
    check_parity(client, points, visibility)
    wire: dict[str, list[int]] = {name: [] for name in SERVICE}
    server_us: dict[str, list[tuple[int, int]]] = {name: [] for name in SERVICE}

    def service(name):
        dtype, codec = SERVICE[name]

        def call():
            result = client.render_simcc(points, INPUT_SIZE, SIGMA, split_ratio=SPLIT_RATIO,
                                         normalize=False, visibility=visibility, dtype=dtype,
                                         codec=codec)
            wire[name].append(result.wire_bytes)
            server_us[name].append((result.timings.render_us, result.timings.encode_us))
        return call

    calls = {name: service(name) for name in SERVICE}
    calls["local"] = lambda: render_simcc(points, INPUT_SIZE, SIGMA, split_ratio=SPLIT_RATIO,
                                          normalize=False, visibility=visibility)
    calls["mmpose_loop"] = lambda: mmpose_simcc_loop(points, visibility, INPUT_SIZE, SIGMA,
                                                     SPLIT_RATIO)
    for name, call in calls.items():  # warm-up: tables, allocator, channel, server threads
        for _ in range(1 if name == "mmpose_loop" else 5):
            call()
    for name in SERVICE:
        wire[name].clear()
        server_us[name].clear()
    stats = interleaved_stats(calls, COLUMNS, args.repeats, args.loop_every, rng)
    for name in stats:
        if name in SERVICE:
            render_us, encode_us = np.median(np.array(server_us[name]), axis=0)
            stats[name].update(wire_bytes=int(np.median(wire[name])),
                               server_render_ms=float(render_us) / 1e3,
                               server_encode_ms=float(encode_us) / 1e3)
    labels = args.batch * args.keypoints * round(SPLIT_RATIO * (INPUT_SIZE[0] + INPUT_SIZE[1]))
    return {"stats": stats, "float32_label_bytes": labels * 4}


def print_table(result: dict, meta: dict) -> None:
    stats = result["stats"]
    print(f"SimCC through the service, RTMPose 256x192: B={meta['args']['batch']}, "
          f"K={meta['args']['keypoints']}, sigma (x, y) = {SIGMA}, split {SPLIT_RATIO}, "
          f"normalize False; server on {meta['server_device']} with "
          f"{meta['args']['torch_threads']} torch thread(s), one client, loopback; {meta['cpu']}")
    print(f"Times in ms per batch (wall, client side), interleaved; float32 labels are "
          f"{result['float32_label_bytes'] / 1e6:.1f} MB.\n")
    print("| column | median | p10 | p90 | n | loop / column | wire bytes | server render | "
          "server encode |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    loop = stats["mmpose_loop"]["median_ms"]
    for name in COLUMNS:
        s = stats[name]
        extra = "| | |"
        if "wire_bytes" in s:
            extra = (f"{s['wire_bytes']} | {s['server_render_ms']:.3f} "
                     f"| {s['server_encode_ms']:.3f} |")
        print(f"| {name} | {s['median_ms']:.3f} | {s['p10_ms']:.3f} | {s['p90_ms']:.3f} "
              f"| {s['n']} | {loop / s['median_ms']:.1f} | {extra}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--torch-threads", type=int, default=1, help="the server's and this process's (default 1)")
    add("--encode-threads", type=int, default=1, help="the server's encoder threads (default 1)")
    add("--device", default="cpu", help="the server's --device (default cpu)")
    add("--json", metavar="PATH", help="write every number and the metadata here")
    add("--batch", type=int, default=256, help="B (default 256)")
    add("--keypoints", type=int, default=17, help="K (default 17)")
    add("--repeats", type=int, default=100, help="rounds (default 100)")
    add("--loop-every", type=int, default=10, help="time the loop every N-th round (default 10)")
    add("--seed", type=int, default=0, help="RNG seed for keypoints and column order")
    args = p.parse_args(argv)
    if min(args.torch_threads, args.encode_threads, args.batch, args.keypoints, args.repeats,
           args.loop_every) < 1:
        p.error("--torch-threads, --encode-threads, --batch, --keypoints, --repeats and "
                "--loop-every must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    flags = ["--device", args.device,
             "--torch-threads", str(args.torch_threads), "--encode-threads",
             str(args.encode_threads)]
    server = Server("simcc", flags)
    try:
        with HeatmapClient(f"127.0.0.1:{server.port}", timeout=120) as client:
            info = client.info()
            meta = {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "cpu": cpu_model(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "git_commit": git_commit(),
                "server_device": info.device,
                "args": vars(args),
                "config": {"input_size": INPUT_SIZE, "sigma": SIGMA, "split_ratio": SPLIT_RATIO,
                           "normalize": False},
            }
            result = run(args, client)
    finally:
        server.stop()
    print_table(result, meta)
    if args.json:
        write_json(args.json, {"metadata": meta, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
