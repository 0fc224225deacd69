"""``HeatmapClient``: the synchronous client a DataLoader worker holds.

The channel opens lazily and again in any process whose pid differs from the one that opened it,
so a client made in the parent keeps working in forked or spawned workers (gRPC channels do not
survive fork, and ``GRPC_ENABLE_FORK_SUPPORT`` hangs forked children). It pickles without its
channel.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc

from ._channel import ChannelSettings, channel_options, check_fork_support, metadata
from ._errors import HeatmapError
from ._idle import DEFAULT_IDLE_TIMEOUT_S, IdleClock, watch_from_thread
from ._render_api import RemoteRenderCalls, pending_from_item
from .replies import PendingReply, unanswered
from .results import ProfilesResult, RenderResult, SimccResult

__all__ = ["HeatmapClient"]


class HeatmapClient(ChannelSettings, RemoteRenderCalls[RenderResult, ProfilesResult, SimccResult]):
    """Renders heatmaps on a remote server.

    Args (keyword-only after ``target``, shared with :class:`AsyncHeatmapClient`):
        target: ``host:port``, ``dns:///name:port`` or ``ipv4:a:p,b:p``.
        timeout: default deadline in seconds for each call (60; None: no deadline). A
            ``render_many`` stream is bounded by its own ``timeout`` and ``idle_timeout``.
        token: bearer token sent as ``authorization: Bearer <token>``.
        tls_ca, tls_cert, tls_key: PEM files; any of them switches to TLS (cert+key: mutual TLS).
    """

    def __init__(self, target: str, **settings: Any):
        super().__init__(target, **settings)
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
                options = channel_options(synchronous=True)
                if creds is None:
                    self._channel = grpc.insecure_channel(self.target, options=options)
                else:
                    self._channel = grpc.secure_channel(self.target, creds, options=options)
                self._renderer_stub = pb_grpc.HeatmapRendererStub(self._channel)
                self._pid = os.getpid()
            return self._channel, self._renderer_stub

    def _call(self, pending: PendingReply, timeout: float | None) -> Any:
        _, stub = self._stub()
        try:
            if pending.layout.fits_one_message:
                # One message each way: the cheapest call gRPC has.
                result = pending.feed(stub.RenderUnary(
                    pending.request, timeout=self._timeout(timeout),
                    metadata=metadata(self._token),
                ))
                if result is None:
                    raise HeatmapError(
                        grpc.StatusCode.DATA_LOSS, "reply: one message that is not a whole reply")
                return result
            call = stub.Render(
                pending.request, timeout=self._timeout(timeout), metadata=metadata(self._token)
            )
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
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None

    def render_many(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        window: int = 4,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> Iterator[RenderResult]:
        """Pipelines many batches over one ``RenderStream``; yields results in request order.

        Each item holds :meth:`render`'s keyword arguments (``keypoints``, ``size``, ``sigma``, ...,
        optionally ``keep_dtype`` and ``out``). At most ``window`` requests are in flight, so the
        server renders and encodes the next batches while this process decodes the current one.
        ``timeout`` bounds the whole stream (None: no deadline; the client's per-call default does
        not apply to a stream that may span an epoch). ``idle_timeout`` bounds each wait for a
        chunk while a request is in flight (None: no bound); the time the caller spends between
        results does not count.

        Raises:
            HeatmapError: the server's status; ``DATA_LOSS`` for a reply that is not the one asked
                for or exceeds what it can need; ``DEADLINE_EXCEEDED`` past ``idle_timeout``.
            ArgumentError: naming the argument of the first item that cannot be sent, after the
                replies before it.
        """
        if window < 1:
            raise ValueError(f"window: must be >= 1, got {window}")
        slots = threading.Semaphore(window)
        pending: deque[PendingReply] = deque()
        clock = IdleClock(idle_timeout, owed=lambda: bool(pending))
        lock = threading.Lock()
        finished = threading.Event()
        # gRPC consumes the request iterator on its own thread: a bad request is kept here and
        # re-raised to the caller once the replies before it have been delivered.
        request_errors: list[Exception] = []
        all_sent = threading.Event()

        def outgoing() -> Iterator[pb.RenderRequest]:
            items = enumerate(requests)
            while True:
                try:
                    request_id, item = next(items)
                    reply = pending_from_item(item, request_id)
                except StopIteration:
                    break
                except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread
                    # The caller's iterator's errors too: gRPC would only log them and cancel.
                    request_errors.append(error)
                    return
                while not slots.acquire(timeout=0.1):
                    if finished.is_set():
                        return
                with lock:
                    pending.append(reply)
                clock.sent()
                yield reply.request
            all_sent.set()

        _, stub = self._stub()
        call = stub.RenderStream(outgoing(), timeout=timeout, metadata=metadata(self._token))
        watch_from_thread(clock, finished, call.cancel)
        try:
            while True:
                # One chunk at a time: what is held is the replies in flight, each within its
                # bound, never the stream.
                clock.reading()
                chunk = next(call, None)
                clock.paused()
                if chunk is None:
                    break
                with lock:
                    if not pending:
                        raise HeatmapError(
                            grpc.StatusCode.DATA_LOSS, "reply: a chunk for no request in flight"
                        )
                    current = pending[0]
                result = current.feed(chunk)
                if result is None:
                    continue
                with lock:
                    pending.popleft()
                slots.release()
                yield result
            if request_errors:
                raise request_errors[0]
            if pending or not all_sent.is_set():
                raise unanswered(pending)
        except grpc.RpcError as error:
            if clock.ran_out:
                raise clock.error() from None
            raise HeatmapError.from_rpc_error(error) from None
        finally:
            finished.set()
            call.cancel()

    def info(self, timeout: float | None = None) -> pb.ServerInfo:
        """The server's version, device, methods, codecs, dtypes and limits."""
        _, stub = self._stub()
        try:
            return stub.GetServerInfo(
                pb.GetServerInfoRequest(),
                timeout=self._timeout(timeout),
                metadata=metadata(self._token),
            )
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """The health status name (``SERVING``, ``NOT_SERVING``, ...) of ``service``."""
        stub = health_pb2_grpc.HealthStub(self._open())
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None
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
