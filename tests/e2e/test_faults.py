"""Faults against real server processes: kill -9, SIGTERM and SIGINT mid-stream, clients that
vanish, deadlines. Nothing may hang: every wait here is bounded, and the times are measured.

Run with ``-s`` to see the measured times (kill -9 to the client's error, SIGTERM to exit).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap_client import HeatmapClient, HeatmapError

from live_server import running_server
from probes import busy_request, free_port, scrape, wait_for

RNG = np.random.default_rng(0)
REQUESTS = [dict(keypoints=RNG.uniform(0, 64, (8, 17, 2)).astype(np.float32), size=(128, 96),
                 sigma=2.0) for _ in range(16)]

pytestmark = pytest.mark.timeout(120)


def _stream(count: int):
    return (REQUESTS[index % len(REQUESTS)] for index in range(count))


def test_kill_9_mid_stream_fails_the_client_promptly():
    with running_server() as server:
        # No wait for a server to come back (ready_timeout=0): the failure itself is under test.
        with HeatmapClient(server.target, timeout=60, ready_timeout=0) as client:
            received, killed = 0, 0.0
            with pytest.raises(HeatmapError) as caught:
                for _ in client.render_many(_stream(10_000)):
                    received += 1
                    if received == 3:
                        server.process.send_signal(signal.SIGKILL)
                        killed = time.monotonic()
            stream_error_s = time.monotonic() - killed
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE, caught.value
            assert server.process.wait(10) == -signal.SIGKILL
            # A new call finds nobody listening: UNAVAILABLE after the retry policy's attempts.
            started = time.monotonic()
            with pytest.raises(HeatmapError) as again:
                client.render(**REQUESTS[0])
            new_call_s = time.monotonic() - started
            assert again.value.code == grpc.StatusCode.UNAVAILABLE
    print(f"\nkill -9: stream error after {stream_error_s:.3f} s ({received} results first); "
          f"a new call UNAVAILABLE after {new_call_s:.2f} s")
    assert stream_error_s < 5.0 and new_call_s < 10.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stream_in_flight_completes_across_a_shutdown_signal(signum):
    total = 300
    with running_server("--grace-s", "30") as server:
        with HeatmapClient(server.target, timeout=60) as client, \
                grpc.insecure_channel(server.target) as channel:
            # A health Watch opened before the signal sees the switch to NOT_SERVING.
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            received, signalled, refused = 0, 0.0, None
            for result in client.render_many(_stream(total)):
                assert result.heatmaps.shape == (8, 17, 128, 96)
                received += 1
                if received == 3:
                    server.process.send_signal(signum)
                    signalled = time.monotonic()
                    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
                if received == 10:
                    # New calls are refused while the stream goes on.
                    with HeatmapClient(server.target, timeout=30, ready_timeout=0) as late:
                        try:
                            late.render(**REQUESTS[0])
                        except HeatmapError as error:
                            refused = error
            exit_code = server.process.wait(30)
            exit_s = time.monotonic() - signalled
    print(f"\n{signal.Signals(signum).name}: {received}/{total} results of the stream in flight "
          f"arrived ({received - 3} after the signal); exit {exit_code} {exit_s:.2f} s after it")
    assert received == total
    assert refused is not None and refused.code == grpc.StatusCode.UNAVAILABLE
    assert exit_code == 0
    assert any("shutting down" in line for line in server.lines)
    assert server.lines[-1].endswith("stopped"), server.log


def test_a_health_watch_ends_at_shutdown_instead_of_holding_the_grace_period():
    with running_server("--grace-s", "60") as server, \
            grpc.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=90)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        statuses = [response.status for response in watch]  # the stream ends by itself
        exit_code = server.process.wait(50)
        exit_s = time.monotonic() - signalled
    print(f"\nSIGTERM with a Watch open: exit {exit_code} {exit_s:.2f} s after it (grace 60 s)")
    assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]
    assert watch.code() == grpc.StatusCode.OK
    assert exit_code == 0 and exit_s < 30  # an open Watch used to hold the whole grace period


def test_calls_past_the_grace_period_are_cut_and_the_server_still_exits_0():
    with running_server("--grace-s", "1") as server:
        with HeatmapClient(server.target, timeout=60, ready_timeout=0) as client:
            received = 0
            with pytest.raises(HeatmapError) as caught:
                # Far more than one second of work: the grace period ends the stream.
                for _ in client.render_many(_stream(100_000)):
                    received += 1
                    if received == 2:
                        server.process.send_signal(signal.SIGTERM)
                        signalled = time.monotonic()
            cut_s = time.monotonic() - signalled
            exit_code = server.process.wait(30)
    print(f"\ngrace 1 s: stream cut {cut_s:.2f} s after SIGTERM ({caught.value.code.name}), "
          f"{received} results; exit {exit_code}")
    assert caught.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), (
        caught.value)
    assert 2 < received < 100_000
    assert 0.5 < cut_s < 6.0, cut_s
    assert exit_code == 0


# --- vanishing clients and deadlines ------------------------------------------------------------

_CLIENT = textwrap.dedent("""
    import sys
    import numpy as np
    from heatmap_client import HeatmapClient
    points = np.random.default_rng(1).uniform(0, 64, (8, 17, 2)).astype(np.float32)
    requests = (dict(keypoints=points, size=(128, 96), sigma=2.0) for _ in range(100_000))
    with HeatmapClient(sys.argv[1], timeout=120) as client:
        for index, _ in enumerate(client.render_many(requests, window=8)):
            if index == 2:
                print("streaming", flush=True)
