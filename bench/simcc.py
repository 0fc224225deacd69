"""Benchmark: SimCC labels for RTMPose's configuration, vectorised against mmpose's loop.

RTMPose-m (COCO, 256x192): input (H_in, W_in) = (256, 192), simcc_split_ratio 2.0, sigma
(sigma_x, sigma_y) = (4.9, 5.66), normalize=False, K = 17, B = 256. Columns, measured in one run
and interleaved (each round visits them in a fresh random order):

  ours          render_simcc(...) on a (B, K, 2) tensor, argument checks included
  ours_checked  simcc_from_args(args) on arguments checked once (what the batcher calls)
  mmpose_loop   mmpose's SimCCLabel._generate_gaussian, one sample and one keypoint at a time
  floor         zero_() of reused x and y label buffers: writing the output once

Before anything is timed the loop is checked against ours (labels within 2 float32 ulps, weights
equal); a mismatch stops the run. Keypoints: most on the image, ~10 % past its borders, COCO
visibility 0/1/2 with ~20 % unlabelled.

Usage: .venv/bin/python bench/simcc.py --threads 1 [--json PATH] [--batch 256]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_render import check_simcc_args, render_simcc, simcc_from_args

from reference_loops import mmpose_simcc_loop
from report import cpu_model, git_commit, write_json

COLUMNS = ("ours", "ours_checked", "mmpose_loop", "floor")
INPUT_SIZE = (256, 192)  # (H_in, W_in); mmpose's config writes input_size=(192, 256)
SIGMA = (4.9, 5.66)  # (sigma_x, sigma_y), mmpose's order
SPLIT_RATIO = 2.0


def make_batch(rng: np.random.Generator, batch: int, keypoints: int):
    height, width = INPUT_SIZE
    x = rng.uniform(0, width, (batch, keypoints))
    y = rng.uniform(0, height, (batch, keypoints))
    off = rng.random((batch, keypoints)) < 0.1
    beyond = rng.uniform(30, 200, x.shape)  # past the border by more than 3 sigma_x / 2
    x = np.where(off, np.where(rng.random(x.shape) < 0.5, -beyond, width + beyond), x)
    points = np.stack([x, y], axis=-1).astype(np.float32)
    visibility = rng.choice(np.float32([0, 1, 2]), (batch, keypoints), p=[0.2, 0.3, 0.5])
    return points, visibility


def check_parity(points, visibility) -> None:
    ours = render_simcc(points, INPUT_SIZE, SIGMA, split_ratio=SPLIT_RATIO, normalize=False,
                        visibility=visibility)
    x_loop, y_loop, weights = mmpose_simcc_loop(points, visibility, INPUT_SIZE, SIGMA, SPLIT_RATIO)
    for actual, expected in ((ours.x_labels, np.stack(x_loop)), (ours.y_labels, np.stack(y_loop))):
        actual = actual.numpy()
        scale = np.spacing(np.maximum(np.abs(actual), np.abs(expected)))
        ulps = float(np.max(np.abs(actual.astype(np.float64) - expected) / scale))
        if ulps > 2:
            raise SystemExit(f"parity: labels {ulps:.1f} ulps from the loop; nothing timed")
    if not np.array_equal(ours.weights.numpy(), weights):
        raise SystemExit("parity: weights differ from the loop; nothing timed")


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    points, visibility = make_batch(rng, args.batch, args.keypoints)
    check_parity(points, visibility)
    tensor, seen = torch.from_numpy(points), torch.from_numpy(visibility)
    checked = check_simcc_args(tensor, INPUT_SIZE, SIGMA, split_ratio=SPLIT_RATIO,
                               normalize=False, visibility=seen)
    label_height, label_width = checked.label_size
    x_buffer = torch.empty((args.batch, args.keypoints, label_width))
    y_buffer = torch.empty((args.batch, args.keypoints, label_height))

    def floor():
        x_buffer.zero_()
        y_buffer.zero_()

    calls = {
        "ours": lambda: render_simcc(tensor, INPUT_SIZE, SIGMA, split_ratio=SPLIT_RATIO,
                                     normalize=False, visibility=seen),
        "ours_checked": lambda: simcc_from_args(checked),
        "mmpose_loop": lambda: mmpose_simcc_loop(points, visibility, INPUT_SIZE, SIGMA,
                                                 SPLIT_RATIO),
        "floor": floor,
    }
    for call in calls.values():  # warm-up: tables, allocator
        call()
    stats = interleaved_stats(calls, COLUMNS, args.repeats, args.loop_every, rng)
    return {"stats": stats, "label_size": [label_height, label_width]}


def interleaved_stats(calls: dict, columns, repeats: int, loop_every: int, rng) -> dict:
    """Wall ms per call of every column, in a fresh random order each round (the slow loop only
    every ``loop_every`` rounds): median, p10, p90 and the count."""
    samples: dict[str, list[float]] = {name: [] for name in columns}
    for round_index in range(repeats):
        for name in rng.permutation(columns):
            if name == "mmpose_loop" and round_index % loop_every:
                continue
            start = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {
        name: {
            "median_ms": float(np.median(values)),
            "p10_ms": float(np.percentile(values, 10)),
            "p90_ms": float(np.percentile(values, 90)),
            "n": len(values),
        }
        for name, values in samples.items()
    }


def print_table(result: dict, meta: dict) -> None:
    stats = result["stats"]
    height, width = result["label_size"]
    print(f"SimCC, RTMPose 256x192: B={meta['args']['batch']}, K={meta['args']['keypoints']}, "
          f"labels (Hy, Wx) = ({height}, {width}), sigma (x, y) = {SIGMA}, split {SPLIT_RATIO}, "
          f"{meta['args']['threads']} torch thread(s), {meta['cpu']}")
    print("Times in ms per batch (wall), interleaved.\n")
    print("| column | median | p10 | p90 | n | loop / column |")
    print("|---|---:|---:|---:|---:|---:|")
    loop = stats["mmpose_loop"]["median_ms"]
    for name in COLUMNS:
        s = stats[name]
        print(f"| {name} | {s['median_ms']:.3f} | {s['p10_ms']:.3f} | {s['p90_ms']:.3f} "
              f"| {s['n']} | {loop / s['median_ms']:.1f} |")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    add("--json", metavar="PATH", help="write every number and the metadata here")
    add("--batch", type=int, default=256, help="B (default 256)")
    add("--keypoints", type=int, default=17, help="K (default 17)")
    add("--repeats", type=int, default=200, help="rounds (default 200)")
    add("--loop-every", type=int, default=10, help="time the loop every N-th round (default 10)")
    add("--seed", type=int, default=0, help="RNG seed for keypoints and column order")
    args = p.parse_args(argv)
    if min(args.threads, args.batch, args.keypoints, args.repeats, args.loop_every) < 1:
        p.error("--threads, --batch, --keypoints, --repeats and --loop-every must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git_commit": git_commit(),
        "args": vars(args),
        "config": {"input_size": INPUT_SIZE, "sigma": SIGMA, "split_ratio": SPLIT_RATIO,
                   "normalize": False},
    }
    result = run(args)
    print_table(result, meta)
    if args.json:
        write_json(args.json, {"metadata": meta, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
