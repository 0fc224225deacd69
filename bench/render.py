"""Benchmark: the vectorised renderer against the per-keypoint loops it replaces, and the floor.

Columns, all measured in one run and interleaved (every round visits the columns in a fresh random
order, so cache state, frequency scaling and noise hit them alike):

  ours_fresh   render_heatmaps(...) allocating its output (out=None)
  ours_out     render_heatmaps(..., out=buf) into a reused output
  seed_loop    the classic per-keypoint function: a fresh 2D kernel (np.exp) pasted into the slice
  cached_loop  the 2D kernel built once per sigma, pasted with np.maximum
  mmpose_loop  in the style of mmpose's generate_gaussian_heatmaps (np.exp, np.maximum per keypoint)
  kornia       kornia.geometry.subpix.render_gaussian2d on the whole batch (a speed reference only:
               it renders normalised Gaussians over the whole map); skipped when kornia is missing
  floor        zero_() of a reused float32 buffer of the output's shape: writing the output once

The loops return one fresh (K, H, W) array per sample, as a Dataset's __getitem__ does; collating
them into the batch is not timed (which only favours the loops) unless --collate is given. Before
anything is timed every loop is checked against the renderer method with its centre rule (max
|diff| <= 1e-6, equal weights); a mismatch stops the run, so it never times a wrong result.

Columns slower than --slow-ms get --slow-repeats samples instead of --repeats, spread evenly over
the same rounds, so they stay interleaved with the fast ones.

Usage: .venv/bin/python bench/render.py --threads 1 [--json PATH] [--png PATH] [--scenarios S2,S3]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_render import render_heatmaps

from reference_loops import cached_kernel_loop, mmpose_loop, seed_loop
from render_report import (
    COLUMNS,
    FLOOR_KEY,
    FLOOR_TARGET,
    SPEEDUP_KEY,
    SPEEDUP_SCENARIOS,
    SPEEDUP_TARGET,
    TOLERANCE,
    metadata,
    print_tables,
    write_png,
)
from report import write_json
from scenarios import (
    SCENARIOS,
    Scenario,
    from_normalized,
    make_keypoints,
    parse_scenarios,
    to_normalized,
)


class MismatchError(RuntimeError):
    """A reference loop and the renderer disagree: the benchmark refuses to time either."""


# --- correctness --------------------------------------------------------------------------------


def check_same(name: str, reference, ours, sc: Scenario, against: str) -> float:
    """Max |reference - ours|; raises :class:`MismatchError` over the tolerance or on weights."""
    maps, weights = reference
    expected = torch.from_numpy(np.stack(maps))
    diff = float((expected - ours.heatmaps).abs().max()) if expected.numel() else 0.0
    where = f"{sc.name}: {name} vs render_heatmaps({against})"
    if not diff <= TOLERANCE:
        raise MismatchError(
            f"{where}: heatmaps differ by {diff:.3g} (tolerance {TOLERANCE:g}); "
            "refusing to time a wrong result"
        )
    bad = int((weights != ours.weights.numpy()).sum())
    if bad:
        raise MismatchError(f"{where}: weights differ at {bad} keypoints; refusing to time it")
    return diff


# --- timing -------------------------------------------------------------------------------------


def summarize(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    return {
        "n": int(a.size),
        "median_ms": float(np.median(a)),
        "p10_ms": float(np.percentile(a, 10)),
        "p90_ms": float(np.percentile(a, 90)),
        "min_ms": float(a.min()),
        "mean_ms": float(a.mean()),
    }


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    slow_repeats: int,
    slow_ms: float,
    rng: np.random.Generator,
    warmup: int = 3,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Round-robin timing in random order per round.

    Returns per-column samples in ms, wall clock and this thread's CPU time (equal unless the
    thread waited, e.g. for a core another process held), and each column's round stride.
    """
    estimate = {}
    for name, fn in fns.items():
        times = []
        for _ in range(warmup):
            t0 = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        estimate[name] = min(times)
    slow_stride = max(1, math.ceil(repeats / slow_repeats))
    every = {name: slow_stride if estimate[name] > slow_ms else 1 for name in fns}
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            order = [name for name in fns if r % every[name] == 0]
            rng.shuffle(order)
            for name in order:
                fn = fns[name]
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                fn()
                t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                wall[name].append((t1 - t0) / 1e6)
                cpu[name].append((c1 - c0) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return wall, cpu, every


# --- one scenario -------------------------------------------------------------------------------


def kornia_column(points_px: np.ndarray, sc: Scenario):
    """``(callable, note)``: kornia on the whole batch, or ``(None, why it is skipped)``."""
    try:
        import kornia
        from kornia.geometry.subpix import render_gaussian2d
    except ImportError as exc:
        return None, f"kornia not installed ({exc.name}); pip install kornia to add the column"
    mean = torch.from_numpy(points_px.copy())
    std = torch.full_like(mean, sc.sigma)
    size = (sc.height, sc.width)
    kwargs = {}
    if "normalized_coordinates" in inspect.signature(render_gaussian2d).parameters:
        kwargs["normalized_coordinates"] = False  # means in pixels (its default is [-1, 1])
    return (lambda: render_gaussian2d(mean, std, size, **kwargs)), f"kornia {kornia.__version__}"


def run_scenario(sc: Scenario, args, rng: np.random.Generator) -> dict:
    size, sigma = (sc.height, sc.width), sc.sigma
    points_px = make_keypoints(sc, rng)
    if sc.coords == "normalized":
        points_in = to_normalized(points_px, sc)
        points_px = from_normalized(points_in, sc)  # what the renderer sees, bit for bit
    else:
        points_in = points_px
    kp = torch.from_numpy(points_in)
    shape = (sc.batch, sc.keypoints, *size)
    kwargs = {"method": sc.method, "coords": sc.coords}
    out_buf = torch.empty(shape, dtype=torch.float32)
    floor_buf = torch.empty(shape, dtype=torch.float32)
    rule = sc.method  # the loops' centre rule: "seed" on [-1, 1] input, "msra" on heatmap pixels

    # Correctness first. The mmpose-style loop has the msra centre rule on heatmap pixels.
    ours = render_heatmaps(kp, size, sigma, **kwargs)
    if not torch.equal(ours.heatmaps, render_heatmaps(kp, size, sigma, out=out_buf, **kwargs)[0]):
        raise MismatchError(f"{sc.name}: out= and out=None renders differ")
    ours_msra = render_heatmaps(torch.from_numpy(points_px), size, sigma, method="msra")
    against = f"method={sc.method!r}, coords={sc.coords!r}"
    msra = "method='msra', coords='heatmap'"
    checks = {
        "seed_loop": check_same(
            "seed_loop", seed_loop(points_in, size, sigma, rule), ours, sc, against
        ),
        "cached_loop": check_same(
            "cached_loop", cached_kernel_loop(points_in, size, sigma, rule), ours, sc, against
        ),
        "mmpose_loop": check_same(
            "mmpose_loop", mmpose_loop(points_px, size, sigma, "msra"), ours_msra, sc, msra
        ),
    }
    drawn = int((ours.weights > 0).sum())
    del ours, ours_msra

    def loop(fn, points, centre):
        if args.collate:  # also build the batch array default_collate would build
            return lambda: np.stack(fn(points, size, sigma, centre)[0])
        return lambda: fn(points, size, sigma, centre)

    fns: dict[str, Callable[[], object]] = {
        "ours_fresh": lambda: render_heatmaps(kp, size, sigma, **kwargs),
        "ours_out": lambda: render_heatmaps(kp, size, sigma, out=out_buf, **kwargs),
        "seed_loop": loop(seed_loop, points_in, rule),
        "cached_loop": loop(cached_kernel_loop, points_in, rule),
        "mmpose_loop": loop(mmpose_loop, points_px, "msra"),
    }
    kornia_fn, kornia_note = kornia_column(points_px, sc)
    if kornia_fn is not None:
        fns["kornia"] = kornia_fn
    fns["floor"] = floor_buf.zero_

    order_rng = np.random.default_rng(rng.integers(2**32))
    wall, cpu, every = time_interleaved(
        fns, args.repeats, args.slow_repeats, args.slow_ms, order_rng
    )
    samples = cpu if args.clock == "cpu" else wall
    stats = {name: {**summarize(s), "round_stride": every[name]} for name, s in samples.items()}
    # With one thread, wall > CPU time means the thread waited for a core: the machine was busy.
    busy = {
        name: float(np.median(np.divide(wall[name], np.maximum(cpu[name], 1e-6)))) for name in fns
    }
    med = {name: s["median_ms"] for name, s in stats.items()}
    ratios = {
        "ours_out_over_floor": med["ours_out"] / med["floor"],
        "ours_fresh_over_floor": med["ours_fresh"] / med["floor"],
        **{f"{c}_over_ours_out": med[c] / med["ours_out"] for c in COLUMNS[2:6] if c in med},
    }
    targets = {FLOOR_KEY: ratios["ours_out_over_floor"] <= FLOOR_TARGET}
    if sc.name in SPEEDUP_SCENARIOS:
        targets[SPEEDUP_KEY] = ratios["seed_loop_over_ours_out"] >= SPEEDUP_TARGET
    return {
        "scenario": asdict(sc),
        "output_shape": list(shape),
        "output_mb": math.prod(shape) * 4 / 1e6,
        "keypoints_drawn": drawn,
        "keypoints_total": sc.batch * sc.keypoints,
        "correctness_max_abs_diff": checks,
        "stats": stats,
        "ratios": ratios,
        "targets": targets,
        "notes": {"kornia": kornia_note},
        "wall_over_cpu_median": busy,
        "samples_ms": {"wall": wall, "thread_cpu": cpu},
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    add("--json", metavar="PATH", help="write every number and the metadata here")
    add("--png", metavar="PATH", help="bar chart (needs matplotlib; skipped without it)")
    add("--repeats", type=int, default=300, help="samples per fast column (default 300)")
    add("--slow-repeats", type=int, default=30, help="samples per slow column (default 30)")
    add("--slow-ms", type=float, default=5.0, help="warm-up time that makes a column slow (ms)")
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of S1,S2,S3,S4")
    add("--collate", action="store_true", help="time the loops' np.stack into the batch too")
    add(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="report wall time (default) or this thread's CPU time (robust to a busy machine; "
        "meaningful with --threads 1 only)",
    )
    add("--seed", type=int, default=0, help="RNG seed for keypoints and column order")
    args = p.parse_args(argv)
    args.scenarios = parse_scenarios(p, args.scenarios, SCENARIOS)
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu measures the calling thread only: use it with --threads 1")
    if min(args.threads, args.repeats, args.slow_repeats) < 1:
        p.error("--threads, --repeats and --slow-repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = metadata(args)
    results = []
    for name in args.scenarios:
        # Seeded per scenario, so that a subset (--scenarios S3) renders the same keypoints.
        rng = np.random.default_rng([args.seed, list(SCENARIOS).index(name)])
        t0 = time.perf_counter()
        results.append(run_scenario(SCENARIOS[name], args, rng))
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print_tables(results, meta)
    if args.json:
        write_json(args.json, {"metadata": meta, "results": results})
    if args.png:
        write_png(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
