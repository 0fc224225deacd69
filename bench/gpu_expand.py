"""Profiles made dense on the training device: ``expand_profiles`` on a GPU against a
device-to-device copy of the dense bytes, and bit equality with the CPU's result.

For S2/S3/S4 at B = 32: the profiles (what a separable batch carries to the device) expanded into
a reused ``out=`` in float32 and float16, and the copy of a dense tensor of the same shape (what
the device pays when dense targets arrive). CUDA events, medians, interleaved. A table on stdout,
JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from heatmap_client.torch import expand_profiles
from heatmap_server.render import render_profiles

SCENARIOS = {
    "S2": dict(keypoints=17, size=(64, 48)),
    "S3": dict(keypoints=68, size=(64, 64)),
    "S4": dict(keypoints=133, size=(96, 72)),
}


def _time(fn, device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn`` by CUDA events (each call synchronised separately)."""
    fn()
    torch.cuda.synchronize(device)
    samples = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop))
    return statistics.median(samples)


def measure(name: str, batch: int, device: torch.device, repeats: int) -> dict:
    spec = SCENARIOS[name]
    height, width = spec["size"]
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(batch, spec["keypoints"], 2, generator=generator)
    points = points * torch.tensor([width, height])
    profiles = render_profiles(points, spec["size"], 2.0)
    expected = expand_profiles(profiles.rows, profiles.cols)  # on the CPU
    rows, cols = profiles.rows.to(device), profiles.cols.to(device)
    dense = expand_profiles(rows, cols)
    exact = torch.equal(dense.cpu(), expected)
    out32 = torch.empty_like(dense)
    out16 = torch.empty(dense.shape, dtype=torch.float16, device=device)
    source, target = torch.empty_like(dense), torch.empty_like(dense)
    return {
        "scenario": name,
        "batch": batch,
        "dense_bytes": dense.numel() * 4,
        "profile_bytes": (rows.numel() + cols.numel()) * 4,
        "exact": exact,
        "expand_ms": _time(lambda: expand_profiles(rows, cols, out=out32), device, repeats),
        "expand_f16_ms": _time(
            lambda: expand_profiles(rows, cols, dtype=torch.float16, out=out16), device, repeats
        ),
        "d2d_copy_ms": _time(lambda: target.copy_(source), device, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_expand: no CUDA device here", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    rows = [measure(name, 32, device, args.repeats) for name in SCENARIOS]
    print("| scenario | B | dense MB | profiles KB | exact | expand ms | expand f16 ms "
          "| d2d copy ms | expand / copy |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['scenario']} | {row['batch']} | {row['dense_bytes'] / 1e6:.1f} "
              f"| {row['profile_bytes'] / 1e3:.0f} | {row['exact']} | {row['expand_ms']:.4f} "
              f"| {row['expand_f16_ms']:.4f} | {row['d2d_copy_ms']:.4f} "
              f"| {row['expand_ms'] / row['d2d_copy_ms']:.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0 if all(row["exact"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
