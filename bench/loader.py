"""Benchmark: a training step without a model, for each way of making the heatmap targets.

A DataLoader over the bundled COCO annotations (tests/data/coco/test_coco.json: the person boxes
and their 17 keypoints, mapped into the heatmap with a seeded scale and shift per sample; for
K != 17 every extra keypoint lies between two real ones of the same person, so the synthetic sets
keep the real poses' spread) with 2 forked workers and ``pin_memory=True`` where a GPU is
present; the main process moves each batch's targets and weights to the training device and
waits for them there. Per scenario (S2: B=32, K=17, 64x48; S3: B=32, K=68, 64x64; S4: B=8,
K=133, 96x72; msra, sigma 2), five modes and a sixth:

  mmpose_loop      workers: an mmpose-style numpy loop per sample (bench/reference_loops.py)
  local_dense      workers: our renderer in-process, HeatmapCollate("local")
  service_dense    workers: the service, dense float32 over zstd
  service_sep_cli  workers: the service, separable on the wire, expanded in the workers
  service_sep_dev  workers: the service, output="separable"; expanded on the training device
  local_sep_dev    workers: our renderer's profiles, HeatmapCollate("local", output="separable")
  no_targets       workers: default_collate alone; the DataLoader's own cost, for scale

Columns, all from one run: worker CPU ms per batch (each worker's time.process_time when it hands
over a batch, differenced over the timed batches, all threads of the process: collate, render or
gRPC, pickling into shared memory), main-process CPU ms per batch (receiving the batch, the pin
thread, the copy and, for service_sep_dev, the expansion: on a CPU device that is CPU work here,
on a GPU a kernel launch; then a loss-like sum reads the targets once on the device), target
bytes moved to the device per batch, and samples/s. Then the
server's CPU per batch (utime+stime from /proc) for dense vs separable replies with 8 loader
processes (a DataLoader with 8 workers) against one server.

Everything shares this machine's cores: the server, the workers and the main process. Before
timing, each mode's first batch on the device is checked against the renderer: bit for bit for
ours and the service's, within 1e-6 for the mmpose loop.

Usage: .venv/bin/python bench/loader.py [--json PATH] [--png PATH] [--quick]
       [--device auto|cpu|cuda] [--server-device auto|cpu|cuda] [--scenarios S2,S3,S4]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client import HeatmapClient  # noqa: E402

from loader_data import (  # noqa: E402
    ANNOTATIONS,
    PoseSamples,
    StampedCollate,
    make_collate,
    synthesize,
)
from local_server import Server  # noqa: E402
from measuring import proc_cpu_s  # noqa: E402
from report import cpu_model, git_commit, grouped_bars, pyplot, write_json  # noqa: E402
from scenarios import SCENARIOS as ALL_SCENARIOS  # noqa: E402
from scenarios import Scenario, parse_scenarios

SCENARIOS = {name: ALL_SCENARIOS[name] for name in ("S2", "S3", "S4")}
MODES = {
    "mmpose_loop": "workers: mmpose-style numpy loop",
    "local_dense": "workers: our renderer, dense",
    "service_dense": "service, dense zstd",
    "service_sep_cli": "service, separable, expanded in workers",
    "service_sep_dev": "service, separable, expanded on device",
    "local_sep_dev": "workers: our profiles, expanded on device",
    "no_targets": "workers: no targets, the loader's floor",
}
SERVER_MODES = ("service_dense", "service_sep_dev")
WORKERS = 2
SERVER_LOADERS = 8
LOOP_TOLERANCE = 1e-6
# What this benchmark is to show, at S3 and S4: service_sep_dev's worker CPU at most 10% of the
# mmpose loop's and half of service_dense's; and at S2-S4 25x fewer target bytes to the device.
LOOP_FRACTION, DENSE_FRACTION, BYTES_FACTOR = 0.10, 0.5, 25
CPU_CHECK_SCENARIOS = ("S3", "S4")


# --- one row --------------------------------------------------------------------------------------


class MismatchError(RuntimeError):
    """A mode's targets differ from the renderer's: the benchmark refuses to time it."""


def to_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training step without a model: targets and weights on the device, read once there
    (as a loss reads them: on a CPU device a dense target is otherwise never touched), waited
    for."""
    heatmaps = batch["heatmaps"].to(device, non_blocking=True)
    weights = batch["heatmap_weights"].to(device, non_blocking=True)
    heatmaps.sum() + weights.sum()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return heatmaps, weights


