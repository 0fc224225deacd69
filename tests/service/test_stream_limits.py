"""Open streams on a real server: one connection holds at most ``--max-streams-per-connection``
(its others wait in its own gRPC), a RenderStream with nothing in flight is ended UNAVAILABLE
after ``--stream-idle-s``, and hundreds of idle streams leave health and other clients served,
in bounded memory."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient
from heatmap_server.watches import STREAM_IDLE

from idle_streams import IdleStreams, connection
from live_server import running_server
from probes import free_port, render_request, scrape, wait_for
from stalling import Stalled, rss_bytes

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20
SERVING = health_pb2.HealthCheckResponse.SERVING
KEYPOINTS = np.random.default_rng(3).uniform(0, 32, (4, 17, 2)).astype(np.float32)


def _held(port: int) -> float:
    return scrape(port).value("heatmap_open_streams")


def _health(channel: grpc.Channel, timeout: float = 10) -> int:
    request = health_pb2.HealthCheckRequest()
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status


def _served(target: str) -> None:
    """A normal client, on its own connection, gets a correct reply."""
    with HeatmapClient(target, timeout=30) as client:
        result = client.render(KEYPOINTS, size=(32, 32), sigma=2.0)
    assert result.heatmaps.shape == (4, 17, 32, 32) and result.heatmaps.max() > 0.5


@pytest.mark.parametrize("connections", [1, 2, 10])
def test_300_idle_streams_leave_health_and_a_new_client_served(connections):
    port = free_port()
    with running_server("--metrics-port", str(port)) as server:
        _served(server.target)
        warm = rss_bytes(server.process.pid)
        # 100 a connection (--max-streams-per-connection), 256 in all (--max-open-streams)
        at_server = min(100 * connections, 256)
        with IdleStreams(server.target, 300, connections) as idle:
            assert wait_for(lambda: _held(port) == at_server, timeout=60), scrape(port)
            refused = 300 - at_server if connections * 100 > 256 else 0
            assert wait_for(lambda: len(idle.ended()) == refused, timeout=30)
            assert {call.code() for call in idle.ended()} <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
            with connection(server.target) as channel:
                assert _health(channel) == SERVING
            _served(server.target)  # single calls have slots of their own
            grown = rss_bytes(server.process.pid) - warm
            assert _held(port) == at_server  # the rest wait in their client, or were refused
            assert len(idle.ended()) == refused
        assert grown < 64 * MiB, grown  # measured: a few MiB
        assert wait_for(lambda: _held(port) == 0, timeout=30), scrape(port)
        server.stop()
        assert "Traceback" not in server.log, server.log


def _answered_then_silent(count: int, silent):
    for request_id in range(1, count + 1):
        yield render_request(KEYPOINTS, size=(16, 16), sigma=1.0, request_id=request_id)
    silent.wait()


def _paced(count: int, pause_s: float):
    for request_id in range(1, count + 1):
        yield render_request(KEYPOINTS, size=(16, 16), sigma=1.0, request_id=request_id)
        time.sleep(pause_s)


def _answered(replies) -> list[int]:
    return [chunk.request_id for chunk in replies if chunk.last]


def test_a_stream_with_nothing_in_flight_is_ended_unavailable_and_counted():
    port = free_port()
    flags = ("--metrics-port", str(port), "--stream-idle-s", "1")
    with running_server(*flags) as server, connection(server.target) as channel:
        stub = pb_grpc.HeatmapRendererStub(channel)
        # A stream that never sent anything, and one that was answered and then fell silent.
        silent = threading.Event()
        with IdleStreams(server.target, 1) as idle:
            answered = stub.RenderStream(_answered_then_silent(3, silent), timeout=60)
            got: list[int] = []
            try:
                for call in (idle.calls[0], answered):
                    with pytest.raises(grpc.RpcError) as caught:
                        for chunk in call:
                            got += [chunk.request_id] if chunk.last else []
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                    details = caught.value.details()
                    assert details.startswith(STREAM_IDLE), details
                    assert "1 s" in details and "--stream-idle-s" in details
            finally:
                silent.set()
            assert got == [1, 2, 3]  # every reply came before the end
        # A stream that keeps sending (for longer than the idle time) is never idle.
        assert _answered(stub.RenderStream(_paced(20, 0.1), timeout=60)) == list(range(1, 21))
        samples = scrape(port)
        assert samples.value("heatmap_idle_streams_ended_total") == 2
        assert samples.value("heatmap_requests_total", rpc="RenderStream", code="UNAVAILABLE") == 2
        assert samples.value("heatmap_requests_total", rpc="RenderStream", code="OK") == 1
        assert _held(port) == 0
        server.stop()
        assert "Traceback" not in server.log, server.log


def test_a_stream_whose_client_reads_slowly_is_not_idle():
    # Replies owed but not read: the send timeout governs such a stream, not the idle clock.
    port = free_port()
    flags = ("--metrics-port", str(port), "--stream-idle-s", "1")
    with running_server(*flags) as server:
        stalled = Stalled(server.target, streams=1, per_stream=4)
        try:
            assert wait_for(lambda: _held(port) == 1, timeout=30), scrape(port)
            time.sleep(3)  # three idle times with replies owed
            assert not stalled.calls[0].done()
            assert scrape(port).value("heatmap_idle_streams_ended_total") == 0
        finally:
            stalled.cancel()
        assert wait_for(lambda: _held(port) == 0, timeout=30), scrape(port)


def test_one_connection_holds_at_most_its_streams_and_the_rest_wait_in_its_client():
    port = free_port()
    flags = ("--metrics-port", str(port), "--max-streams-per-connection", "5")
    with running_server(*flags) as server:
        assert scrape(port).value("heatmap_streams_per_connection_limit") == 5
        with IdleStreams(server.target, 5) as idle:
            assert wait_for(lambda: _held(port) == 5, timeout=30), scrape(port)
            first = list(idle.calls)
            waiting = idle.open(3)
            time.sleep(0.5)
            assert _held(port) == 5 and not idle.ended()
            # Past the cap, a call on that connection waits in the client, here to its deadline.
            with pytest.raises(grpc.RpcError) as caught:
                _health(idle.channels[0], timeout=1)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # Another connection is served, health included.
            with connection(server.target) as other:
                assert _health(other) == SERVING
            _served(server.target)
            # A stream that ends lets one that waited in.
            idle.half_close(first)
            assert wait_for(lambda: _held(port) == len(waiting), timeout=30), scrape(port)
            assert [call.code() for call in first] == [grpc.StatusCode.OK] * len(first)
            assert not any(call.done() for call in waiting)
        assert wait_for(lambda: _held(port) == 0, timeout=30), scrape(port)
