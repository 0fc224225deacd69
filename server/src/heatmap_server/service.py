"""The gRPC servicer: the RPCs, read top to bottom.

A request is checked field by field on the event loop (cheap, :mod:`.requests`), rendered by the
batcher's device thread, encoded on the encoder pool and streamed back in chunks of at most
``chunk_bytes`` (:mod:`.pipeline`); those two modules are where protobuf messages and renderer
arguments meet. Bad input ends the call with ``INVALID_ARGUMENT`` and a ``google.rpc.BadRequest``
naming the field; limits end it with ``RESOURCE_EXHAUSTED``. The server itself never fails on a
request. A single call holds one of ``--max-concurrent-rpcs`` slots, a RenderStream one of
``--max-open-streams`` (:mod:`.admission`); a stream is ended when its client stops reading
(:class:`.SendWatch`) or stops sending (:class:`.IdleWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc
import torch

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client.wire import (
    CODECS,
    COORDINATE_SPACES,
    MAX_UNARY_REPLY_BYTES,
    METHODS,
    SMOOTHINGS,
    TARGETS,
    WIRE_DTYPES,
)

from . import __version__
from .admission import CallSlots, single_call_slots, stream_slots
from .batching import Batcher
from .budget import ByteBudget
from .errors import RequestError
from .metrics import Metrics
from .pipeline import Pipeline
from .requests import ServiceLimits, UndecodableRequest, job_from_request, parser
from .watches import IdleWatch, Outcome, SendWatch

__all__ = [
    "HeatmapRendererService",
    "ServiceLimits",
    "UndecodableRequest",
    "add_to_server",
]

log = logging.getLogger(__name__)

# RenderStream replies being rendered or encoded ahead of the one being sent, at most (the stream
# window in bytes bounds them as well).
STREAM_WINDOW = 8

# Put in a RenderStream's queue of replies when the stream has been idle for --stream-idle-s.
_IDLE = object()


def _discard(task: asyncio.Future) -> None:
    """Cancels a reply being made; one that was made already is closed (its memory returns)."""
    task.cancel()

    def close(done: asyncio.Future) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result().close()

    task.add_done_callback(close)


class HeatmapRendererService(pb_grpc.HeatmapRendererServicer):
    """``heatmap.v1.HeatmapRenderer`` on the dynamic batcher and an encoder thread pool.

    Args:
        budget: the server's reply budget (every reply's bytes until sent).
        budget_wait_s: how long a reply may wait for room in it.
        stream_window_bytes: reply bytes one RenderStream may hold ahead of its reader.
        send_timeout_s: a call whose client takes no chunk for this long is cut off.
        slots: the bound on Render and RenderUnary calls served at once (None: 256).
        streams: the bound on RenderStreams open at once (None: 256).
        stream_idle_s: a RenderStream with no request in flight for this long is ended
            UNAVAILABLE (0: never).
    """

    def __init__(
        self,
        batcher: Batcher,
        encoders: Executor,
        limits: ServiceLimits,
        metrics: Metrics,
        encode_workers: int = 1,
        *,
        budget: ByteBudget | None = None,
        budget_wait_s: float = 10.0,
        stream_window_bytes: int = 64 << 20,
        send_timeout_s: float = 120.0,
        slots: CallSlots | None = None,
        streams: CallSlots | None = None,
        stream_idle_s: float = 60.0,
    ):
        self._batcher = batcher
        self._limits = limits
        self._metrics = metrics
        budget = budget or ByteBudget(512 << 20, on_change=metrics.budget_in_use.set)
        self._stream_window_bytes = stream_window_bytes
        self._send_timeout_s = send_timeout_s
        self._slots = slots or single_call_slots(256, metrics)
        self._streams = streams or stream_slots(256, metrics)
        self._stream_idle_s = stream_idle_s
        self._pipeline = Pipeline(
            batcher, encoders, encode_workers, limits.chunk_bytes, metrics, budget, budget_wait_s
        )

    def _watch(self, rpc: str, context: grpc.aio.ServicerContext) -> SendWatch:
        def cut() -> None:
            self._metrics.stalled_calls.inc()
            log.warning("%s: the client took no chunk for %.0f s; cut off", rpc,
                        self._send_timeout_s)

        return SendWatch(self._send_timeout_s, cut, context)

    @contextlib.asynccontextmanager
    async def _observe(self, rpc: str, context: grpc.aio.ServicerContext,
                       slots: CallSlots | None = None):
        """Holds a slot of ``slots`` (the single calls' by default) or refuses the call, counts
        the RPC by its final code, keeps the in-flight gauge, and turns unexpected exceptions
        into INTERNAL (logged here with their traceback, never sent to the client)."""
        outcome = Outcome()
        slots = slots or self._slots
        try:
            slots.take()
        except RequestError as full:
            self._metrics.requests.labels(rpc, full.code.name).inc()
            await context.abort_with_status(full.to_status())
        self._metrics.in_flight.inc()
        try:
            yield outcome
        except grpc.aio.AbortError:
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001 - the server must survive any request
            log.exception("%s failed", rpc)
            outcome.code = grpc.StatusCode.INTERNAL
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})"
            )
        finally:
            slots.give_back()
            self._metrics.in_flight.dec()
            self._metrics.requests.labels(rpc, outcome.code.name).inc()

    async def _refuse(
        self,
        context: grpc.aio.ServicerContext,
        outcome: Outcome,
        error: RequestError,
        prefix: str = "",
    ) -> None:
        outcome.code = error.code
        self._metrics.renders.labels(error.code.name).inc()
        await context.abort_with_status(error.to_status(prefix))

    async def Render(
        self, request: pb.RenderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RenderChunk]:
        async with self._observe("Render", context) as outcome:
            try:
                job = job_from_request(request, self._limits, time.perf_counter())
                reply = await self._pipeline.make(job)
            except RequestError as error:
                await self._refuse(context, outcome, error)
                return
            watch = self._watch("Render", context)
            watch.releases = [reply.close]
            try:
                for chunk in watch.chunks(reply.chunks()):
                    yield chunk
            finally:
                watch.stop()
                reply.close()
            await watch.end_if_cut(outcome)

    async def RenderUnary(
        self, request: pb.RenderRequest, context: grpc.aio.ServicerContext
    ) -> pb.RenderChunk:
        async with self._observe("RenderUnary", context) as outcome:
            try:
                job = job_from_request(request, self._limits, time.perf_counter())
                if not job.layout.fits_one_message:
                    raise RequestError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "keypoints",
                        f"a reply of up to {job.layout.max_payload + job.layout.weights_bytes} "
                        f"bytes does not fit one message ({MAX_UNARY_REPLY_BYTES}); call Render, "
                        "which streams it",
                    )
                reply = await self._pipeline.make(job, whole=True)
            except RequestError as error:
                await self._refuse(context, outcome, error)
                return pb.RenderChunk()  # not sent: the abort above ended the call
            # The budget holds the reply until gRPC is done sending it (or the call ends).
            context.add_done_callback(lambda _: reply.close())
            return reply.message()

    async def RenderStream(
        self, request_iterator: AsyncIterator[pb.RenderRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RenderChunk]:
        # Requests are read and started ahead while earlier replies are being sent, so render and
        # encode overlap the client's decode; replies stay in order. A reply is started only once
        # it has won its bytes in the stream's window: a reader that stalls stops the rendering.
        async with self._observe("RenderStream", context, self._streams) as outcome:
            pending: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)
            window = ByteBudget(
                self._stream_window_bytes, name="stream window", flag="--stream-window-bytes",
                keep_room=False, lone_grant_any_size=True,
            )
            # With nothing in flight the queue holds at most the reader's end: there is room.
            idle = IdleWatch(self._stream_idle_s, lambda: pending.put_nowait(_IDLE))

            async def read_requests() -> None:
                cancelled = False
                try:
                    async for request in request_iterator:
                        idle.received()
                        try:
                            job = job_from_request(request, self._limits, time.perf_counter())
                        except RequestError as error:
                            await pending.put((request.request_id, error, None))
                            return
                        slot = await window.acquire(job.layout.held_bytes)
                        task = asyncio.ensure_future(self._pipeline.make(job))
                        try:
                            await pending.put((request.request_id, task, slot))
                        except asyncio.CancelledError:
                            _discard(task)  # the stream ended while the window was full
                            slot.release()
                            raise
                except asyncio.CancelledError:
                    cancelled = True
                    raise
                finally:
                    if not cancelled:
                        await pending.put(None)

            def drain() -> None:
                """Discards the replies started ahead (their memory returns)."""
                while not pending.empty():
                    item = pending.get_nowait()
                    if isinstance(item, tuple) and item[2] is not None:
                        _discard(item[1])
                        item[2].release()

            reader = asyncio.ensure_future(read_requests())
            watch = self._watch("RenderStream", context)
            try:
                while (item := await pending.get()) is not None:
                    if item is _IDLE:
                        if idle.in_flight:
                            continue  # a request came in after the clock ran out: not idle
                        outcome.code = grpc.StatusCode.UNAVAILABLE
                        self._metrics.idle_streams_ended.inc()
                        log.debug("RenderStream: %s", idle.details)
                        await context.abort(grpc.StatusCode.UNAVAILABLE, idle.details)
                    request_id, work, slot = item
                    try:
                        if isinstance(work, RequestError):
                            raise work
                        reply = await work
                    except RequestError as error:
                        await self._refuse(context, outcome, error, f"request {request_id}: ")
                        return
                    watch.releases = [reader.cancel, drain, reply.close, slot.release]
                    try:
                        for chunk in watch.chunks(reply.chunks()):
                            yield chunk
                    finally:
                        reply.close()
                        slot.release()
                    await watch.end_if_cut(outcome)
                    idle.answered()
                    if context.cancelled():
                        return  # the client went away: nothing more to send
                await reader
            finally:
                idle.stop()
                watch.stop()
                reader.cancel()
                drain()

    async def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerInfo:
        if isinstance(request, UndecodableRequest):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: not a heatmap.v1.GetServerInfoRequest ({request.error})",
            )
        limits = self._limits
        return pb.ServerInfo(
            version=__version__,
            device=str(self._batcher.device),
            torch_version=torch.__version__,
            methods=METHODS.protos,
            codecs=[value for value in CODECS if value],
            dtypes=[value for value in WIRE_DTYPES if value],
            coordinate_spaces=COORDINATE_SPACES.protos,
            limits=pb.Limits(
                max_output_elements=limits.max_output_elements,
                max_request_bytes=limits.max_request_bytes,
                chunk_bytes=limits.chunk_bytes,
                max_side=limits.max_side,
                max_instances=limits.max_instances,
                max_work_elements=limits.max_work_elements,
                reply_budget_bytes=self._pipeline.budget_bytes,
                stream_window_bytes=self._stream_window_bytes,
                max_unary_reply_bytes=MAX_UNARY_REPLY_BYTES,
            ),
            targets=TARGETS.protos,
            smoothings=SMOOTHINGS.protos,
        )


def add_to_server(service: HeatmapRendererService, server: grpc.aio.Server) -> None:
    """Registers ``service`` as the generated ``add_HeatmapRendererServicer_to_server`` does, but
    with request parsers that hand undecodable bytes to the handler as an
    :class:`UndecodableRequest`."""
    name = pb.DESCRIPTOR.services_by_name["HeatmapRenderer"].full_name
    chunk = pb.RenderChunk.SerializeToString
    handlers = {
        "Render": grpc.unary_stream_rpc_method_handler(
            service.Render, request_deserializer=parser(pb.RenderRequest),
            response_serializer=chunk,
        ),
        "RenderUnary": grpc.unary_unary_rpc_method_handler(
            service.RenderUnary, request_deserializer=parser(pb.RenderRequest),
            response_serializer=chunk,
        ),
        "RenderStream": grpc.stream_stream_rpc_method_handler(
            service.RenderStream, request_deserializer=parser(pb.RenderRequest),
            response_serializer=chunk,
        ),
        "GetServerInfo": grpc.unary_unary_rpc_method_handler(
            service.GetServerInfo, request_deserializer=parser(pb.GetServerInfoRequest),
            response_serializer=pb.ServerInfo.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
