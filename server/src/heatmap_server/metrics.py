"""Prometheus metrics, on their own HTTP port (``--metrics-port``; 0 disables).

One registry per server instance (not the process-global one), so tests and embedders can run
several servers in a process without clashing names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class Metrics:
    """The server's counters, gauges and histograms."""

    def __init__(self, device_memory=lambda: 0.0):
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "heatmap_requests", "RPCs finished, by method and status code", ["rpc", "code"],
            registry=registry,
        )
        self.renders = Counter(
            "heatmap_render_requests", "Render requests (one per batch, also inside streams)",
            ["code"], registry=registry,
        )
        self.queue_seconds = Histogram(
            "heatmap_queue_seconds", "Time a request waited for the device thread",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.render_seconds = Histogram(
            "heatmap_render_seconds", "Device time per coalesced render, including the copy to host",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.encode_seconds = Histogram(
            "heatmap_encode_seconds", "Compression time per request", buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.total_seconds = Histogram(
            "heatmap_request_seconds", "Arrival to last chunk, per request", buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.coalesced = Histogram(
            "heatmap_coalesced_requests", "Requests rendered together in one device call",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=registry,
        )
        self.bytes_out = Counter(
            "heatmap_bytes_out", "Payload bytes sent to clients", registry=registry
        )
        self.in_flight = Gauge(
            "heatmap_in_flight_requests", "Render requests being served", registry=registry
        )
        self.queue_depth = Gauge(
            "heatmap_queue_depth", "Render requests waiting for or in a device call", registry=registry
        )
        self.device_memory = Gauge(
            "heatmap_device_memory_bytes", "Device memory held by torch (0 on CPU)", registry=registry
        )
        self.device_memory.set_function(device_memory)

    def serve(self, host: str, port: int):
        """Starts the metrics HTTP server; returns ``(server, thread)``."""
        return start_http_server(port, addr=host, registry=self.registry)