def check_batch(mode: str, sc: Scenario, batch: dict, heatmaps: torch.Tensor) -> None:
    from heatmap_render import render_heatmaps

    local = render_heatmaps(batch["keypoints"], sc.size, sc.sigma, method=sc.method,
                            coords=sc.coords,
                            visibility=None if mode == "mmpose_loop" else batch["visibility"])
    got = heatmaps.cpu()
    if mode == "no_targets":
        return
    if mode == "mmpose_loop":
        diff = float((got - local.heatmaps).abs().max())
        if not diff <= LOOP_TOLERANCE:
            raise MismatchError(f"{sc.name} {mode}: differs from the renderer by {diff:g}")
    elif not (torch.equal(got, local.heatmaps)
              and torch.equal(batch["heatmap_weights"], local.weights)):
        raise MismatchError(f"{sc.name} {mode}: differs from the renderer")


def run_row(mode: str, sc: Scenario, samples, source, device: torch.device, workers: int,
            seconds: float, min_batches: int, server_pid: int | None) -> dict:
    """One DataLoader for about ``seconds`` after warm-up: the row's sums (:func:`summarize`)."""
    dataset = PoseSamples(*samples, length=sc.batch * 1_000_000)
    loader = DataLoader(dataset, batch_size=sc.batch, num_workers=workers,
                        collate_fn=StampedCollate(make_collate(mode, sc, source)),
                        pin_memory=device.type == "cuda", multiprocessing_context="fork",
                        timeout=120)
    batches = iter(loader)
    reference: dict[int, float] = {}  # pid -> its CPU seconds at its first timed batch
    latest: dict[int, tuple[float, int]] = {}  # pid -> (CPU seconds, batches since reference)
    for _ in range(2 * workers + 2):  # warm-up: every worker's first batches, the channel, caches
        batch = next(batches)
        heatmaps, _ = to_device(batch, device)
    check_batch(mode, sc, batch, heatmaps)
    count = 0
    server0 = proc_cpu_s(server_pid) if server_pid else 0.0
    main0, wall0 = time.process_time(), time.perf_counter()
    while True:
        batch = next(batches)
        to_device(batch, device)
        pid, cpu = batch["worker_pid"], batch["worker_cpu_s"]
        reference.setdefault(pid, cpu)
        latest[pid] = (cpu, latest[pid][1] + 1 if pid in latest else 0)
        count += 1
        if count >= min_batches and time.perf_counter() - wall0 >= seconds:
            break
    sums = {
        "wall_s": time.perf_counter() - wall0,
        "main_cpu_s": time.process_time() - main0,
        "server_cpu_s": proc_cpu_s(server_pid) - server0 if server_pid else 0.0,
        "batches": count,
        "worker_cpu_s": sum(latest[pid][0] - reference[pid] for pid in latest),
        "worker_batches": sum(seen for _, seen in latest.values()),
        "device_bytes_per_batch": int(batch["heatmaps"].nbytes),
    }
    del batches  # stops the workers
    return sums


