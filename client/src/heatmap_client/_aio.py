"""``AsyncHeatmapClient``: the asyncio twin of :class:`HeatmapClient` on ``grpc.aio``."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc

from ._aio_stream import EndStatus, RequestWriter, next_chunk
from ._channel import ChannelSettings, channel_options, metadata
from ._errors import HeatmapError
from ._idle import DEFAULT_IDLE_TIMEOUT_S, IdleClock
from ._render_api import RemoteRenderCalls
from .replies import PendingReply, unanswered
from .results import ProfilesResult, RenderResult, SimccResult

__all__ = ["AsyncHeatmapClient"]


class AsyncHeatmapClient(
    ChannelSettings,
    RemoteRenderCalls[Awaitable[RenderResult], Awaitable[ProfilesResult], Awaitable[SimccResult]],
):
    """Renders heatmaps on a remote server from asyncio code; arguments as :class:`HeatmapClient`
    (``render``, ``render_profiles`` and ``render_simcc`` have the same signatures and return
    awaitables)."""

    def __init__(self, target: str, **settings: Any):
        super().__init__(target, **settings)
        self._channel: grpc.aio.Channel | None = None
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> grpc.aio.Channel:
        # A grpc.aio channel belongs to the process and the event loop that opened it.
        loop = asyncio.get_running_loop()
        if self._channel is None or self._pid != os.getpid() or self._loop is not loop:
            self._loop = loop
            creds = self._credentials()
            if creds is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=channel_options())
            else:
                self._channel = grpc.aio.secure_channel(
                    self.target, creds, options=channel_options())
            self._pid = os.getpid()
        return self._channel

    async def _call(self, pending: PendingReply, timeout: float | None) -> Any:
        stub = pb_grpc.HeatmapRendererStub(self._open())
        if pending.layout.fits_one_message:
            try:
                chunk = await stub.RenderUnary(
                    pending.request, timeout=self._timeout(timeout),
                    metadata=metadata(self._token),
                )
            except grpc.RpcError as error:
                raise HeatmapError.from_rpc_error(error) from None
            result = pending.feed(chunk)
            if result is None:
                raise HeatmapError(
                    grpc.StatusCode.DATA_LOSS, "reply: one message that is not a whole reply")
            return result
        call = stub.Render(
            pending.request, timeout=self._timeout(timeout), metadata=metadata(self._token)
        )
        try:
            result = None
            async for chunk in call:
                if result is not None:
                    raise HeatmapError(
                        grpc.StatusCode.DATA_LOSS, "reply: chunks after the last one")
                result = pending.feed(chunk)
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None
        finally:
            call.cancel()  # a no-op once the call is done; frees it when a check failed early
        if result is None:
            raise HeatmapError(
                grpc.StatusCode.DATA_LOSS, "reply: stream ended before its last chunk")
        return result

    async def render_many(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        window: int = 4,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> AsyncIterator[RenderResult]:
        """Pipelines batches over one ``RenderStream`` with at most ``window`` in flight; items,
        ``timeout``, ``idle_timeout`` and errors as :meth:`HeatmapClient.render_many`."""
        if window < 1:
            raise ValueError(f"window: must be >= 1, got {window}")
        slots = asyncio.Semaphore(window)
        pending: deque[PendingReply] = deque()
        clock = IdleClock(idle_timeout, owed=lambda: bool(pending))
        stub = pb_grpc.HeatmapRendererStub(self._open())
        call = stub.RenderStream(timeout=timeout, metadata=metadata(self._token))
        ended = EndStatus(call)
        writer = RequestWriter(call, requests, slots, pending, clock)
        writing = asyncio.ensure_future(writer.run())
        chunks = aiter(call)
        try:
            while (chunk := await next_chunk(chunks, clock)) is not None:
                if not pending:
                    raise HeatmapError(
                        grpc.StatusCode.DATA_LOSS, "reply: a chunk for no request in flight"
                    )
                result = pending[0].feed(chunk)
                if result is None:
                    continue
                pending.popleft()
                slots.release()
                yield result
            if pending:
                raise unanswered(pending)
            await writing
            if writer.request_error is not None:
                raise writer.request_error
            if not writer.all_sent:
                raise unanswered(pending)
        except grpc.RpcError as error:
            raise await ended.error(error, writer.lost_write) from None
        finally:
            writing.cancel()
            call.cancel()

    async def info(self, timeout: float | None = None) -> pb.ServerInfo:
        stub = pb_grpc.HeatmapRendererStub(self._open())
        try:
            return await stub.GetServerInfo(
                pb.GetServerInfoRequest(),
                timeout=self._timeout(timeout),
                metadata=metadata(self._token),
            )
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None

    async def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        stub = health_pb2_grpc.HealthStub(self._open())
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            await self._channel.close()
        self._channel = None

    async def __aenter__(self) -> AsyncHeatmapClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
