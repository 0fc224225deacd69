"""``AsyncHeatmapClient``: the asyncio twin of :class:`HeatmapClient` on ``grpc.aio``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc

from ._aio_stream import EndStatus, RequestWriter, next_chunk
from ._channel import ChannelSettings, channel_options, metadata
from ._errors import HeatmapError
from ._idle import CLIENT_TIMEOUT, DEFAULT_IDLE_TIMEOUT_S, IdleClock
from ._ready import ReadyWait, ready_in_time_aio
from ._render_api import RemoteRenderCalls
from ._stream import Outbox, ended_idle, gave_up, idle_pause_aio, left, stream_deadline
from .replies import PendingReply
from .results import ProfilesResult, RenderResult, SimccResult

__all__ = ["AsyncHeatmapClient"]

ResultT = TypeVar("ResultT")


class AsyncHeatmapClient(
    ChannelSettings,
    RemoteRenderCalls[Awaitable[RenderResult], Awaitable[ProfilesResult], Awaitable[SimccResult]],
):
    """Renders heatmaps on a remote server from asyncio code; arguments as :class:`HeatmapClient`
    (``render``, ``render_profiles`` and ``render_simcc`` have the same signatures and return
    awaitables)."""

    def __init__(self, target: str, **settings: Any):
        super().__init__(target, **settings)
        self._reached = False  # whether a server has answered this client
        self._channel: grpc.aio.Channel | None = None
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> grpc.aio.Channel:
        # A grpc.aio channel belongs to the process and the event loop that opened it.
        loop = asyncio.get_running_loop()
        if self._channel is None or self._pid != os.getpid() or self._loop is not loop:
            self._loop = loop
            creds = self._credentials()
            options = channel_options(max_request_bytes=self.max_request_bytes)
            if creds is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=options)
            else:
                self._channel = grpc.aio.secure_channel(self.target, creds, options=options)
            self._pid = os.getpid()
        return self._channel

    async def _served(self, attempt: Callable[[bool], Awaitable[ResultT]]) -> ResultT:
        """``await attempt(wait_for_ready)`` until a server answers it, waiting for one within
        ``ready_timeout`` (as :meth:`HeatmapClient._served`)."""
        wait: ReadyWait | None = None  # made at the first failure: a call that works pays nothing
        while True:
            try:
                result = await attempt(wait is not None)
            except grpc.RpcError as error:
                if wait is None:
                    wait = ReadyWait(self.target, self.ready_timeout, self._reached)
                if not wait.waits_for(error):
                    raise HeatmapError.from_rpc_error(error) from None
                if not await ready_in_time_aio(self._open(), wait):
                    raise wait.ran_out(error) from None
                continue
            self._reached = True
            return result

    async def _call(self, pending: PendingReply, timeout: float | None) -> Any:
        stub = pb_grpc.HeatmapRendererStub(self._open())
        deadline, token = self._timeout(timeout), metadata(self._token)
        if pending.layout.fits_one_message:
            async def one_message(again: bool) -> Any:
                if again:
                    pending.restart()
                return pending.feed(await stub.RenderUnary(
                    pending.request, timeout=deadline, metadata=token, wait_for_ready=again))

            result = await self._served(one_message)
            if result is None:
                raise HeatmapError(
                    grpc.StatusCode.DATA_LOSS, "reply: one message that is not a whole reply")
            return result

        async def streamed(again: bool) -> Any:
            if again:
                pending.restart()
            call = stub.Render(pending.request, timeout=deadline, metadata=token,
                               wait_for_ready=again)
            try:
                result = None
                async for chunk in call:
                    if result is not None:
                        raise HeatmapError(
                            grpc.StatusCode.DATA_LOSS, "reply: chunks after the last one")
                    result = pending.feed(chunk)
            finally:
                call.cancel()  # a no-op once the call is done; frees it when a check failed early
            if result is None:
                raise HeatmapError(
                    grpc.StatusCode.DATA_LOSS, "reply: stream ended before its last chunk")
            return result

        return await self._served(streamed)

    async def render_many(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        window: int = 4,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
        reply_timeout: float | None = CLIENT_TIMEOUT,
    ) -> AsyncIterator[RenderResult]:
        """Pipelines batches over one ``RenderStream`` with at most ``window`` in flight; items,
        bounds, reopening after a restart and errors as :meth:`HeatmapClient.render_many`."""
        if window < 1:
            raise ValueError(f"window: must be >= 1, got {window}")
        if reply_timeout is CLIENT_TIMEOUT:
            reply_timeout = self.timeout
        outbox = Outbox(requests)
        slots = asyncio.Semaphore(window)
        clock = IdleClock(idle_timeout, owed=outbox.in_flight, reply_limit=reply_timeout)
        wait = ReadyWait(self.target, self.ready_timeout, self._reached)
        deadline = stream_deadline(timeout)
        again: list[PendingReply] = []
        while True:
            stub = pb_grpc.HeatmapRendererStub(self._open())
            call = stub.RenderStream(timeout=left(deadline), metadata=metadata(self._token))
            ended = EndStatus(call)
            writer = RequestWriter(call, outbox, slots, clock, again)
            writing = asyncio.ensure_future(writer.run())
            chunks = aiter(call)
            try:
                while (chunk := await next_chunk(chunks, clock)) is not None:
                    result = outbox.feed(chunk)
                    if result is None:
                        continue
                    slots.release()
                    clock.replied()
                    wait.progressed()
                    self._reached = True
                    yield result
                if outbox.in_flight():
                    raise outbox.unanswered()
                await writing
                if outbox.request_error is not None:
                    raise outbox.request_error
                if not writer.all_sent:
                    raise outbox.unanswered()
                return
            except grpc.RpcError as error:
                failure = await ended.error(error, writer.lost_write)
                if ended_idle(failure):
                    await idle_pause_aio(clock, wait)
                elif not wait.waits_for(failure):
                    raise failure from None
                elif not await ready_in_time_aio(self._open(), wait, left(deadline)):
                    raise gave_up(wait, failure, timeout, deadline) from None
            finally:
                writing.cancel()
                call.cancel()
            again = outbox.reopen()  # the oldest reply's clock goes on, as for the blocking client

    async def info(self, timeout: float | None = None) -> pb.ServerInfo:
        """The server's version, device, methods, codecs, dtypes and limits (waits for a server
        within ``ready_timeout``, as :meth:`render`)."""
        stub = pb_grpc.HeatmapRendererStub(self._open())
        return await self._served(lambda again: stub.GetServerInfo(
            pb.GetServerInfoRequest(), timeout=self._timeout(timeout),
            metadata=metadata(self._token), wait_for_ready=again,
        ))

    async def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """As :meth:`HeatmapClient.health`: the status now, never waiting for a server."""
        stub = health_pb2_grpc.HealthStub(self._open())
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            raise HeatmapError.from_rpc_error(error) from None
        self._reached = True
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            await self._channel.close()
        self._channel = None

    async def __aenter__(self) -> AsyncHeatmapClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
