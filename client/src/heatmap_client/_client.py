"""``HeatmapClient``: the synchronous client a DataLoader worker holds.

The channel opens lazily and again in any process whose pid differs from the one that opened it,
so a client made in the parent keeps working in forked or spawned workers (gRPC channels do not
survive fork, and ``GRPC_ENABLE_FORK_SUPPORT`` hangs forked children). It pickles without its
channel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc

from ._channel import ChannelSettings, channel_options, check_fork_support, metadata
from ._errors import HeatmapError
from ._idle import CLIENT_TIMEOUT, DEFAULT_IDLE_TIMEOUT_S, IdleClock
from ._ready import ReadyWait, ready_in_time
from ._render_api import RemoteRenderCalls
from ._stream import render_many_blocking
from .replies import PendingReply
from .results import ProfilesResult, RenderResult, SimccResult

__all__ = ["HeatmapClient"]

ResultT = TypeVar("ResultT")


class HeatmapClient(ChannelSettings, RemoteRenderCalls[RenderResult, ProfilesResult, SimccResult]):
    """Renders heatmaps on a remote server.

    Args (keyword-only after ``target``, shared with :class:`AsyncHeatmapClient`):
        target: ``host:port``, ``dns:///name:port``, ``ipv4:a:p,b:p``, ``unix:/path``; a URL
            (``http://...``) or a near miss of ``"local"`` is refused here, naming ``target``.
        timeout: default deadline in seconds for each call (60; None: no deadline), the work's
            bound once a server has the call. A ``render_many`` stream is bounded by its own
            ``timeout``, ``idle_timeout`` and ``reply_timeout``.
        ready_timeout: how long a call waits for a server that is not there (restarting, a
            rollout, a moved pod), counted from its first ``UNAVAILABLE`` (60 s; 0: no wait,
            ``UNAVAILABLE`` after gRPC's own 5 tries, ~1.5 s; None: no bound). A render or
            ``info`` that fails ``UNAVAILABLE`` waits for the channel to connect and is sent
            again with its whole ``timeout``: a call ends within ``ready_timeout`` plus its
            ``timeout`` per try. ``health`` never waits. Before its first reply from any server,
            a client does not wait on a TLS handshake or connection the server refused (a TLS
            setup that does not match the server's).
        max_request_bytes: the largest request sent (16 MiB, the server's default
            ``--max-request-bytes``); it also sets the largest reply message received (8 MiB
            and a little at the default), so no server can make the client buffer more.
        token: bearer token sent as ``authorization: Bearer <token>``.
        tls_ca, tls_cert, tls_key: PEM files; any of them switches to TLS (cert+key: mutual TLS).

    Raises:
        ArgumentError: naming ``target``, ``ready_timeout`` or ``max_request_bytes``.
    """

    def __init__(self, target: str, **settings: Any):
        super().__init__(target, **settings)
        self._reached = False  # whether a server has answered this client (or its parent)
        self._channel: grpc.Channel | None = None
        self._renderer_stub: pb_grpc.HeatmapRendererStub | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()

    def __repr__(self) -> str:
        return f"HeatmapClient({self.target!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_channel=None, _renderer_stub=None, _pid=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()

    def _process_lock(self) -> threading.Lock:
        if self._lock_pid != os.getpid():
            # A lock inherited through fork may have been held by a parent's thread that does not
            # exist here: take a fresh one rather than wait for it forever.
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        return self._lock

    def _open(self) -> grpc.Channel:
        return self._stub()[0]

    def _stub(self) -> tuple[grpc.Channel, pb_grpc.HeatmapRendererStub]:
        """The channel of this process (opened now if needed) and its renderer stub."""
        stub = self._renderer_stub
        if stub is not None and self._pid == os.getpid():
            return self._channel, stub
        with self._process_lock():
            if self._channel is None or self._pid != os.getpid():
                if self._pid is not None and self._pid != os.getpid():
                    check_fork_support()  # a forked child of a process that used this client
                # An inherited channel belongs to the parent's threads: abandon it, never close it.
                creds = self._credentials()
                options = channel_options(synchronous=True,
                                          max_request_bytes=self.max_request_bytes)
                if creds is None:
                    self._channel = grpc.insecure_channel(self.target, options=options)
                else:
                    self._channel = grpc.secure_channel(self.target, creds, options=options)
                self._renderer_stub = pb_grpc.HeatmapRendererStub(self._channel)
                self._pid = os.getpid()
            return self._channel, self._renderer_stub

    def _served(self, attempt: Callable[[bool], ResultT]) -> ResultT:
        """``attempt(wait_for_ready)`` until a server answers it: a try that fails UNAVAILABLE
        waits for the channel to be ready, within ``ready_timeout``, and goes again with
        ``wait_for_ready=True`` and its whole deadline."""
        wait: ReadyWait | None = None  # made at the first failure: a call that works pays nothing
        while True:
            try:
                result = attempt(wait is not None)
            except grpc.RpcError as error:
                if wait is None:
                    wait = ReadyWait(self.target, self.ready_timeout, self._reached)
                if not wait.waits_for(error):
                    raise HeatmapError.from_rpc_error(error) from None
                if not ready_in_time(self._open(), wait):
                    raise wait.ran_out(error) from None
                continue
            self._reached = True
            return result

    def _call(self, pending: PendingReply, timeout: float | None) -> Any:
        _, stub = self._stub()
        deadline, token = self._timeout(timeout), metadata(self._token)
        if pending.layout.fits_one_message:
            # One message each way: the cheapest call gRPC has.
            def one_message(again: bool) -> Any:
                if again:
                    pending.restart()
                return pending.feed(stub.RenderUnary(
                    pending.request, timeout=deadline, metadata=token, wait_for_ready=again))

            result = self._served(one_message)
            if result is None:
                raise HeatmapError(
                    grpc.StatusCode.DATA_LOSS, "reply: one message that is not a whole reply")
            return result

        def streamed(again: bool) -> Any:
            if again:
                pending.restart()
            call = stub.Render(pending.request, timeout=deadline, metadata=token,
                               wait_for_ready=again)
            for chunk in call:
                result = pending.feed(chunk)
                if result is not None:
                    break
            else:
                raise HeatmapError(
                    grpc.StatusCode.DATA_LOSS, "reply: stream ended before its last chunk")
            # Read on to the status: a call dropped after its last chunk is cancelled, and the
            # server would count a successful render as CANCELLED.
            for _ in call:
                raise HeatmapError(grpc.StatusCode.DATA_LOSS, "reply: chunks after the last one")
            return result

        return self._served(streamed)

    def render_many(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        window: int = 4,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
        reply_timeout: float | None = CLIENT_TIMEOUT,
    ) -> Iterator[RenderResult]:
        """Pipelines many batches over one ``RenderStream``; yields results in request order.

        Each item holds :meth:`render`'s keyword arguments (``keypoints``, ``size``, ``sigma``, ...,
        optionally ``keep_dtype`` and ``out``). At most ``window`` requests are in flight, so the
        server renders and encodes the next batches while this process decodes the current one.

        Bounds, all of waiting for the server (the time the caller spends between results does
        not count): ``timeout`` bounds the whole stream (None: no deadline; the client's per-call
        default does not apply to a stream that may span an epoch). ``idle_timeout`` bounds each
        wait for a chunk while a request is in flight (None: no bound). ``reply_timeout`` bounds
        each reply, counted from when it became the oldest in flight (default: the client's
        ``timeout``; None: no bound), so that a server trickling bytes cannot hold the stream.

        When the stream breaks because the server restarts, or the server ends it for being idle,
        a new stream sends again, in order, every request whose reply was not complete: every
        result comes once, in order. The client's ``ready_timeout`` bounds each wait for the
        server to come back.

        Raises:
            HeatmapError: the server's status; ``DATA_LOSS`` for a reply that is not the one asked
                for or exceeds what it can need; ``DEADLINE_EXCEEDED`` past ``idle_timeout`` or
                ``reply_timeout``; ``UNAVAILABLE`` naming the target past ``ready_timeout``.
            ArgumentError: naming the argument of the first item that cannot be sent, after the
                replies before it.
        """
        if window < 1:
            raise ValueError(f"window: must be >= 1, got {window}")
        if reply_timeout is CLIENT_TIMEOUT:
            reply_timeout = self.timeout
        IdleClock(idle_timeout, owed=lambda: 0, reply_limit=reply_timeout)  # checked here, now
        return render_many_blocking(self, requests, window, timeout, idle_timeout, reply_timeout)

    def info(self, timeout: float | None = None) -> pb.ServerInfo:
        """The server's version, device, methods, codecs, dtypes and limits (waits for a server
        within ``ready_timeout``, as :meth:`render`)."""
        _, stub = self._stub()
        return self._served(lambda again: stub.GetServerInfo(
            pb.GetServerInfoRequest(), timeout=self._timeout(timeout),
            metadata=metadata(self._token), wait_for_ready=again,
        ))

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """The health status name (``SERVING``, ``NOT_SERVING``, ...) of ``service``, as it is
        now: a health check never waits for a server (``UNAVAILABLE`` when none answers)."""
        stub = health_pb2_grpc.HealthStub(self._open())
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None
        self._reached = True
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def close(self) -> None:
        with self._process_lock():
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = self._renderer_stub = None

    def __enter__(self) -> HeatmapClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
