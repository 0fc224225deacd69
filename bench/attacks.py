"""What a hostile client costs everyone else: each heavy or odd request against one real server,
while a normal client keeps asking for a small batch.

Starts ``heatmap-server serve`` on loopback (CPU, default flags unless given after ``--``) and
runs the cases one after another on that one server. For each it reports the attack's own outcome
(OK and its time, or the status it was refused with), the normal client's slowest and median
latency while the attack ran, and the server's peak RSS so far (``VmHWM``). The server is killed
past ``--rss-cap`` (the machine is shared); a case that pushed it there says so.

    python bench/attacks.py [--json] [--rss-cap-gb 4] [-- server flags]

Cases:
    many_sigmas       one request, 40,000 keypoints on a 1x1 map, each its own sigma
    new_sigma_sets    10 requests of 1M keypoints, each a new pair of sigma values (RSS growth)
    long_profiles     render_profiles of 16,000 keypoints on a 4096x1 map, udp
    simcc_at_limit    SimCC labels of 4,400 x 17 keypoints at 256x192 (just under the work limit)
    simcc_float16_inf SimCC with sigma 1e-6, normalized, float16 (a peak past float16's range)
    idle_streams      300 RenderStreams that send nothing; then health and a normal call
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from heatmap.v1 import heatmap_pb2_grpc as pb_grpc  # noqa: E402
from heatmap_client import HeatmapClient  # noqa: E402

from server_process import ServerProcess  # noqa: E402

NORMAL = np.random.default_rng(1).uniform(0, 48, (8, 17, 2)).astype(np.float32)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class NormalClient:
    """A loader asking for (8, 17, 64, 48) every 50 ms, each call's latency recorded."""

    def __init__(self, target: str):
        self._client = HeatmapClient(target, timeout=120)
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                result = self._client.render(NORMAL, size=(64, 48), sigma=2.0)
                assert result.heatmaps.max() > 0.5
                self.latencies.append(time.perf_counter() - started)
            except Exception as error:  # noqa: BLE001 - reported in the table
                self.failures.append(f"{type(error).__name__}: {str(error)[:80]}")
            self._stop.wait(0.05)

    def __enter__(self) -> NormalClient:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(130)
        self._client.close()


def _outcome(call) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        call()
        outcome = "OK"
    except Exception as error:  # noqa: BLE001 - the status is the finding
        code = getattr(error, "code", None)
        outcome = getattr(code, "name", None) or type(error).__name__
    return outcome, time.perf_counter() - started


def many_sigmas(client: HeatmapClient, server) -> str:
    count = 40_000
    points = np.zeros((1, count, 2), np.float32)
    sigma = np.linspace(0.01, 0.33, count, dtype=np.float32).reshape(1, count)
    return client.render(points, size=(1, 1), sigma=sigma)


def new_sigma_sets(client: HeatmapClient, server) -> None:
    count = 1_000_000
    points = np.zeros((1, count, 2), np.float32)
    for index in range(10):
        sigma = np.where(np.arange(count) % 2 == 0, 0.5 + index / 100, 0.8 + index / 100)
        client.render(points, size=(1, 1), sigma=sigma.astype(np.float32).reshape(1, count))


def long_profiles(client: HeatmapClient, server) -> None:
    points = np.random.default_rng(2).uniform(0, 4096, (1, 16_000, 2)).astype(np.float32)
    points[..., 0] = 0.0
    client.render_profiles(points, size=(4096, 1), sigma=2.0, method="udp")


def simcc_at_limit(client: HeatmapClient, server) -> None:
    points = np.random.default_rng(3).uniform(0, 192, (4400, 17, 2)).astype(np.float32)
    client.render_simcc(points, (256, 192), (4.9, 5.66))


def simcc_float16_inf(client: HeatmapClient, server) -> None:
    points = np.random.default_rng(4).uniform(0, 192, (2, 17, 2)).astype(np.float32)
    result = client.render_simcc(points, (256, 192), 1e-6, dtype="float16")
    if not (np.isfinite(result.x_labels).all() and np.isfinite(result.y_labels).all()):
        raise RuntimeError("inf in an OK reply")


def _nothing(stop: threading.Event):
    """A request stream that sends nothing until ``stop``."""
    stop.wait()
    yield from ()


def idle_streams(client: HeatmapClient, server) -> None:
    stop = threading.Event()
    channels = [grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool",
                                                                1), ("bench.index", index)])
                for index in range(10)]
    calls = []
    try:
        for index in range(300):
            stub = pb_grpc.HeatmapRendererStub(channels[index % len(channels)])
            calls.append(stub.RenderStream(_nothing(stop), timeout=120))
        time.sleep(2.0)
        with grpc.insecure_channel(server.target) as fresh:
            status = health_pb2_grpc.HealthStub(fresh).Check(
                health_pb2.HealthCheckRequest(), timeout=10).status
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"health {status}")
        with HeatmapClient(server.target, timeout=10) as fresh_client:
            fresh_client.render(NORMAL, size=(64, 48), sigma=2.0)
    finally:
        stop.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()


CASES = {
    "many_sigmas": many_sigmas,
    "new_sigma_sets": new_sigma_sets,
    "long_profiles": long_profiles,
    "simcc_at_limit": simcc_at_limit,
    "simcc_float16_inf": simcc_float16_inf,
    "idle_streams": idle_streams,
}


def run(flags: list[str], rss_cap: int, cases: list[str]) -> list[dict]:
    rows = []
    with ServerProcess(["--device", "cpu", *flags]) as server:
        watching, capped = threading.Event(), []

        def watch() -> None:
            while not watching.wait(0.1):
                if _rss(server.pid) > rss_cap:
                    capped.append(True)
                    server.process.kill()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with HeatmapClient(server.target, timeout=120) as client:
            client.render(NORMAL, size=(64, 48), sigma=2.0)
            for name in cases:
                before = _rss(server.pid)
                with NormalClient(server.target) as normal:
                    time.sleep(0.3)
                    outcome, seconds = _outcome(functools.partial(CASES[name], client, server))
                    time.sleep(0.3)
                latencies = normal.latencies or [float("nan")]
                rows.append({
                    "case": name, "outcome": "killed at the RSS cap" if capped else outcome,
                    "attack_s": round(seconds, 2),
                    "normal_max_s": round(max(latencies), 3),
                    "normal_median_s": round(statistics.median(latencies), 3),
                    "normal_failures": len(normal.failures),
                    "rss_growth_mb": round((_rss(server.pid) - before) / 2**20)
                    if not capped else None,
                    "peak_rss_mb": round(_peak_rss(server.pid) / 2**20) if not capped else None,
                })
                if capped:
                    break
        watching.set()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rss-cap-gb", type=float, default=4.0)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args, flags = parser.parse_known_args()
    flags = [flag for flag in flags if flag != "--"]
    rows = run(flags, int(args.rss_cap_gb * 2**30), args.cases)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in columns) + " |")


if __name__ == "__main__":
    main()
