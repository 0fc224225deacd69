"""Channel settings shared by the sync and asyncio clients: service config, credentials, options.

Targets may be ``host:port``, ``dns:///name:port``, ``ipv4:a:p,b:p``, ``unix:/path`` or
``[::1]:port``; the service config asks for ``round_robin`` over every resolved address and retries
``UNAVAILABLE`` with backoff, which covers a replica going away while others serve. A server that
is gone for longer (a restart, a rollout) is waited for by the calls themselves, within
``ready_timeout`` (:mod:`heatmap_client._ready`).

What the channel may receive is bounded by what a request can need, not by a round number: no
legal reply message is larger than :func:`~heatmap_client.wire.framing.max_reply_message_bytes`
of the largest request, so gRPC refuses a larger one from its length prefix, before buffering it
(measured: a 64 MiB message refused with +2 MB of memory, against +200 MB to receive it).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import grpc

from .wire.framing import max_reply_message_bytes
from .wire.vocabulary import ArgumentError

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_READY_TIMEOUT_S",
    "ChannelSettings",
    "channel_options",
    "check_fork_support",
    "check_target",
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
        },
        # A stream is never replayed by gRPC: render_many reopens it itself, resending what had
        # no reply, and a server ending an idle stream should be seen at once, not after five
        # more idle periods of transparent retries.
        {"name": [{"service": "heatmap.v1.HeatmapRenderer", "method": "RenderStream"}]},
    ],
}

# Every call gets a deadline unless the caller asks for none: a stalled server must not hang a
# data loader forever. render_many's stream spans many batches: an explicit deadline bounds it
# whole, and its idle deadline (heatmap_client._idle) each wait for the server.
DEFAULT_TIMEOUT_S = 60.0

# Long enough for a server to restart or a rollout to replace a replica (a pod's start-up and
# readiness probe), short enough that a server that is gone for good ends the job in a minute.
DEFAULT_READY_TIMEOUT_S = 60.0

# The server's own --max-request-bytes default: a larger request is refused there anyway.
DEFAULT_MAX_REQUEST_BYTES = 16 << 20

# gRPC waits for its next connection attempt before it sees a server that came back, and by
# default spaces the attempts up to 120 s apart (x1.6 from 1 s): a call waiting for a restart of
# a few seconds then found the server up to a minute late (measured: a 10 s wait across a 4 s
# restart failed). One attempt a second at most costs a down server nothing.
_RECONNECT_BACKOFF_MS = (200, 1000)


def channel_options(
    synchronous: bool = False, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
) -> list[tuple[str, Any]]:
    """Options for a client channel; ``synchronous`` for the blocking client's channel."""
    initial_backoff_ms, max_backoff_ms = _RECONNECT_BACKOFF_MS
    options = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_reply_message_bytes(max_request_bytes)),
        ("grpc.max_send_message_length", max_request_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", initial_backoff_ms),
        ("grpc.max_reconnect_backoff_ms", max_backoff_ms),
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


# The name schemes gRPC's resolvers know (``dns://8.8.8.8/name:port`` names a DNS server); any
# other ``scheme://`` would be taken for a host name, and fail as a DNS lookup of "http".
_GRPC_SCHEMES = frozenset({"dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock", "xds",
                           "google-c2p"})
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
_LOCAL = "local"


def _edits(word: str, other: str) -> int:
    """The Levenshtein distance between two short words."""
    previous = list(range(len(other) + 1))
    for row, letter in enumerate(word, 1):
        current = [row]
        for column, other_letter in enumerate(other, 1):
            current.append(min(previous[column] + 1, current[column - 1] + 1,
                               previous[column - 1] + (letter != other_letter)))
        previous = current
    return previous[-1]


def check_target(target: str) -> None:
    """Refuses a target gRPC would only fail to resolve at the first call, with what to write.

    Every target gRPC resolves passes (``host:port``, ``dns:///name:port``, ``ipv4:a:p,b:p``,
    ``unix:/path``, ``[::1]:port``); refused are a URL (``http://host:port``) and, as a likely
    misspelling of ``HeatmapCollate``'s in-process renderer, a word without a port within two
    letters of ``local``.

    Raises:
        ArgumentError: naming ``target``.
    """
    if not isinstance(target, str) or not target.strip():
        raise ArgumentError("target", f"expected 'host:port' (or dns:///name:port, "
                                      f"ipv4:a:p,b:p), got {target!r}")
    url = _URL.match(target)
    if url and url.group(1).lower() not in _GRPC_SCHEMES:
        bare = url.group(2).rstrip("/")
        raise ArgumentError("target", f"drop the {url.group(1)}:// scheme: {bare!r} "
                                      "(gRPC targets are host:port, dns:///name:port, ...)")
    if ":" not in target and _edits(target.lower(), _LOCAL) <= 2:
        raise ArgumentError("target", f"{target!r} has no port: did you mean {_LOCAL!r} "
                                      "(HeatmapCollate's in-process renderer) or 'host:port'?")


def _check_ready_timeout(ready_timeout: float | None) -> None:
    if ready_timeout is not None and (
        isinstance(ready_timeout, bool) or not isinstance(ready_timeout, (int, float))
        or math.isnan(ready_timeout) or ready_timeout < 0
    ):
        raise ArgumentError("ready_timeout", "must be None (no bound) or a number of seconds "
                                             f">= 0 (0: no wait), got {ready_timeout!r}")


def _check_max_request_bytes(max_request_bytes: int) -> None:
    if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) or not (
        1 <= max_request_bytes < 1 << 31
    ):
        raise ArgumentError("max_request_bytes", "must be a number of bytes in [1, 2**31), got "
                                                 f"{max_request_bytes!r}")


class ChannelSettings:
    """Where and how a client connects: target, default deadline, how long to wait for a server,
    the largest request, bearer token and TLS files.

    Shared by :class:`HeatmapClient` and :class:`AsyncHeatmapClient`; a bad target or TLS setup
    fails here, at construction, not at the first call.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        ready_timeout: float | None = DEFAULT_READY_TIMEOUT_S,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ):
        check_target(target)
        _check_ready_timeout(ready_timeout)
        _check_max_request_bytes(max_request_bytes)
        self.target = target
        self.timeout = timeout
        self.ready_timeout = ready_timeout
        self.max_request_bytes = max_request_bytes
        self._token = token
        self._tls = (tls_ca, tls_cert, tls_key)
        credentials(*self._tls)

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _credentials(self) -> grpc.ChannelCredentials | None:
        return credentials(*self._tls)
