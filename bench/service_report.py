"""The rows of bench/service.py, the targets they are held to, and what it prints and plots.

Only numpy and the standard library at import time: bench/service.py's spawned client processes
import it (as ``__mp_main__``) and with it this module; grpc, torch and zstandard load in
:func:`metadata`, in the parent only.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np

from report import cpu_model, git_commit, grouped_bars, pyplot

WALL_TARGET = 0.5  # remote render wall / mmpose loop wall, at TARGET_SCENARIOS
CPU_TARGET = 0.15  # remote render client CPU / mmpose loop CPU, at TARGET_SCENARIOS
MANY_TARGET = 1.3  # render_many batches/s / render batches/s
TARGET_SCENARIOS = ("S2", "S3")
# The mmpose-style loop's ms per batch on the 2-core reference machine the goals were set on.
REFERENCE_MMPOSE_MS = {"S2": 5.9, "S3": 25.0}
WINDOW = 4
CLIENTS = 8

LOCAL_ROWS = ("seed_loop", "mmpose_loop", "vectorised")
SINGLE_REMOTE_ROWS = ("render", "render_fresh", "render_nobatch", "render_many")
MULTI_ROWS = ("8proc_batcher", "8proc_nodelay", "8proc_nobatch")
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
                          f"(vs the reference machine's {REFERENCE_MMPOSE_MS[name]:g} ms: "
                          f"{r['median_ms'] / REFERENCE_MMPOSE_MS[name]:.2f}x)",
            })
            cpu = r["client_cpu_ms_per_batch"] / m["client_cpu_ms_per_batch"]
            rows.append({
                "scenario": name, "target": f"render client CPU <= {CPU_TARGET:.0%} of mmpose loop",
                "value": cpu, "met": cpu <= CPU_TARGET,
                "detail": f"{r['client_cpu_ms_per_batch']:.2f} ms vs "
                          f"{m['client_cpu_ms_per_batch']:.2f} ms CPU "
                          f"(vs the reference machine's {REFERENCE_MMPOSE_MS[name]:g} ms: "
                          f"{r['client_cpu_ms_per_batch'] / REFERENCE_MMPOSE_MS[name]:.0%})",
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


# --- reporting ------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 3) -> str:
    if value != value:  # nan
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def print_report(
    results: list[dict], targets: list[dict], profiles: list[dict], meta: dict
) -> None:
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
            f"\n## {sc['name']}: B={sc['batch']}, K={sc['keypoints']}, "
            f"{sc['height']}x{sc['width']}, "
            f"sigma={sc['sigma']:g}, method={sc['method']}, coords={sc['coords']} "
            f"({sc['label']}, output {res['output_mb']:.1f} MB float32)\n"
        )
        print("| approach | ms/batch median | p99 | samples/s | client CPU ms/batch "
              "| server CPU ms/batch | wire KB/batch | mean coalesced | server q/r/e ms "
              "| batches |")
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
        print("\n## Targets (the project's goals for the service; evaluated, not asserted)\n")
        print("| scenario | target | value | met | detail |")
        print("|---|---|---:|---|---|")
        for t in targets:
            print(f"| {t['scenario']} | {t['target']} | {t['value']:.2f} "
                  f"| {'yes' if t['met'] else 'NO'} | {t['detail']} |")
    for p in profiles:
        print(f"\n## Client profile, remote render(out=) at {p['scenario']} "
              f"({p['chunks_per_reply']} chunk(s), {p['payload_bytes']} payload bytes, "
              f"{p['decoded_mb']:.1f} MB decoded, "
              f"zstd decode {p['zstd_decode_gb_per_s']:.1f} GB/s)\n")
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
                    "scenarios": list(TARGET_SCENARIOS),
                    "reference_mmpose_ms": REFERENCE_MMPOSE_MS},
    }
