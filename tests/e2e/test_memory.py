"""Memory under clients that never read, heavy requests and abandoned work, on a real server.

Stalling is real (tests/stalling.py): raw channels whose responses are never iterated, so the
server's writes stop. Every test watches the server's RSS
(/proc/PID/status) and kills its own server past a cap, so a regression fails the test instead of
the machine.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from heatmap_client import HeatmapClient, HeatmapError

from live_server import running_server
from probes import free_port, scrape, wait_for
from stalling import Stalled, rss_bytes

pytestmark = pytest.mark.timeout(180)

GB = 1 << 30
NORMAL = np.random.default_rng(1).uniform(0, 64, (8, 17, 2)).astype(np.float32)


def _served(target: str) -> float:
    """Seconds a normal client waits for a correct reply."""
    with HeatmapClient(target, timeout=60) as client:
        started = time.monotonic()
        result = client.render(NORMAL, size=(64, 48), sigma=2.0)
        elapsed = time.monotonic() - started
    assert np.isfinite(result.heatmaps).all() and result.heatmaps.max() > 0.5
    return elapsed


def _watch_rss(server, seconds: float, cap: int, also=lambda: None) -> int:
    """The server's peak RSS over ``seconds``; kills it (and fails) past ``cap``."""
    peak, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_bytes(server.process.pid))
        if peak > cap:
            server.stop(signal.SIGKILL)
            pytest.fail(f"server RSS {peak / 1e9:.2f} GB passed the cap of {cap / 1e9:.2f} GB")
        also()
        time.sleep(0.2)
    return peak


def test_stalled_streams_and_calls_hold_bounded_memory_and_others_are_served():
    # Default flags: 8 streams of 32x68x64x64 `none` replies (34 MiB each) and 4 calls of the
    # largest default output (256 MiB `none`), none of them read.
    port = free_port()
    with running_server("--metrics-port", str(port)) as server:
        _served(server.target)
        warm = rss_bytes(server.process.pid)
        stalled = Stalled(server.target, streams=8, unary=4)
        latencies: list[float] = []
        try:
            peak = _watch_rss(server, 6.0, warm + 2 * GB,
                              also=lambda: latencies.append(_served(server.target))
                              if len(latencies) < 3 else None)
            in_use = scrape(port).value("heatmap_reply_budget_in_use_bytes")
        finally:
            stalled.cancel()
        assert peak - warm < 2 * GB
        assert latencies and max(latencies) < 30  # served meanwhile, not after the stalled ones
        assert 0 < in_use <= 512 << 20
        assert wait_for(lambda: scrape(port).value("heatmap_reply_budget_in_use_bytes") == 0,
                        timeout=30), scrape(port)
        _served(server.target)
        server.stop()
        assert "Traceback" not in server.log, server.log
        assert " ERROR " not in server.log, server.log


def test_a_stream_holds_only_its_window():
    # 1 MiB replies and a 4 MiB window: a reader that never reads holds about four of them.
    port = free_port()
    flags = ("--metrics-port", str(port), "--stream-window-bytes", str(4 << 20))
    with running_server(*flags) as server:
        stalled = Stalled(server.target, streams=1, per_stream=40,
                           stream_kwargs=dict(batch=4, keypoints=16, side=64))
        try:
            held = []
            _watch_rss(server, 3.0, 4 * GB, also=lambda: held.append(
                scrape(port).value("heatmap_reply_budget_in_use_bytes")))
        finally:
            stalled.cancel()
        reply = 4 * 16 * 64 * 64 * 4 + 4 * 16 * 4
        assert 0 < max(held) <= 4 << 20
        assert max(held) >= reply  # it did render ahead
        renders = scrape(port).value("heatmap_render_requests_total", code="OK")
        assert renders <= 8, renders  # 40 requests were sent; few were rendered
        server.stop()
        assert "Traceback" not in server.log, server.log


