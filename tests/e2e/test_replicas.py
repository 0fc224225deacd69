"""Replicas: one client, several servers, gRPC's own round_robin and retries; deadlines.

Two real server processes on loopback behind one ``ipv4:`` target: both receive requests (their
``heatmap_requests_total`` counters grow), and after ``kill -9`` of one, every further render goes
through the other.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from heatmap_client import HeatmapClient, HeatmapError

from live_server import running_server
from probes import free_port, scrape, wait_for

KEYPOINTS = np.random.default_rng(0).uniform(0, 48, size=(4, 17, 2)).astype(np.float32)


def _renders(metrics_port: int) -> float:
    """``heatmap_requests_total{rpc="RenderUnary",code="OK"}`` from the server's /metrics."""
    return scrape(metrics_port).value("heatmap_requests_total", rpc="RenderUnary", code="OK")


def _render(client: HeatmapClient) -> None:
    result = client.render(KEYPOINTS, size=(64, 48), sigma=2.0)
    assert result.heatmaps.shape == (4, 17, 64, 48)


@pytest.mark.timeout(120)
def test_round_robin_over_two_replicas_survives_kill_9():
    ports = [free_port(), free_port()]
    with running_server("--metrics-port", str(ports[0])) as first, \
            running_server("--metrics-port", str(ports[1])) as second:
        target = f"ipv4:{first.target},{second.target}"
        with HeatmapClient(target, timeout=10) as client:
            # round_robin sends to every READY replica; the first calls may find only one ready.
            for _ in range(60):
                _render(client)
                if _renders(ports[0]) > 0 and _renders(ports[1]) > 0:
                    break
            assert wait_for(lambda: _renders(ports[0]) > 0 and _renders(ports[1]) > 0), (
                f"one replica got nothing: {_renders(ports[0])} and {_renders(ports[1])} renders"
            )

            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
            before = _renders(ports[1])
            for _ in range(20):  # each must succeed: UNAVAILABLE is retried on the survivor
                _render(client)
            assert wait_for(lambda: _renders(ports[1]) >= before + 20), (
                f"the survivor served {_renders(ports[1]) - before} of 20 renders"
            )


def test_dns_target(live_server):
    with HeatmapClient(f"dns:///{live_server.target}", timeout=10) as client:
        _render(client)


@pytest.mark.timeout(30)
def test_retries_are_bounded_when_no_replica_answers():
    # Nothing listens there: without a wait for a server to come back (ready_timeout=0), the
    # retry policy's attempts and backoff run out well before the deadline, and the call fails
    # UNAVAILABLE rather than waiting for it (tests/e2e/test_restarts.py bounds the wait).
    with HeatmapClient(f"ipv4:127.0.0.1:{free_port()}", timeout=20, ready_timeout=0) as client:
        start = time.monotonic()
        with pytest.raises(HeatmapError) as error:
            _render(client)
    assert error.value.code.name == "UNAVAILABLE"
    assert time.monotonic() - start < 10


def test_every_call_has_a_deadline(live_server):
    # ~0.3 s of work on a CPU server (9 M output elements, under every limit), 1 ms to do it in.
    big = np.random.default_rng(1).uniform(0, 128, size=(32, 17, 2)).astype(np.float32)
    with HeatmapClient(live_server.target, timeout=10) as client:
        with pytest.raises(HeatmapError) as error:
            client.render(big, size=(128, 128), sigma=2.0, timeout=0.001)
    assert error.value.code.name == "DEADLINE_EXCEEDED"
