"""Prometheus metrics, on their own HTTP port (``--metrics-port``; 0 disables) and host.

One registry per server instance (not the process-global one), so tests and embedders can run
several servers in a process without clashing names. The endpoint serves ``/metrics`` and nothing
else (404), so a scanner learns nothing from it and no path reaches another handler.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from heatmap_render import table_cache_info

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
            "heatmap_render_seconds",
            "Device time per coalesced render, including the copy to host",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.encode_seconds = Histogram(
            "heatmap_encode_seconds", "Compression time per request", buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.total_seconds = Histogram(
            "heatmap_request_seconds", "Arrival to last chunk, per request",
            buckets=_LATENCY_BUCKETS, registry=registry,
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
            "heatmap_queue_depth", "Render requests waiting for or in a device call",
            registry=registry,
        )
        self.device_memory = Gauge(
            "heatmap_device_memory_bytes", "Device memory held by torch (0 on CPU)",
            registry=registry,
        )
        self.device_memory.set_function(device_memory)
        self.budget_in_use = Gauge(
            "heatmap_reply_budget_in_use_bytes",
            "Reply bytes rendered, encoded or waiting to be sent (held from the reply budget)",
            registry=registry,
        )
        self.budget_limit = Gauge(
            "heatmap_reply_budget_limit_bytes", "The reply budget (--reply-budget-bytes)",
            registry=registry,
        )
        self.pool_idle = Gauge(
            "heatmap_buffer_pool_idle_bytes", "Output buffers kept idle for reuse",
            registry=registry,
        )
        self.pool_leased = Gauge(
            "heatmap_buffer_pool_leased_bytes", "Output buffers in use by replies",
            registry=registry,
        )
        self.pool_limit = Gauge(
            "heatmap_buffer_pool_limit_bytes", "Idle bytes the pool may keep (--pool-idle-bytes)",
            registry=registry,
        )
        self.stalled_calls = Counter(
            "heatmap_stalled_calls", "Calls cut off because the client took no chunk in time",
            registry=registry,
        )
        self.inline_renders = Counter(
            "heatmap_inline_renders", "Light requests rendered on the event loop's own thread "
            "(nothing queued for the device: no hand-offs)", registry=registry,
        )
        self.kernel_cache_bytes = Gauge(
            "heatmap_kernel_cache_bytes", "Bytes the renderer's kernel-table cache holds (tables, "
            "offsets and keys)", registry=registry,
        )
        self.kernel_cache_entries = Gauge(
            "heatmap_kernel_cache_entries", "Plans in the renderer's kernel-table cache",
            registry=registry,
        )
        self.kernel_cache_bytes.set_function(lambda: float(table_cache_info()["bytes"]))
        self.kernel_cache_entries.set_function(lambda: float(table_cache_info()["entries"]))
        self.renderer_calls = Gauge(
            "heatmap_renderer_calls", "Render and RenderUnary calls being served, each holding "
            "one of --max-concurrent-rpcs", registry=registry,
        )
        self.renderer_calls_limit = Gauge(
            "heatmap_renderer_calls_limit", "Render and RenderUnary calls served at once at most "
            "(--max-concurrent-rpcs)", registry=registry,
        )
        self.refused_calls = Counter(
            "heatmap_refused_calls", "Render and RenderUnary calls refused RESOURCE_EXHAUSTED "
            "because --max-concurrent-rpcs were being served", registry=registry,
        )
        self.open_streams = Gauge(
            "heatmap_open_streams", "RenderStreams open, each holding one of --max-open-streams",
            registry=registry,
        )
        self.open_streams_limit = Gauge(
            "heatmap_open_streams_limit", "RenderStreams open at once at most "
            "(--max-open-streams)", registry=registry,
        )
        self.refused_streams = Counter(
            "heatmap_refused_streams", "RenderStreams refused RESOURCE_EXHAUSTED because "
            "--max-open-streams were open", registry=registry,
        )
        self.idle_streams_ended = Counter(
            "heatmap_idle_streams_ended", "RenderStreams ended UNAVAILABLE after --stream-idle-s "
            "with no request in flight", registry=registry,
        )
        self.streams_per_connection_limit = Gauge(
            "heatmap_streams_per_connection_limit", "Streams one client connection may hold "
            "open at once (--max-streams-per-connection, HTTP/2 MAX_CONCURRENT_STREAMS)",
            registry=registry,
        )

    def watch_pool(self, pool) -> None:
        """Gauges of ``pool``'s idle and leased bytes and its idle budget."""
        self.pool_idle.set_function(lambda: float(pool.idle_bytes))
        self.pool_leased.set_function(lambda: float(pool.leased_bytes))
        self.pool_limit.set(pool.max_bytes)

    def serve(self, host: str, port: int) -> tuple[ThreadingHTTPServer, threading.Thread]:
        """Starts the metrics HTTP server (``/metrics`` only); returns ``(server, thread)``."""
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if urlsplit(self.path).path != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass  # scrapes every few seconds would drown the server's own log

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
        return server, thread
