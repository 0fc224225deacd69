"""Channel settings shared by the sync and asyncio clients: service config, credentials, options.

Targets may be ``host:port``, ``dns:///name:port`` or ``ipv4:a:p,b:p``; the service config asks for
``round_robin`` over every resolved address and retries ``UNAVAILABLE`` with backoff, so replicas
and restarts are handled by gRPC itself rather than by loops in this client.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import grpc

__all__ = [
    "ChannelSettings",
    "channel_options",
    "check_fork_support",
    "credentials",
    "metadata",
]

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [
                {"service": "heatmap.v1.HeatmapRenderer"},
                {"service": "grpc.health.v1.Health"},
            ],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

# Every call gets a deadline unless the caller asks for none: a stalled server must not hang a
# data loader forever. render_many's stream spans many batches: an explicit deadline bounds it
# whole, and its idle deadline (heatmap_client._idle) each wait for the server.
DEFAULT_TIMEOUT_S = 60.0

# Replies arrive in chunks of at most 1 MiB plus the weights; requests can be larger than the
# 4 MiB default for big batches.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def channel_options(synchronous: bool = False) -> list[tuple[str, Any]]:
    """Options for a client channel; ``synchronous`` for the blocking client's channel."""
    options = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    if synchronous:
        # Read server-streaming replies on the calling thread instead of starting a thread per
        # call: ~0.25 ms of client CPU per render.
        options.append(("SingleThreadedUnaryStream", 1))
    return options


# How gRPC core reads a boolean variable as false (absl::SimpleAtob, case-insensitive).
_FALSE_VALUES = frozenset({"0", "false", "f", "no", "n"})


def check_fork_support() -> None:
    """Fails fast where a forked child would hang: ``GRPC_ENABLE_FORK_SUPPORT`` set to false.

    Unset, gRPC core (1.85) restarts its own threads in a forked child, and a channel opened there
    works. Set to false, core skips that, and the child's first call after its parent used gRPC
    never returns, deadline or not (measured with DataLoader workers). Set to true, gRPC Python
    also closes the parent's channels in the child; this client opens its own and works too.

    Raises:
        RuntimeError: when the variable is set to a false value.
    """
    value = os.environ.get("GRPC_ENABLE_FORK_SUPPORT")
    if value is not None and value.strip().lower() in _FALSE_VALUES:
        raise RuntimeError(
            f"GRPC_ENABLE_FORK_SUPPORT={value}: gRPC hangs in a forked child of a process that "
            "used it; unset the variable, or start workers with spawn "
            "(DataLoader(multiprocessing_context='spawn'))"
        )


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def credentials(
    tls_ca: str | Path | None, tls_cert: str | Path | None, tls_key: str | Path | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials when any TLS file is given (``tls_cert``/``tls_key`` for mutual TLS)."""
    if tls_ca is None and tls_cert is None and tls_key is None:
        return None
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert: mutual TLS needs both tls_cert and tls_key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca),
        private_key=_read(tls_key),
        certificate_chain=_read(tls_cert),
    )


def metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return None if token is None else (("authorization", f"Bearer {token}"),)


class ChannelSettings:
    """Where and how a client connects: target, default deadline, bearer token and TLS files.

    Shared by :class:`HeatmapClient` and :class:`AsyncHeatmapClient`; a bad TLS setup fails here,
    at construction, not at the first call.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ):
        self.target = target
        self.timeout = timeout
        self._token = token
        self._tls = (tls_ca, tls_cert, tls_key)
        credentials(*self._tls)

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _credentials(self) -> grpc.ChannelCredentials | None:
        return credentials(*self._tls)
