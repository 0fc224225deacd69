"""Choosing a codec and dtype: bytes on the wire, client CPU, exactness, per method.

    .venv/bin/python bench/codecs.py                 # the README's tables on stdout
    .venv/bin/python bench/codecs.py --json out.json

For S2 (B=32, K=17, 64x48, sigma 2) and S3 (B=32, K=68, 64x64, sigma 2) and every method, each
codec's reply from a real CPU server on loopback: payload bytes, the client process's CPU per
``render(out=...)`` call (receiving and decoding; median of --calls), and the largest difference
from the renderer's own float32 result. Then, for one scenario, what each wire dtype costs and
what ``keep_dtype=True`` hands back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heatmap_client import HeatmapClient  # noqa: E402

from local_server import Server  # noqa: E402
from report import cpu_model, git_commit, write_json  # noqa: E402
from scenarios import SCENARIOS, make_keypoints  # noqa: E402

METHODS = ("seed", "msra", "udp", "dark")
CODECS = ("zstd", "separable", "none")
DTYPES = ("float32", "float16", "bfloat16", "uint16", "uint8")
CHOSEN = ("S2", "S3")


def _scenario_inputs(name: str) -> dict:
    sc = SCENARIOS[name]
    keypoints = make_keypoints(sc, np.random.default_rng([0, CHOSEN.index(name)]))
    return {"keypoints": keypoints, "size": sc.size, "sigma": sc.sigma}


def _client_cpu_ms(client: HeatmapClient, calls: int, **options) -> float:
    out = np.empty(client.render(**options).heatmaps.shape, np.float32)
    samples = []
    for _ in range(calls):
        start = time.process_time()
        client.render(out=out, **options)
        samples.append((time.process_time() - start) * 1e3)
    return statistics.median(samples)


def _exactness(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


def measure_codecs(client: HeatmapClient, calls: int) -> list[dict]:
    from heatmap_render import render_heatmaps

    rows = []
    for name in CHOSEN:
        inputs = _scenario_inputs(name)
        for method in METHODS:
            options = dict(inputs, method=method)
            expected = render_heatmaps(inputs["keypoints"], inputs["size"], inputs["sigma"],
                                       method=method).heatmaps.numpy()
            for codec in CODECS:
                result = client.render(codec=codec, **options)
                rows.append({
                    "scenario": name, "method": method, "codec": codec,
                    "wire_bytes": result.wire_bytes, "dense_bytes": result.heatmaps.nbytes,
                    "client_cpu_ms": _client_cpu_ms(client, calls, codec=codec, **options),
                    "max_error": _exactness(result.heatmaps, expected),
                })
    return rows


def measure_dtypes(client: HeatmapClient, calls: int, name: str = "S2") -> list[dict]:
    from heatmap_render import render_heatmaps

    inputs = _scenario_inputs(name)
    expected = render_heatmaps(
        inputs["keypoints"], inputs["size"], inputs["sigma"]).heatmaps.numpy()
    rows = []
    for dtype in DTYPES:
        result = client.render(dtype=dtype, **inputs)
        kept = client.render(dtype=dtype, keep_dtype=True, **inputs)
        rows.append({
            "scenario": name, "method": "msra", "codec": "zstd", "dtype": dtype,
            "wire_bytes": result.wire_bytes,
            "client_cpu_ms": _client_cpu_ms(client, calls, dtype=dtype, **inputs),
            "max_error": _exactness(result.heatmaps, expected),
            "keep_dtype_returns": str(kept.heatmaps.dtype),
        })
    return rows


def _print_codecs(rows: list[dict]) -> None:
    print("| scenario | method | zstd bytes | separable bytes | none bytes "
          "| client CPU ms zstd / separable / none | largest error zstd / separable / none |")
    print("|---|---|---:|---:|---:|---|---|")
    for name in CHOSEN:
        for method in METHODS:
            by = {r["codec"]: r for r in rows if r["scenario"] == name and r["method"] == method}
            cpu = " / ".join(f"{by[c]['client_cpu_ms']:.2f}" for c in CODECS)
            error = " / ".join("exact" if by[c]["max_error"] == 0 else f"{by[c]['max_error']:.1e}"
                               for c in CODECS)
            print(f"| {name} | {method} | {by['zstd']['wire_bytes']:,} "
                  f"| {by['separable']['wire_bytes']:,} | {by['none']['wire_bytes']:,} "
                  f"| {cpu} | {error} |")


def _print_dtypes(rows: list[dict]) -> None:
    print(f"\n{rows[0]['scenario']}, msra, zstd, by wire dtype:\n")
    print("| dtype | bytes | client CPU ms | largest error (float32 result) "
          "| keep_dtype=True returns |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        error = "exact" if r["max_error"] == 0 else f"{r['max_error']:.1e}"
        print(f"| {r['dtype']} | {r['wire_bytes']:,} | {r['client_cpu_ms']:.2f} | {error} "
              f"| {r['keep_dtype_returns']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="timed calls per cell (median)")
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls: at least 1")
    server = Server("cpu", ["--device", "cpu"])
    try:
        with HeatmapClient(server.target, timeout=60) as client:
            codecs = measure_codecs(client, args.calls)
            dtypes = measure_dtypes(client, args.calls)
    finally:
        server.stop()
    print(f"# Codecs and dtypes ({cpu_model()}, CPU server on loopback, "
          f"{args.calls} calls a cell)\n")
    _print_codecs(codecs)
    _print_dtypes(dtypes)
    if args.json:
        write_json(args.json, {"codecs": codecs, "dtypes": dtypes, "calls": args.calls,
                               "cpu": cpu_model(), "git_commit": git_commit()})


if __name__ == "__main__":
    main()