def summarize(rounds: list[dict], sc: Scenario) -> dict:
    """A row's numbers from its rounds' sums: CPU per batch over all of them together."""
    total = {key: sum(r[key] for r in rounds) for key in rounds[0]
             if key != "device_bytes_per_batch"}
    return {
        "rounds": len(rounds),
        "batches": total["batches"],
        "worker_cpu_ms_per_batch": total["worker_cpu_s"] * 1e3 / max(total["worker_batches"], 1),
        "main_cpu_ms_per_batch": total["main_cpu_s"] * 1e3 / total["batches"],
        "device_bytes_per_batch": rounds[0]["device_bytes_per_batch"],
        "samples_per_s": total["batches"] * sc.batch / total["wall_s"],
        "server_cpu_ms_per_batch": total["server_cpu_s"] * 1e3 / total["batches"],
        "wall_s": total["wall_s"],
    }


def run_scenario(sc: Scenario, args, client: HeatmapClient, device: torch.device,
                 server_pid: int) -> dict:
    """Every mode in ``args.rounds`` interleaved rounds (so that a change in the machine's load
    falls on all of them), then the server rows."""
    samples = synthesize(sc, ANNOTATIONS)
    min_batches = 4 if args.quick else 8
    seconds = args.seconds / args.rounds
    sums: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for _ in range(args.rounds):
        for mode in args.modes:
            sums[mode].append(run_row(mode, sc, samples, client, device, WORKERS, seconds,
                                      min_batches, server_pid))
    result = {"scenario": {"name": sc.name, "label": sc.label, "shape": sc.shape},
              "stats": {mode: summarize(rounds, sc) for mode, rounds in sums.items()}}
    if not args.no_server_rows:
        result["server"] = {
            mode: summarize([run_row(mode, sc, samples, client, device, SERVER_LOADERS,
                                     args.seconds, min_batches, server_pid)], sc)
            for mode in SERVER_MODES
        }
    return result


# --- the run --------------------------------------------------------------------------------------


def evaluate(results: list[dict]) -> list[dict]:
    checks = []
    for result in results:
        name, rows = result["scenario"]["name"], result["stats"]
        sep, dense = rows.get("service_sep_dev"), rows.get("service_dense")
        if sep is None or dense is None:
            continue
        factor = dense["device_bytes_per_batch"] / sep["device_bytes_per_batch"]
        checks.append({"scenario": name, "check": f"device bytes dense/separable >= {BYTES_FACTOR}",
                       "value": factor, "ok": factor >= BYTES_FACTOR})
        if name not in CPU_CHECK_SCENARIOS:
            continue
        ratio = sep["worker_cpu_ms_per_batch"] / dense["worker_cpu_ms_per_batch"]
        checks.append({"scenario": name, "check": f"worker CPU separable/dense <= {DENSE_FRACTION}",
                       "value": ratio, "ok": ratio <= DENSE_FRACTION})
        if "mmpose_loop" in rows:
            ratio = sep["worker_cpu_ms_per_batch"] / rows["mmpose_loop"]["worker_cpu_ms_per_batch"]
            checks.append({"scenario": name,
                           "check": f"worker CPU separable/mmpose loop <= {LOOP_FRACTION}",
                           "value": ratio, "ok": ratio <= LOOP_FRACTION})
    return checks


