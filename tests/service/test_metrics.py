"""The Prometheus endpoint of a real server (``--metrics-port``): every metric, counted exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from heatmap_client import HeatmapClient, HeatmapError

from live_server import running_server
from probes import free_port, scrape, wait_for

KEYPOINTS = np.random.default_rng(1).uniform(0, 32, size=(2, 5, 2)).astype(np.float32)
HISTOGRAMS = ("heatmap_queue_seconds", "heatmap_render_seconds", "heatmap_encode_seconds",
              "heatmap_request_seconds", "heatmap_coalesced_requests")
GAUGES = ("heatmap_in_flight_requests", "heatmap_queue_depth", "heatmap_device_memory_bytes")


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
    assert "heatmap_bytes_out_total" in names


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

    refused = dict(rpc="Render", code="INVALID_ARGUMENT")
    assert wait_for(lambda: grown("heatmap_requests_total", **refused) == 1)
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("heatmap_requests_total", rpc="Render", code="OK") == 6
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
    if server.device == "cpu":
        assert after.value("heatmap_device_memory_bytes") == 0  # torch holds no device memory
    else:
        assert after.value("heatmap_device_memory_bytes") > 0

