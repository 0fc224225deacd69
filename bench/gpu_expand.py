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
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client.torch import expand_profiles
from heatmap_render import render_profiles

from gpu_render import SCENARIOS, cuda_median_ms


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
        "expand_ms": cuda_median_ms(
            lambda: expand_profiles(rows, cols, out=out32), device, repeats
        ),
        "expand_f16_ms": cuda_median_ms(
            lambda: expand_profiles(rows, cols, dtype=torch.float16, out=out16), device, repeats
        ),
        "d2d_copy_ms": cuda_median_ms(lambda: target.copy_(source), device, repeats),
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
