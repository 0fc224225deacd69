"""Clients that never read, for the memory tests and bench/stalled_clients.py: raw channels
without BDP probing (a 64 KiB receive window) whose responses are never iterated, so the
server's writes really stop; and the server's RSS from /proc."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from heatmap.v1 import heatmap_pb2_grpc as pb_grpc

from probes import render_request

__all__ = [
    "STALLED_CHANNEL_OPTIONS",
    "Stalled",
    "largest_request",
    "rss_bytes",
    "stream_requests",
]

# No BDP probing: the receive window stays at its initial 64 KiB and nothing reads it.
STALLED_CHANNEL_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.max_receive_message_length", 64 << 20),
]


def rss_bytes(pid: int) -> int:
    """The process's resident set (VmRSS) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stream_requests(count: int, batch: int = 32, keypoints: int = 68, side: int = 64):
    """``count`` requests for ``(batch, keypoints, side, side)`` float32 ``none`` replies."""
    rng = np.random.default_rng(0)
    for index in range(count):
        points = rng.uniform(0, side, (batch, keypoints, 2)).astype(np.float32)
        yield render_request(points, size=(side, side), sigma=2.0, codec="none",
                             request_id=index + 1)


def largest_request():
    """The largest default output: 4 x 4096 x 4096 float32 (64M elements, 256 MiB) ``none``."""
    points = np.full((1, 4, 2), 2048.0, np.float32)
    return render_request(points, size=(4096, 4096), sigma=4.0, codec="none")


class Stalled:
    """``streams`` RenderStreams and ``unary`` Render calls of the largest output, started on
    their own channels and never read; :meth:`cancel` ends them and returns how each ended."""

    def __init__(self, target: str, streams: int = 0, unary: int = 0, per_stream: int = 14,
                 stream_kwargs: dict | None = None, timeout: float = 300.0):
        self.channels, self.calls = [], []
        for index in range(streams + unary):
            channel = grpc.insecure_channel(target, options=STALLED_CHANNEL_OPTIONS)
            stub = pb_grpc.HeatmapRendererStub(channel)
            if index < streams:
                requests = stream_requests(per_stream, **(stream_kwargs or {}))
                self.calls.append(stub.RenderStream(requests, timeout=timeout))
            else:
                self.calls.append(stub.Render(largest_request(), timeout=timeout))
            self.channels.append(channel)

    def cancel(self) -> list[str]:
        for call in self.calls:
            call.cancel()
        codes = [call.code().name for call in self.calls]
        for channel in self.channels:
            channel.close()
        return codes
