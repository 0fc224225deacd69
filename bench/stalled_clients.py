"""Server memory under clients that never read: RSS per stalled RenderStream and unary call.

Starts a real server (``heatmap-server serve`` on loopback, default flags unless given after
``--``), opens RenderStreams of ``none`` replies and unary calls of the largest default output
whose responses are never read (a raw channel with a small receive window), samples the server's
RSS, checks that a normal client is served meanwhile, cancels the stalled calls and reports.

    python bench/stalled_clients.py [--streams 8] [--unary 4] [--seconds 12] [-- server flags]

Prints a table (``--json`` for JSON): warm RSS, peak RSS, RSS per stalled stream, the normal
client's latency, what the stalled calls ended with, and whether the log holds a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from heatmap_client import HeatmapClient  # noqa: E402

from server_process import ServerProcess  # noqa: E402
from stalling import Stalled, rss_bytes  # noqa: E402


def normal_latency(target: str) -> float:
    points = np.random.default_rng(1).uniform(0, 64, (8, 17, 2)).astype(np.float32)
    with HeatmapClient(target, timeout=30) as client:
        started = time.perf_counter()
        result = client.render(points, size=(64, 48), sigma=2.0)
        assert np.isfinite(result.heatmaps).all() and result.heatmaps.max() > 0.5
        return time.perf_counter() - started


def run(streams: int, unary: int, seconds: float, flags: list[str], rss_cap: int) -> dict:
    with ServerProcess(["--device", "cpu", *flags]) as server:
        normal_latency(server.target)  # warm: the first render, the pool, the kernels
        warm = rss_bytes(server.pid)
        stalled = Stalled(server.target, streams, unary)
        peak, deadline = warm, time.monotonic() + seconds
        latencies = []
        capped = False
        while time.monotonic() < deadline:
            peak = max(peak, rss_bytes(server.pid))
            if peak > rss_cap:
                capped = True  # past the cap: stop here, the machine is shared
                break
            if not latencies or time.monotonic() > deadline - seconds / 2:
                latencies.append(normal_latency(server.target))
            time.sleep(0.2)
        held = rss_bytes(server.pid)
        codes = stalled.cancel()
        time.sleep(2.0)
        after = rss_bytes(server.pid)
        log = server.log
    calls = max(streams + unary, 1)
    return {
        "streams": streams,
        "unary": unary,
        "warm_rss_mb": warm / 1e6,
        "peak_rss_mb": peak / 1e6,
        "held_rss_mb": held / 1e6,
        "per_call_mb": (peak - warm) / calls / 1e6,
        "after_cancel_rss_mb": after / 1e6,
        "normal_latency_s": max(latencies),
        "stopped_at_rss_cap": capped,
        "ended": sorted(set(codes)),
        "traceback_in_log": "Traceback" in log,
        "log": log if "--log" in sys.argv else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--unary", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rss-cap-mb", type=float, default=3000.0,
                        help="stop the scenario once the server's RSS passes this")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--log", action="store_true", help="print the server log as well")
    parser.add_argument("flags", nargs="*", help="server flags, after --")
    args = parser.parse_args()
    result = run(args.streams, args.unary, args.seconds, args.flags, int(args.rss_cap_mb * 1e6))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>20}  {value:.1f}" if isinstance(value, float) else f"{key:>20}  {value}")


if __name__ == "__main__":
    main()
