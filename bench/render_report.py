"""The columns of bench/render.py, the bars it holds them to, and what it prints and plots."""

from __future__ import annotations

import datetime
import os
import platform
import sys

import numpy as np
import torch

from report import cpu_model, git_commit, grouped_bars, pyplot

COLUMNS = ("ours_fresh", "ours_out", "seed_loop", "cached_loop", "mmpose_loop", "kornia", "floor")
TOLERANCE = 1e-6
FLOOR_TARGET = 1.3  # ours(out=) / floor, every scenario
SPEEDUP_TARGET = 20.0  # seed loop / ours(out=), at SPEEDUP_SCENARIOS
SPEEDUP_SCENARIOS = ("S2", "S3")
BUSY_LIMIT = 1.1  # median wall / thread CPU time above which a single-thread run was disturbed
FLOOR_KEY = f"ours_out_over_floor_le_{FLOOR_TARGET:g}"
SPEEDUP_KEY = f"seed_loop_over_ours_out_ge_{SPEEDUP_TARGET:g}"


def fmt_ms(ms: float) -> str:
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def print_tables(results: list[dict], meta: dict) -> None:
    print(
        f"# render_heatmaps benchmark: torch {meta['torch']}, {meta['threads']} thread(s), "
        f"{meta['cpu_model']} ({meta['cpu_count']} CPUs), {meta['date']}\n"
    )
    clock = "thread CPU time" if meta["args"]["clock"] == "cpu" else "wall clock"
    print(f"Times in ms per batch ({clock}), interleaved; x floor = median / floor median.")
    if meta["args"]["collate"]:
        print("Loop columns include np.stack of the per-sample arrays into the batch (--collate).")
    for res in results:
        sc = res["scenario"]
        print(
            f"\n## {sc['name']}: B={sc['batch']}, K={sc['keypoints']}, "
            f"{sc['height']}x{sc['width']}, sigma={sc['sigma']:g}, method={sc['method']}, "
            f"coords={sc['coords']} ({sc['label']}; "
            f"output {res['output_mb']:.1f} MB, {res['keypoints_drawn']}/{res['keypoints_total']} "
            "keypoints drawn)\n"
        )
        print("| column | median | p10 | p90 | n | x floor |")
        print("|---|---:|---:|---:|---:|---:|")
        floor = res["stats"]["floor"]["median_ms"]
        for name in COLUMNS:
            s = res["stats"].get(name)
            if s is None:
                print(f"| {name} | skipped: {res['notes'].get(name, '')} | | | | |")
                continue
            print(
                f"| {name} | {fmt_ms(s['median_ms'])} | {fmt_ms(s['p10_ms'])} "
                f"| {fmt_ms(s['p90_ms'])} | {s['n']} | {s['median_ms'] / floor:.2f} |"
            )
        busy = {k: v for k, v in res["wall_over_cpu_median"].items() if v > BUSY_LIMIT}
        if meta["threads"] == 1 and busy:
            worst = ", ".join(f"{k} {v:.2f}x" for k, v in sorted(busy.items()))
            print(
                f"\nWarning: the machine was busy (median wall / thread CPU time: {worst}); "
                + (
                    "the thread CPU times above are not affected."
                    if meta["args"]["clock"] == "cpu"
                    else "slow columns suffer most. Rerun on a quiet machine or with --clock cpu."
                )
            )
    print("\n## Ratios (medians)\n")
    print(
        f"| scenario | ours(out=)/floor (target <= {FLOOR_TARGET:g}) | ours(fresh)/floor "
        f"| seed loop/ours(out=) (target >= {SPEEDUP_TARGET:g} at {','.join(SPEEDUP_SCENARIOS)}) "
        "| cached loop/ours(out=) | mmpose loop/ours(out=) | kornia/ours(out=) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for res in results:
        r, t = res["ratios"], res["targets"]
        floor_ok = "met" if t[FLOOR_KEY] else "NOT met"
        speed_ok = ("met" if t[SPEEDUP_KEY] else "NOT met") if SPEEDUP_KEY in t else "-"
        kornia = f"{r['kornia_over_ours_out']:.1f}x" if "kornia_over_ours_out" in r else "skipped"
        print(
            f"| {res['scenario']['name']} | {r['ours_out_over_floor']:.2f} ({floor_ok}) "
            f"| {r['ours_fresh_over_floor']:.2f} "
            f"| {r['seed_loop_over_ours_out']:.1f}x ({speed_ok}) "
            f"| {r['cached_loop_over_ours_out']:.1f}x | {r['mmpose_loop_over_ours_out']:.1f}x "
            f"| {kornia} |"
        )
    for note in sorted({n for res in results for n in res["notes"].values()}):
        if note.startswith("kornia not"):
            print(f"\nNote: {note}")


def write_png(results: list[dict], path: str) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(10, 5))
    grouped_bars(
        ax,
        results,
        COLUMNS,
        lambda s: s["median_ms"],
        lambda stats: [
            [s["median_ms"] - s["p10_ms"] for s in stats],
            [s["p90_ms"] - s["median_ms"] for s in stats],
        ],
    )
    ax.set_ylabel("ms per batch (median, p10-p90)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def metadata(args) -> dict:
    try:
        import kornia

        kornia_version = kornia.__version__
    except ImportError:
        kornia_version = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "kornia": kornia_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "args": vars(args),
        "tolerance": TOLERANCE,
        "targets": {
            "ours_out_over_floor_max": FLOOR_TARGET,
            "seed_loop_over_ours_out_min": SPEEDUP_TARGET,
            "speedup_scenarios": list(SPEEDUP_SCENARIOS),
        },
    }
