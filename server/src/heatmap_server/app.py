"""The application: configuration (flags and ``HEATMAP_*`` variables), start-up and shutdown.

``heatmap-server serve`` (or ``python -m heatmap_server``) starts a grpc.aio server with the
renderer service, ``grpc.health.v1`` and server reflection. SIGTERM or SIGINT sets health to
NOT_SERVING, refuses new calls and lets in-flight calls finish within ``--grace-s``; exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import grpc
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from heatmap.v1 import heatmap_pb2 as pb
from heatmap_client.wire import MAX_UNARY_REPLY_BYTES

from . import __version__
from .admission import single_call_slots, stream_slots
from .auth import BearerTokenInterceptor, read_token
from .batching import Batcher
from .budget import ByteBudget
from .buffers import BufferPool
from .departures import quiet_departed_clients
from .health import HealthService
from .metrics import Metrics
from .service import HeatmapRendererService, ServiceLimits, add_to_server

__all__ = [
    "ServerConfig",
    "main",
    "parse_config",
    "serve",
]

log = logging.getLogger("heatmap_server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["HeatmapRenderer"].full_name

# The start-up line; "listening on HOST:PORT" carries the port bound (also with --port 0), which
# operators, scripts and the tests read.
LISTENING = "heatmap-server %s listening on %s:%d (device %s, %s%s)"


@dataclass(frozen=True)
class ServerConfig:
    """Every server setting; each is a ``--flag`` and a ``HEATMAP_<NAME>`` variable."""

    host: str = "0.0.0.0"
    port: int = 50051
    device: str = "auto"
    encode_threads: int = 2
    max_delay_us: int = 300
    max_batch_keypoints: int = 32768
    max_queue: int = 256
    torch_threads: int = 0
    max_output_elements: int = ServiceLimits.max_output_elements
    max_request_bytes: int = ServiceLimits.max_request_bytes
    max_side: int = ServiceLimits.max_side
    max_instances: int = ServiceLimits.max_instances
    max_work_elements: int = ServiceLimits.max_work_elements
    reply_budget_bytes: int = 512 << 20
    budget_wait_s: float = 10.0
    stream_window_bytes: int = 64 << 20
    send_timeout_s: float = 120.0
    stream_idle_s: float = 60.0
    max_concurrent_rpcs: int = 256
    max_open_streams: int = 256
    max_streams_per_connection: int = 100
    pool_idle_bytes: int = 256 << 20
    pool_idle_s: float = 30.0
    grace_s: float = 10.0
    metrics_port: int = 0
    metrics_host: str = ""
    auth_token_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    log_level: str = "INFO"


_HELP = {
    "host": "address to listen on",
    "port": "gRPC port (0 picks a free one and logs it)",
    "device": "auto (CUDA when present, else CPU), cpu, cuda or cuda:N",
    "encode_threads": "threads compressing replies (zstd releases the GIL); a reply over 2 MiB "
                      "is compressed in slabs across them",
    "max_delay_us": "how long a request may wait to be rendered with others, when the one before "
                    "it came less than this earlier (0: no coalescing)",
    "max_batch_keypoints": "most keypoints (B*N*K over requests) in one coalesced render",
    "max_queue": "requests waiting for the device at most (RESOURCE_EXHAUSTED beyond)",
    "torch_threads": "torch threads on CPU (0: the cores left beside the encode threads, "
                     "at least 1)",
    "max_output_elements": "largest B*K*H*W per request (RESOURCE_EXHAUSTED beyond)",
    "max_request_bytes": "largest request message in bytes",
    "max_side": "largest heatmap side in pixels",
    "max_instances": "most instances N per sample (each is one more pass over the output)",
    "max_work_elements": "largest N*B*K*H*W per dense request, the device's work "
                         "(RESOURCE_EXHAUSTED beyond)",
    "reply_budget_bytes": "reply bytes rendered, encoded or waiting to be sent, server-wide; "
                          "replies over 1/16 of it share 5/8 of it",
    "budget_wait_s": "seconds a reply waits for room in the reply budget (RESOURCE_EXHAUSTED "
                     "after)",
    "stream_window_bytes": "reply bytes one RenderStream renders ahead of its reader (one reply "
                           "always goes)",
    "send_timeout_s": "a call whose client takes no chunk for this long is cut off",
    "stream_idle_s": "a RenderStream with no request in flight for this long is ended "
                     "UNAVAILABLE (0: never)",
    "max_concurrent_rpcs": "Render and RenderUnary calls served at once (RESOURCE_EXHAUSTED "
                           "beyond); health is never refused",
    "max_open_streams": "RenderStreams open at once (RESOURCE_EXHAUSTED beyond), idle ones "
                        "included: they cannot keep single calls out",
    "max_streams_per_connection": "calls one client connection may have open at once (HTTP/2 "
                                  "MAX_CONCURRENT_STREAMS; more wait in the client)",
    "pool_idle_bytes": "idle output buffers the pool keeps for reuse",
    "pool_idle_s": "seconds an idle pooled buffer is kept before it is freed",
    "grace_s": "seconds in-flight calls get to finish on SIGTERM",
    "metrics_port": "Prometheus metrics HTTP port (0 disables); serves /metrics only",
    "metrics_host": "address the metrics endpoint listens on (empty: the same as --host)",
    "auth_token_file": "file holding the bearer token every call but health must carry",
    "tls_cert": "PEM certificate chain; with --tls-key switches the port to TLS",
    "tls_key": "PEM private key for --tls-cert",
    "tls_client_ca": "PEM CA bundle; when set, clients must present a certificate it signed",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
}


def env_name(field: str) -> str:
    return "HEATMAP_" + field.upper()


def parse_config(
    argv: list[str] | None = None, environ: dict[str, str] | None = None
) -> ServerConfig:
    """Builds the configuration: flags win over ``HEATMAP_*`` variables, which win over defaults."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="heatmap-server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve_parser = commands.add_parser("serve", help="run the gRPC server")
    for spec in fields(ServerConfig):
        kind = type(spec.default)
        default: Any = spec.default
        if env_name(spec.name) in environ:
            try:
                default = kind(environ[env_name(spec.name)])
            except ValueError:
                parser.error(f"{env_name(spec.name)}: expected {kind.__name__}")
        serve_parser.add_argument(
            "--" + spec.name.replace("_", "-"),
            type=kind,
            default=default,
            help=f"{_HELP[spec.name]} (env {env_name(spec.name)}, default {spec.default!r})",
        )
    parser.add_argument("--version", action="version", version=f"heatmap-server {__version__}")
    args = parser.parse_args(["serve"] if not argv else argv)
    return ServerConfig(**{spec.name: getattr(args, spec.name) for spec in fields(ServerConfig)})