def test_a_client_that_never_reads_is_cut_off_and_its_memory_returns():
    port = free_port()
    flags = ("--metrics-port", str(port), "--send-timeout-s", "1.5")
    with running_server(*flags) as server:
        stalled = Stalled(server.target, streams=1, unary=1)
        try:
            assert wait_for(lambda: scrape(port).value("heatmap_stalled_calls_total") == 2,
                            timeout=60), scrape(port)
            assert wait_for(
                lambda: scrape(port).value("heatmap_reply_budget_in_use_bytes") == 0, timeout=10
            ), scrape(port)
            for call in stalled.calls:  # a client that reads again learns why its call ended
                with pytest.raises(grpc.RpcError) as caught:
                    for _ in call:
                        pass
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "--send-timeout-s" in caught.value.details()
        finally:
            stalled.cancel()
        _served(server.target)
        server.stop()
        assert "Traceback" not in server.log, server.log


def test_over_the_budget_is_resource_exhausted_naming_it():
    flags = ("--reply-budget-bytes", str(8 << 20), "--budget-wait-s", "0.5")
    with running_server(*flags) as server:
        with HeatmapClient(server.target, timeout=30) as client:
            with pytest.raises(HeatmapError) as caught:  # 16 MiB of float32: can never fit
                client.render(np.zeros((4, 16, 2), np.float32), size=(256, 256), sigma=2.0)
            assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "reply budget" in caught.value.message
            assert "--reply-budget-bytes" in caught.value.message
            # A stalled stream holds the budget; a reply that waits for room is refused in time.
            stalled = Stalled(server.target, streams=1, per_stream=8,
                               stream_kwargs=dict(batch=4, keypoints=16, side=128))
            try:
                time.sleep(1.0)
                with pytest.raises(HeatmapError) as caught:
                    client.render(np.zeros((4, 16, 2), np.float32), size=(128, 128), sigma=2.0)
                assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "waited 0.5 s for room" in caught.value.message
            finally:
                stalled.cancel()
            assert client.render(NORMAL, size=(64, 48), sigma=2.0).heatmaps.shape == (8, 17, 64, 48)


def test_abandoned_heavy_requests_stop_and_a_normal_client_is_served_soon():
    # 1x128x4 at 4096x4096 is 8.6G element passes (over the default work limit, raised here).
    with running_server("--max-work-elements", str(1 << 34)) as server:
        _served(server.target)
        heavy = np.random.default_rng(0).uniform(0, 4096, (1, 128, 4, 2)).astype(np.float32)
        with HeatmapClient(server.target, timeout=60) as client:
            with ThreadPoolExecutor(3) as pool:
                calls = [pool.submit(client.render, heavy, size=(4096, 4096), sigma=2.0,
                                     timeout=0.5) for _ in range(3)]
                for call in calls:
                    with pytest.raises(HeatmapError) as caught:
                        call.result()
                    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert _served(server.target) < 3.0
        server.stop()
        assert "Traceback" not in server.log, server.log


def test_light_requests_are_served_between_the_pieces_of_a_heavy_one():
    with running_server("--max-work-elements", str(1 << 34)) as server:
        _served(server.target)
        # 8.6G element passes: seconds on a CPU, rendered in pieces of about 0.1 s.
        heavy = np.random.default_rng(0).uniform(0, 2048, (1, 128, 16, 2)).astype(np.float32)
        with HeatmapClient(server.target, timeout=120) as client, ThreadPoolExecutor(1) as pool:
            busy = pool.submit(client.render, heavy, size=(2048, 2048), sigma=2.0, dtype="uint8")
            time.sleep(0.3)
            waited = _served(server.target)
            result = busy.result()
        # Generous: the point is "not the whole heavy render", which takes seconds on a CPU.
        assert waited < max(2.0, result.timings.render_us / 1e6 / 2), (waited, result.timings)
        assert result.heatmaps.max() == 1.0  # uint8 on the wire, 255 at the peaks


def test_shutdown_with_stalled_clients_logs_no_traceback():
    with running_server("--grace-s", "1") as server:
        stalled = Stalled(server.target, streams=2, stream_kwargs=dict(batch=8))
        time.sleep(1.5)
        assert server.stop() == 0
        stalled.cancel()
        assert "Traceback" not in server.log, server.log
        assert " ERROR " not in server.log, server.log
