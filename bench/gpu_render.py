"""The renderer on a GPU against the device's own copy bandwidth.

For S2/S3/S4 at B = 32 and B = 256: ours into a reused ``out=`` (float32 and float16), and the
floors measured in the same run on the same bytes: a device-to-device copy of an output-sized
tensor, a ``zero_()``, and the device-to-pinned-host copy a server pays to send it. CUDA events,
median of many, interleaved. A table on stdout, JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from heatmap_render import render_heatmaps

SCENARIOS = {
    "S2": dict(keypoints=17, size=(64, 48)),
    "S3": dict(keypoints=68, size=(64, 64)),
    "S4": dict(keypoints=133, size=(96, 72)),
}


def cuda_median_ms(fn, device: torch.device, repeats: int) -> float:
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
    points = points.to(device)
    out = torch.empty(batch, spec["keypoints"], height, width, device=device)
    out16 = torch.empty_like(out, dtype=torch.float16)
    source = torch.rand_like(out)
    host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
    columns = {
        "ours_out": lambda: render_heatmaps(points, (height, width), 2.0, out=out),
        "ours_out_f16": lambda: render_heatmaps(points, (height, width), 2.0, dtype=torch.float16,
                                                out=out16),
        "ours_fresh": lambda: render_heatmaps(points, (height, width), 2.0),
        "d2d_copy": lambda: out.copy_(source),
        "zero": lambda: out.zero_(),
        "d2h_pinned": lambda: host.copy_(out, non_blocking=True),
    }
    medians = {key: [] for key in columns}
    for _ in range(5):  # interleave: five rounds of every column
        for key, fn in columns.items():
            medians[key].append(cuda_median_ms(fn, device, repeats))
    row = {key: statistics.median(values) for key, values in medians.items()}
    row.update(scenario=name, batch=batch, bytes=out.numel() * 4,
               ratio_to_copy=row["ours_out"] / row["d2d_copy"])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_render: no CUDA device; nothing to measure", file=sys.stderr)
        return 0
    device = torch.device(args.device)
    rows = [measure(name, batch, device, args.repeats) for name in SCENARIOS for batch in (32, 256)]
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print("| scenario | B | MB | ours out= ms | ours f16 ms | ours fresh ms | d2d copy ms "
          "| zero ms | d2h pinned ms | ours / copy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['scenario']} | {row['batch']} | {row['bytes'] / 1e6:.1f} "
              f"| {row['ours_out']:.3f} "
              f"| {row['ours_out_f16']:.3f} | {row['ours_fresh']:.3f} | {row['d2d_copy']:.3f} "
              f"| {row['zero']:.3f} | {row['d2h_pinned']:.3f} | {row['ratio_to_copy']:.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                       "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