def print_report(results: list[dict], checks: list[dict], meta: dict) -> None:
    print(f"# bench/loader.py  {meta['date']}  commit {meta['commit']}")
    print(f"# {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']}, training device "
          f"{meta['device']}, server {meta['server_device']}, {WORKERS} workers, "
          f"pin_memory={meta['pin_memory']}, load average {meta['load_average']['start'][0]:.1f}"
          f" at the start, {meta['load_average']['end'][0]:.1f} at the end")
    header = (f"{'scen':<5}{'mode':<17}{'worker CPU':>11}{'main CPU':>10}{'to device':>12}"
              f"{'samples/s':>11}  description")
    print("\n" + header + "\n" + f"{'':<22}{'ms/batch':>11}{'ms/batch':>10}{'bytes':>12}")
    for result in results:
        for mode, row in result["stats"].items():
            print(f"{result['scenario']['name']:<5}{mode:<17}"
                  f"{row['worker_cpu_ms_per_batch']:>11.2f}"
                  f"{row['main_cpu_ms_per_batch']:>10.2f}{row['device_bytes_per_batch']:>12,}"
                  f"{row['samples_per_s']:>11.0f}  {MODES[mode]}")
    server_rows = [r for r in results if r.get("server")]
    if server_rows:
        print(f"\nserver CPU ms per batch, {SERVER_LOADERS} loader processes")
        print(f"{'scen':<5}{'dense':>10}{'separable':>11}{'ratio':>8}")
        for result in server_rows:
            dense, sep = (result["server"][m]["server_cpu_ms_per_batch"] for m in SERVER_MODES)
            print(f"{result['scenario']['name']:<5}{dense:>10.2f}{sep:>11.2f}{dense / sep:>7.1f}x")
    if checks:
        print()
        for check in checks:
            print(f"{'ok  ' if check['ok'] else 'MISS'} {check['scenario']}: {check['check']}: "
                  f"{check['value']:.3g}")


def write_png(results: list[dict], path: str) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (key, label) in zip(axes, [("worker_cpu_ms_per_batch", "worker CPU ms / batch"),
                                       ("main_cpu_ms_per_batch", "main-process CPU ms / batch"),
                                       ("device_bytes_per_batch", "target bytes to device")]):
        grouped_bars(ax, results, list(MODES), lambda stats, key=key: stats[key])
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--png", help="write bar charts here")
    parser.add_argument("--quick", action="store_true", help="short rows (a smoke run)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="timed seconds per row, over all rounds (default 3; 0.5 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds of the modes per scenario (default 2; 1 with "
                        "--quick)")
    parser.add_argument("--device", default="auto", help="training device: auto, cpu, cuda[:N]")
    parser.add_argument("--server-device", default="auto", help="the server's --device")
    parser.add_argument("--main-threads", type=int, default=1,
                        help="torch threads of the main process (default 1: the workers and the "
                        "server hold the cores; more only spin against them)")
    parser.add_argument("--scenarios", default="S2,S3,S4")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-server-rows", action="store_true",
                        help=f"skip the {SERVER_LOADERS}-loader server CPU rows")
    args = parser.parse_args(argv)
    args.scenarios = parse_scenarios(parser, args.scenarios, SCENARIOS)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in MODES for m in args.modes):
        parser.error(f"--modes: choose from {','.join(MODES)}")
    if args.seconds is None:
        args.seconds = 0.5 if args.quick else 3.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # The server rows run more loader processes than this machine has cores, on purpose.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    device = torch.device(args.device)
    torch.set_num_threads(args.main_threads)
    started, load_at_start = time.perf_counter(), os.getloadavg()
    server = Server("loader bench", ["--device", args.server_device])
    results: list[dict] = []
    try:
        client = HeatmapClient(server.target, timeout=60)
        info = client.info()  # the workers inherit a client that was used, as a loader's would be
        for name in args.scenarios:
            t0 = time.perf_counter()
            results.append(run_scenario(SCENARIOS[name], args, client, device, server.pid))
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        client.close()
    finally:
        server.stop()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (git_commit() or "unknown")[:12], "cpu": cpu_model(), "cores": os.cpu_count(),
        "python": platform.python_version(), "torch": torch.__version__, "device": str(device),
        "server_device": info.device, "pin_memory": device.type == "cuda",
        "workers": WORKERS, "main_threads": args.main_threads, "seconds_per_row": args.seconds,
        "rounds": args.rounds,
        "elapsed_s": time.perf_counter() - started,
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
    }
    checks = evaluate(results)
    print_report(results, checks, meta)
    print(f"\n(total run {meta['elapsed_s']:.0f} s)")
    if args.json:
        write_json(args.json, {"metadata": meta, "results": results, "checks": checks})
    if args.png:
        write_png(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
