"""Where a loader's CPU goes in one remote ``render(out=)`` (bench/service.py --profile)."""

from __future__ import annotations

import cProfile
import io
import pstats
import time

import numpy as np

from heatmap_client import HeatmapClient

from measuring import render_kwargs
from scenarios import Scenario


def profile_client(sc: Scenario, client: HeatmapClient, sent: list[np.ndarray], calls: int) -> dict:
    """Where a loader's CPU goes in ``render(out=)``: cProfile over many calls, plus each client
    step timed alone on captured reply chunks (request building, decode, weights)."""
    from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
    from heatmap_client import RenderOptions
    from heatmap_client.replies import result_from_chunks
    from heatmap_client.requests import build_request
    from heatmap_client.wire import CODECS, array_from_tensor, payload_crc32, rebuild_dense

    kwargs = render_kwargs(sc)
    out = np.empty(sc.shape, np.float32)
    for i in range(5):
        client.render(sent[i % 8], out=out, **kwargs)

    profiler = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    profiler.enable()
    for i in range(calls):
        client.render(sent[i % 8], out=out, **kwargs)
    profiler.disable()
    per_call_cpu = (time.process_time() - c0) * 1e3 / calls
    per_call_wall = (time.perf_counter() - t0) * 1e3 / calls
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
    top = text.getvalue()

    def cost(fn, n=200):
        c, t = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        return ((time.perf_counter() - t) * 1e3 / n, (time.process_time() - c) * 1e3 / n)

    stub = pb_grpc.HeatmapRendererStub(client._open())
    options = RenderOptions(**kwargs)
    request = build_request(sent[0], options)
    chunks = list(stub.Render(request, timeout=60))
    header = chunks[0].header
    pieces = [c.data for c in chunks]
    codec = CODECS[header.codec]

    def grpc_only():  # the RPC and chunk iteration, no decode
        list(stub.Render(request, timeout=60))

    from heatmap.v1 import heatmap_pb2 as pb

    separable = RenderOptions(**{**kwargs, "codec": "separable"})
    sep = list(stub.Render(build_request(sent[0], separable), timeout=60))
    rows = np.empty((sc.batch, 1, sc.keypoints, sc.height), np.float32)
    cols = np.empty((sc.batch, 1, sc.keypoints, sc.width), np.float32)
    CODECS[sep[0].header.codec].decode([c.data for c in sep], [rows, cols])

    # The same zstd frame with an XXH64 content checksum, as the payload carried before the
    # header's CRC-32 of the compressed bytes replaced it, measured so the choice travels with
    # the run.
    import zstandard

    codec.decode(pieces, [out])
    with_checksum = zstandard.ZstdCompressor(
        level=3, write_content_size=True, write_checksum=True).compress(out)

    def multiply_rebuild():  # a broadcast multiply instead of einsum, for comparison
        np.multiply(rows[:, 0, :, :, None], cols[:, 0, :, None, :], out=out)

    steps = {
        "unary_rpc_baseline_GetServerInfo": cost(
            lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=60), calls),
        "build_request": cost(lambda: build_request(sent[0], RenderOptions(**kwargs)), 2000),
        "zstd_decode_into_out": cost(lambda: codec.decode(pieces, [out])),
        "weights_array_from_tensor": cost(lambda: array_from_tensor(chunks[-1].weights, "w"), 2000),
        "result_from_chunks_total": cost(
            lambda: result_from_chunks(chunks, request=request, out=out)),
        "grpc_call_and_receive_no_decode": cost(grpc_only, calls),
        "zstd_decode_frame_with_xxh64_checksum": cost(
            lambda: codec.decode([with_checksum], [out])),
        "payload_crc32": cost(lambda: payload_crc32(pieces), 2000),
        "full_render_out": cost(lambda: client.render(sent[0], out=out, **kwargs), calls),
        "full_render_out_codec_none": cost(
            lambda: client.render(sent[0], out=out, codec="none", **kwargs), max(10, calls // 5)),
        "full_render_out_codec_separable": cost(
            lambda: client.render(sent[0], out=out, codec="separable", **kwargs), calls),
        "separable_rebuild_einsum": cost(lambda: rebuild_dense(rows, cols, out)),
        "separable_rebuild_np_multiply": cost(multiply_rebuild),
        "floor_out_fill_0": cost(lambda: out.fill(0)),
    }
    decoded_mb = header.decoded_bytes / 1e6
    return {
        "scenario": sc.name,
        "calls": calls,
        "profiled_wall_ms_per_call": per_call_wall,
        "profiled_cpu_ms_per_call": per_call_cpu,
        "steps_wall_cpu_ms": steps,
        "chunks_per_reply": len(chunks),
        "payload_bytes": header.payload_bytes,
        "decoded_mb": decoded_mb,
        "zstd_decode_gb_per_s": decoded_mb / steps["zstd_decode_into_out"][0],  # MB/ms = GB/s
        "cprofile_top_tottime": top,
    }
