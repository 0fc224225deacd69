"""The Prometheus endpoint of a real server (``--metrics-port``): every metric, counted exactly."""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from heatmap_client import HeatmapClient, HeatmapError

from live_server import running_server
from probes import free_port, scrape, wait_for

KEYPOINTS = np.random.default_rng(1).uniform(0, 32, size=(2, 5, 2)).astype(np.float32)
HISTOGRAMS = ("heatmap_queue_seconds", "heatmap_render_seconds", "heatmap_encode_seconds",
              "heatmap_request_seconds", "heatmap_coalesced_requests")
GAUGES = ("heatmap_in_flight_requests", "heatmap_queue_depth", "heatmap_device_memory_bytes",
          "heatmap_reply_budget_in_use_bytes", "heatmap_reply_budget_limit_bytes",
          "heatmap_buffer_pool_idle_bytes", "heatmap_buffer_pool_leased_bytes",
          "heatmap_buffer_pool_limit_bytes", "heatmap_kernel_cache_bytes",
          "heatmap_kernel_cache_entries")


@pytest.fixture(scope="module")
def metered():
    port = free_port()
    # A long coalescing window, so that concurrent equal requests share a device call.
    with running_server("--metrics-port", str(port), "--max-delay-us", "50000") as server:
        yield server, port


def test_every_metric_is_exposed_before_any_call(metered):
    _, port = metered
    names = scrape(port).families()
    for histogram in HISTOGRAMS:
        assert {f"{histogram}_bucket", f"{histogram}_count", f"{histogram}_sum"} <= names
    for gauge in GAUGES:
        assert gauge in names
    assert {"heatmap_bytes_out_total", "heatmap_inline_renders_total"} <= names


def test_calls_are_counted_by_rpc_and_code(metered):
    server, port = metered
    before = scrape(port)
    with HeatmapClient(server.target, timeout=30) as client:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(
                lambda seed: client.render(KEYPOINTS + seed, size=(32, 32), sigma=2.0), range(6)))
        streamed = list(client.render_many(
            [dict(keypoints=KEYPOINTS, size=(16, 16), sigma=1.0, codec=codec)
             for codec in ("zstd", "none", "separable")]))
        with pytest.raises(HeatmapError):
            client.render(KEYPOINTS, size=(32, 32), sigma=100.0)  # wider than the map
    rendered = results + streamed

    def grown(name: str, **labels: str) -> float:
        return scrape(port).value(name, **labels) - before.value(name, **labels)

    refused = dict(rpc="RenderUnary", code="INVALID_ARGUMENT")
    assert wait_for(lambda: grown("heatmap_requests_total", **refused) == 1)
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("heatmap_requests_total", rpc="RenderUnary", code="OK") == 6
    assert delta("heatmap_requests_total", rpc="RenderStream", code="OK") == 1
    assert delta("heatmap_render_requests_total", code="OK") == len(rendered)
    assert delta("heatmap_render_requests_total", code="INVALID_ARGUMENT") == 1
    for histogram in HISTOGRAMS:
        assert delta(f"{histogram}_count") == len(rendered), histogram
        assert delta(f"{histogram}_bucket", le="+Inf") == len(rendered), histogram
    # The six concurrent equal requests were coalesced: more requests than device calls.
    assert delta("heatmap_coalesced_requests_sum") > len(rendered)
    assert max(result.timings.coalesced_requests for result in results) > 1
    # Every payload byte the clients received, and none more.
    assert delta("heatmap_bytes_out_total") == sum(result.wire_bytes for result in rendered)
    assert after.value("heatmap_in_flight_requests") == 0
    assert after.value("heatmap_queue_depth") == 0
    # The kernel tables those renders used stay cached, and the gauges count them.
    assert after.value("heatmap_kernel_cache_entries") >= 1
    assert after.value("heatmap_kernel_cache_bytes") > 0
    if server.device == "cpu":
        assert after.value("heatmap_device_memory_bytes") == 0  # torch holds no device memory
    else:
        assert after.value("heatmap_device_memory_bytes") > 0


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("path", ["/", "/debug", "/../../etc/passwd", "/metricsx", "/metrics/x"])
def test_only_metrics_is_served(metered, path):
    _, port = metered
    assert _status(f"http://127.0.0.1:{port}{path}") == 404
    assert _status(f"http://127.0.0.1:{port}/metrics?name=x") == 200


def test_the_budget_gauges_show_their_limits_and_return_to_zero(metered):
    server, port = metered
    with HeatmapClient(server.target, timeout=30) as client:
        client.render(KEYPOINTS, size=(64, 64), sigma=2.0)
    samples = scrape(port)
    assert samples.value("heatmap_reply_budget_limit_bytes") == 512 << 20
    assert samples.value("heatmap_buffer_pool_limit_bytes") == 256 << 20
    assert wait_for(lambda: scrape(port).value("heatmap_reply_budget_in_use_bytes") == 0)
    assert scrape(port).value("heatmap_buffer_pool_leased_bytes") == 0


def test_the_metrics_endpoint_binds_its_own_host():
    port = free_port()
    with running_server("--metrics-port", str(port), "--metrics-host", "127.0.0.2"):
        assert _status(f"http://127.0.0.2:{port}/metrics") == 200
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
