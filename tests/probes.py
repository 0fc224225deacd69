"""Probing real servers in tests: a free port, a scrape of the Prometheus endpoint, a wait, a
request heavy enough to keep the device thread busy for a while, and render jobs made from checked
renderer arguments (for the batcher's own tests)."""

from __future__ import annotations

import socket
import time
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client import RenderOptions
from heatmap_client.requests import build_request
from heatmap_client.wire import (
    HeatmapLayout,
    ProfilesLayout,
    ProfileTableLayout,
    SimccLayout,
    codec_by_name,
    dtype_by_name,
)
from heatmap_render import SimccArgs

__all__ = [
    "Samples", "busy_request", "free_port", "render_job", "render_request", "scrape", "wait_for",
]


def render_job(args, *, dtype: str = "float32", codec: str = "zstd"):
    """A server ``RenderJob`` for checked renderer arguments (``RenderArgs`` or ``SimccArgs``), with
    the reply layout a request for them would have."""
    from heatmap_server.jobs import RenderJob

    wire, chosen = dtype_by_name(dtype), codec_by_name(codec)
    batch, instances, keypoints, _ = args.keypoints.shape
    lead = (batch, instances, keypoints) if args.has_instances else (batch, keypoints)
    if isinstance(args, SimccArgs):
        label_height, label_width = args.label_size
        layout = SimccLayout(chosen, wire, lead, label_width=label_width,
                             label_height=label_height)
    else:
        family = (ProfileTableLayout if chosen.name == "profile_table"
                  else ProfilesLayout if chosen.separable else HeatmapLayout)
        layout = family(chosen, wire, lead, *args.size)
    return RenderJob(args=args, layout=layout, request_id=0, arrived=time.perf_counter())


def render_request(
    keypoints, *, visibility=None, request_id: int = 0, **options
) -> pb.RenderRequest:
    """A ``RenderRequest`` from ``render()``'s keyword arguments, for tests that speak the wire."""
    return build_request(
        keypoints, RenderOptions(**options), visibility=visibility, request_id=request_id
    )


class Samples(dict):
    """``{(sample name, frozenset of label items): value}`` with a lookup by keyword labels."""

    def value(self, name: str, **labels: str) -> float:
        return self.get((name, frozenset(labels.items())), 0.0)

    def families(self) -> set[str]:
        return {name for name, _ in self}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> Samples:
    """Every sample on ``http://127.0.0.1:PORT/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = Samples()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def wait_for(condition, timeout: float = 5.0) -> bool:
    """Metrics move when a call ends on the server, a moment after the client has its reply."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def busy_request(client, at_least_s: float = 0.5) -> tuple[dict, float]:
    """Options for a ``render`` that holds the server's device thread for ``at_least_s`` or more,
    and the render time measured; skips the test where no request is that slow (a fast GPU).

    Many instances on a large heatmap: each instance is one more max-merge over the whole output,
    so the time grows without a larger reply. Every rung stays under the default limits (output
    B*K*H*W and profiles B*N*K*(H+W) at most 64M elements).
    """
    rng = np.random.default_rng(0)
    seconds = 0.0
    # At most 128 instances (the default --max-instances) and 64M output elements.
    for instances, keypoints, side in ((128, 16, 1024), (128, 60, 1024)):
        points = rng.uniform(0, side, (1, instances, keypoints, 2)).astype(np.float32)
        options = dict(keypoints=points, size=(side, side), sigma=2.0)
        seconds = client.render(**options).timings.render_us / 1e6
        if seconds >= at_least_s:
            return options, seconds
    pytest.skip(f"no request keeps this device busy for {at_least_s} s (best {seconds:.3f} s)")