def _server_options(limits: ServiceLimits, streams_per_connection: int) -> list[tuple[str, Any]]:
    # A streamed reply's chunk holds at most chunk_bytes plus the weights (at most half of the
    # largest request's bytes) and framing; a unary reply at most MAX_UNARY_REPLY_BYTES and framing.
    largest_chunk = limits.chunk_bytes + limits.max_request_bytes
    return [
        ("grpc.so_reuseport", 0),
        # One client cannot take every renderer slot: its calls past this wait on its own side.
        ("grpc.max_concurrent_streams", streams_per_connection),
        # gRPC's default counts a stream until the handler's call object is freed, after the
        # client has seen it end: the client's waiting calls then start and are refused
        # (REFUSED_STREAM, UNAVAILABLE), and with retries some hung to their deadline. Counted as
        # HTTP/2 counts them, they start cleanly. The backlog of streams not yet handled stays
        # bounded by gRPC's pending-request limit.
        ("grpc.http.overload_protection", 0),
        ("grpc.max_receive_message_length", limits.max_request_bytes),
        ("grpc.max_send_message_length", max(largest_chunk, MAX_UNARY_REPLY_BYTES) + 65536),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Clients re-resolve DNS only when a connection ends: closing each one (GOAWAY) after ~5
        # minutes (gRPC adds +-10% jitter) lets round_robin clients find replicas added since. The
        # grace lets calls in flight, a data loader's long RenderStream included, finish first.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", 600_000),
    ]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise ``torch.device(name)``, checked."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"heatmap-server: --device {name!r} is not a torch device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"heatmap-server: --device {name!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _check_bounds(config: ServerConfig) -> None:
    """Refuses, naming the flag, bounds the server cannot run with."""
    for name, least in (("max_concurrent_rpcs", 1), ("max_open_streams", 1),
                        ("max_streams_per_connection", 1), ("stream_idle_s", 0)):
        if not getattr(config, name) >= least:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(
                f"heatmap-server: {flag} must be at least {least}, got {getattr(config, name)}")
    for name in ("max_concurrent_rpcs", "max_open_streams"):
        if config.max_streams_per_connection >= getattr(config, name):
            log.warning("--max-streams-per-connection %d >= --%s %d: one client connection can "
                        "hold every one of its slots", config.max_streams_per_connection,
                        name.replace("_", "-"), getattr(config, name))


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not (config.tls_cert or config.tls_key or config.tls_client_ca):
        return None
    if not (config.tls_cert and config.tls_key):
        raise SystemExit("heatmap-server: TLS needs both --tls-cert and --tls-key")
    client_ca = _read(config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key), _read(config.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _device_memory(device: torch.device):
    if device.type != "cuda":
        return lambda: 0.0
    return lambda: float(torch.cuda.memory_reserved(device))


async def _trim_now_and_then(pool: BufferPool) -> None:
    # Takes and give-backs trim too; this frees what an idle server still holds.
    while True:
        await asyncio.sleep(max(0.5, min(pool.idle_s / 2, 10.0)))
        pool.trim()


async def _settle(timeout_s: float) -> None:
    """Waits (at most ``timeout_s``) for the tasks still running after the server stopped: gRPC's
    own per-call tasks and the handlers it cut at the end of the grace finish by themselves within
    a few loop turns. Left to ``asyncio.run``'s teardown, they would be cancelled there, and
    grpc.aio reports each such cancellation as an unhandled exception with a traceback."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=timeout_s)


async def serve(config: ServerConfig) -> None:
    """Runs the server until SIGTERM/SIGINT, then shuts down gracefully."""
    _check_bounds(config)
    device = resolve_device(config.device)
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    elif device.type == "cpu":
        # Render threads, encode threads and gRPC's own share the cores: oversubscribing them
        # made a 0.5 ms render take 13 ms on 2 cores.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - config.encode_threads))
    limits = ServiceLimits(
        max_output_elements=config.max_output_elements,
        max_request_bytes=config.max_request_bytes,
        max_side=config.max_side,
        max_instances=config.max_instances,
        max_work_elements=config.max_work_elements,
    )
    metrics = Metrics(_device_memory(device))
    budget = ByteBudget(config.reply_budget_bytes, on_change=metrics.budget_in_use.set)
    metrics.budget_limit.set(config.reply_budget_bytes)
    pool = BufferPool(max_bytes=config.pool_idle_bytes, idle_s=config.pool_idle_s)
    metrics.watch_pool(pool)
    interceptors = []
    if config.auth_token_file:
        token = read_token(config.auth_token_file)
        denied = metrics.requests.labels
        interceptors.append(
            BearerTokenInterceptor(token, lambda method: denied(method.rsplit("/", 1)[-1],
                                                                "UNAUTHENTICATED").inc())
        )
    credentials = _server_credentials(config)
    health_servicer = HealthService()
    loop = asyncio.get_running_loop()

    async def not_serving() -> None:
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def device_stopped(error: BaseException) -> None:
        # Called on the device thread: probes and balancers must stop sending work here.
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(not_serving()))

    batcher = Batcher(
        device,
        max_delay_us=config.max_delay_us,
        max_batch_keypoints=config.max_batch_keypoints,
        max_queue=config.max_queue,
        pool=pool,
        on_stopped=device_stopped,
    )
    encoders = ThreadPoolExecutor(max_workers=config.encode_threads, thread_name_prefix="encode")
    # No maximum_concurrent_rpcs here: gRPC's counts health checks too, so busy renderer calls
    # would have a liveness probe refused. The service bounds its own calls (admission.py).
    server = grpc.aio.server(
        options=_server_options(limits, config.max_streams_per_connection),
        interceptors=interceptors,
    )
    metrics.renderer_calls_limit.set(config.max_concurrent_rpcs)
    metrics.open_streams_limit.set(config.max_open_streams)
    metrics.streams_per_connection_limit.set(config.max_streams_per_connection)
    service = HeatmapRendererService(
        batcher, encoders, limits, metrics, encode_workers=config.encode_threads,
        budget=budget, budget_wait_s=config.budget_wait_s,
        stream_window_bytes=config.stream_window_bytes, send_timeout_s=config.send_timeout_s,
        slots=single_call_slots(config.max_concurrent_rpcs, metrics),
        streams=stream_slots(config.max_open_streams, metrics),
        stream_idle_s=config.stream_idle_s,
    )
    add_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    address = f"{config.host}:{config.port}"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise SystemExit(f"heatmap-server: cannot listen on {address}")
    metrics_server = None
    if config.metrics_port:
        metrics_host = config.metrics_host or config.host
        metrics_server, _ = metrics.serve(metrics_host, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", metrics_host, config.metrics_port)
    trimmer = asyncio.ensure_future(_trim_now_and_then(pool))
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        LISTENING,
        __version__, config.host, port, device, "TLS" if credentials else "plaintext",
        ", token required" if interceptors else "",
    )

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("shutting down: NOT_SERVING, %.1f s grace for in-flight calls", config.grace_s)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(config.grace_s)
    trimmer.cancel()
    await _settle(timeout_s=2.0)
    batcher.close()
    encoders.shutdown(wait=True)
    if metrics_server is not None:
        metrics_server.shutdown()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_departed_clients()
    asyncio.run(serve(config))