""")


@pytest.fixture(scope="module")
def metered():
    port = free_port()
    # busy_request's renders are over the default work limit.
    with running_server("--metrics-port", str(port), "--max-work-elements", str(1 << 34)) as server:
        yield server, port


def _idle(port: int) -> bool:
    samples = scrape(port)
    return (samples.value("heatmap_in_flight_requests") == 0
            and samples.value("heatmap_queue_depth") == 0)


def _finished_streams(port: int) -> dict[str, float]:
    samples = scrape(port)
    return {code: samples.value("heatmap_requests_total", rpc="RenderStream", code=code)
            for code in ("OK", "CANCELLED", "UNKNOWN", "INTERNAL")}


def test_a_client_killed_mid_stream_leaves_nothing_in_flight(metered):
    server, port = metered
    before = _finished_streams(port)
    process = subprocess.Popen([sys.executable, "-c", _CLIENT, server.target],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "streaming"
        assert scrape(port).value("heatmap_in_flight_requests") >= 1
        process.kill()
        process.wait(10)
    finally:
        process.kill()
        process.stdout.close()
    assert wait_for(lambda: _idle(port), timeout=10), scrape(port)
    after = _finished_streams(port)
    grown = {code: after[code] - before[code] for code in after}
    # gRPC hands a reset stream to the handler as a normal end of input. With replies still owed
    # the next write fails and the stream counts as CANCELLED; when every request read had
    # already been answered, the handler cannot tell a kill from a half-close, and it counts OK.
    assert grown["UNKNOWN"] == grown["INTERNAL"] == 0, grown
    assert grown["OK"] + grown["CANCELLED"] == 1, grown
    with HeatmapClient(server.target, timeout=30) as client:
        assert client.render(**REQUESTS[0]).heatmaps.shape == (8, 17, 128, 96)


def test_a_client_that_stops_reading_cancels_its_stream(metered):
    server, port = metered
    with HeatmapClient(server.target, timeout=30) as client:
        results = client.render_many(_stream(1000), window=8)
        for index, _ in enumerate(results):
            if index == 2:
                break
        results.close()  # what garbage collection does to an abandoned generator
        assert wait_for(lambda: _idle(port), timeout=10), scrape(port)
        assert client.render(**REQUESTS[1]).heatmaps.shape == (8, 17, 128, 96)


def test_a_call_past_its_deadline_is_never_rendered(metered):
    server, port = metered
    with HeatmapClient(server.target, timeout=60) as client:
        # Holds the device thread for `seconds`; the late ones give up after an eighth of that, so
        # a blocker that runs several times faster than it did when measured still outlasts them.
        busy, seconds = busy_request(client, at_least_s=0.8)
        assert wait_for(lambda: _idle(port))
        before = scrape(port)
        with ThreadPoolExecutor(6) as pool:
            blocker = pool.submit(client.render, **busy)
            assert wait_for(lambda: scrape(port).value("heatmap_queue_depth") == 1)
            # Queued behind the blocker, each gives up long before the device thread is free.
            # Heavy as well: light requests would be served between the blocker's pieces.
            late = [pool.submit(client.render, **busy, timeout=seconds / 8) for _ in range(5)]
            for future in late:
                with pytest.raises(HeatmapError) as caught:
                    future.result()
                assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            blocked = blocker.result()
        assert wait_for(lambda: _idle(port), timeout=10)
        after = scrape(port)

        def grown(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        assert grown("heatmap_requests_total", rpc="Render", code="CANCELLED") == 5
        # Device time and reply bytes went to the blocker alone: the five were skipped.
        assert grown("heatmap_render_seconds_count") == 1
        assert grown("heatmap_bytes_out_total") == blocked.wire_bytes
        assert client.render(**REQUESTS[1]).heatmaps.shape == (8, 17, 128, 96)
