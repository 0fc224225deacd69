"""The gRPC servicer: the only place that converts between protobuf messages and the renderer.

A request is checked field by field on the event loop (cheap), rendered by the batcher's device thread,
encoded on the encoder pool, and streamed back in chunks of at most ``chunk_bytes``. Bad input
ends the call with ``INVALID_ARGUMENT`` and a ``google.rpc.BadRequest`` naming the field; limits
end it with ``RESOURCE_EXHAUSTED``. The server itself never fails on a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc
import torch
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client._codecs import CODECS, Codec
from heatmap_client._dtypes import DTYPES
from heatmap_client._tensors import array_from_tensor, tensor_from_array

from . import __version__
from .encoding import encode_reply
from .metrics import Metrics
from .render import check_render_args
from .batching import Batcher, BatcherClosed, QueueFull, RenderJob, render_dtype

__all__ = [
    "HeatmapRendererService",
    "ServiceLimits",
    "UndecodableRequest",
    "add_to_server",
]

log = logging.getLogger(__name__)

METHOD_NAMES = {
    pb.METHOD_UNSPECIFIED: "msra",
    pb.METHOD_SEED: "seed",
    pb.METHOD_MSRA: "msra",
    pb.METHOD_UDP: "udp",
    pb.METHOD_DARK: "dark",
}
COORDINATE_NAMES = {
    pb.COORDINATE_SPACE_UNSPECIFIED: "heatmap",
    pb.COORDINATE_SPACE_HEATMAP: "heatmap",
    pb.COORDINATE_SPACE_PIXEL: "pixel",
    pb.COORDINATE_SPACE_NORMALIZED: "normalized",
}
# RenderStream replies being rendered or encoded ahead of the one being sent.
STREAM_WINDOW = 8


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request limits; over them a request gets ``RESOURCE_EXHAUSTED``."""

    max_output_elements: int = 64 * 1024 * 1024
    max_request_bytes: int = 16 * 1024 * 1024
    chunk_bytes: int = 1024 * 1024
    max_side: int = 4096
    max_instances: int = 128


class RequestError(Exception):
    """A request the service refuses: a status code, the field at fault and what was wrong."""

    def __init__(self, code: grpc.StatusCode, field: str, description: str):
        super().__init__(f"{field}: {description}")
        self.code = code
        self.field = field
        self.description = description

    @classmethod
    def from_value_error(cls, error: ValueError) -> RequestError:
        field, _, description = str(error).partition(": ")
        return cls(grpc.StatusCode.INVALID_ARGUMENT, field, description or str(error))

    def to_status(self, prefix: str = "") -> grpc.Status:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=self.field, description=self.description
        )
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=prefix + str(self), details=[detail]
        )
        return rpc_status.to_status(status)


@dataclass(frozen=True)
class UndecodableRequest:
    """Request bytes that do not parse as their message; the handler refuses them with
    INVALID_ARGUMENT (left to gRPC, a parse error would end the call with UNKNOWN)."""

    error: str
    request_id: int = 0


def _parser(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError as error:
            return UndecodableRequest(str(error))

    return parse


def _invalid(field: str, description: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, field, description)


def _known(table: dict, value: int, field: str):
    if value not in table:
        raise _invalid(field, f"unknown value {value}")
    return table[value]


def job_from_request(
    request: pb.RenderRequest, limits: ServiceLimits, arrived: float
) -> tuple[RenderJob, Codec]:
    """Checks every field of ``request`` and converts it to a render job.

    Raises:
        RequestError: naming the field, INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
    """
    if isinstance(request, UndecodableRequest):
        raise _invalid("request", f"not a heatmap.v1.RenderRequest ({request.error})")
    method = _known(METHOD_NAMES, request.method, "method")
    coords = _known(COORDINATE_NAMES, request.coordinate_space, "coordinate_space")
    wire_dtype = _known(DTYPES, request.dtype, "dtype")
    codec = _known(CODECS, request.codec, "codec")
    for field in ("height", "width"):
        side = getattr(request, field)
        if side <= 0:
            raise _invalid(field, f"must be > 0, got {side}")
        if side > limits.max_side:
            raise _invalid(field, f"{side} exceeds the server's largest side ({limits.max_side})")
    if not request.HasField("keypoints"):
        raise _invalid("keypoints", "required")
    try:
        keypoints = array_from_tensor(request.keypoints, "keypoints")
        visibility = (
            array_from_tensor(request.visibility, "visibility")
            if request.HasField("visibility")
            else None
        )
    except ValueError as error:
        raise RequestError.from_value_error(error) from None
    if keypoints.ndim in (3, 4):
        batch, keypoint_count = keypoints.shape[0], keypoints.shape[-2]
        instances = keypoints.shape[1] if keypoints.ndim == 4 else 1
        elements = batch * keypoint_count * request.height * request.width
        # The renderer holds both 1D profiles of every instance at once: bound them as well.
        profile_elements = batch * instances * keypoint_count * (request.height + request.width)
        if instances > limits.max_instances and batch * keypoint_count > 0:
            # Each instance is one more max-merge pass over the whole output on the device.
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "keypoints",
                f"{instances} instances per sample exceed the limit of {limits.max_instances}",
            )
        for count, what in ((elements, "B*K*H*W"), (profile_elements, "profile, B*N*K*(H+W)")):
            if count > limits.max_output_elements:
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "keypoints",
                    f"output of {count} elements ({what}) exceeds the limit of "
                    f"{limits.max_output_elements}",
                )
    if request.sigmas and request.sigma:
        raise _invalid("sigmas", "give either sigma or sigmas, not both")
    sigma = list(request.sigmas) if request.sigmas else request.sigma
    input_size = None
    if coords == "pixel" or request.input_height or request.input_width:
        input_size = (request.input_height, request.input_width)
    try:
        args = check_render_args(
            keypoints,
            (request.height, request.width),
            sigma,
            method=method,
            coords=coords,
            input_size=input_size,
            visibility=visibility,
            dtype=render_dtype(wire_dtype.name),
        )
    except ValueError as error:
        raise RequestError.from_value_error(_proto_field_names(error)) from None
    job = RenderJob(args=args, wire_dtype=wire_dtype.name, separable=codec.separable, arrived=arrived)
    return job, codec


def _proto_field_names(error: ValueError) -> ValueError:
    """Renames the renderer's argument names to the request's field names."""
    message = str(error)
    for argument, field in (("size: ", "height: "), ("input_size: ", "input_height: ")):
        if message.startswith(argument):
            return ValueError(field + message[len(argument) :])
    if message.startswith("sigma: ") and "per keypoint" in message:
        return ValueError("sigmas: " + message[len("sigma: ") :])
    return error


def _chunks(
    request_id: int,
    weights: pb.Tensor,
    pieces: list[bytes],
    header: pb.TensorHeader,
    timings: pb.Timings,
) -> Iterator[pb.RenderChunk]:
    for index, piece in enumerate(pieces):
        chunk = pb.RenderChunk(request_id=request_id, data=piece)
        if index == 0:
            chunk.header.CopyFrom(header)
        if index == len(pieces) - 1:
            chunk.last = True
            chunk.weights.CopyFrom(weights)
            chunk.timings.CopyFrom(timings)
        yield chunk


class _Outcome:
    """The status an RPC ends with, as the metrics record it."""

    code: grpc.StatusCode = grpc.StatusCode.OK


class HeatmapRendererService(pb_grpc.HeatmapRendererServicer):
    """``heatmap.v1.HeatmapRenderer`` on the dynamic batcher and an encoder thread pool."""

    def __init__(
        self,
        batcher: Batcher,
        encoders: Executor,
        limits: ServiceLimits,
        metrics: Metrics,
        encode_workers: int = 1,
    ):
        self._batcher = batcher
        self._encoders = encoders
        self._encode_workers = encode_workers  # the threads behind ``encoders``
        self._limits = limits
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def _observe(self, rpc: str, context: grpc.aio.ServicerContext):
        """Counts the RPC by its final code, keeps the in-flight gauge, and turns unexpected
        exceptions into INTERNAL (logged here with their traceback, never sent to the client)."""
        outcome = _Outcome()
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
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")
        finally:
            self._metrics.in_flight.dec()
            self._metrics.requests.labels(rpc, outcome.code.name).inc()

    async def _refuse(
        self, context: grpc.aio.ServicerContext, outcome: _Outcome, error: RequestError, prefix: str = ""
    ) -> None:
        outcome.code = error.code
        self._metrics.renders.labels(error.code.name).inc()
        await context.abort_with_status(error.to_status(prefix))

    async def _reply(
        self, request: pb.RenderRequest, job: RenderJob, codec: Codec
    ) -> list[pb.RenderChunk]:
        metrics = self._metrics
        metrics.queue_depth.inc()
        try:
            rendered = await self._batcher.render(job)
        except QueueFull as full:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue", f"full ({full})") from None
        except BatcherClosed as closed:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "device", str(closed)) from None
        except torch.OutOfMemoryError:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "keypoints",
                "the device ran out of memory even rendering one sample at a time",
            ) from None
        finally:
            metrics.queue_depth.dec()
        started = time.perf_counter()
        try:
            pieces, crc32 = await encode_reply(
                codec, rendered.arrays, self._limits.chunk_bytes, self._encoders,
                self._encode_workers,
            )
        finally:
            # The arrays may be views of a pooled buffer: it is reusable once encoded.
            rendered.release()
        encoded = time.perf_counter()
        payload_bytes = sum(len(piece) for piece in pieces)
        args = job.args
        header = pb.TensorHeader(
            shape=[args.batch, args.num_keypoints, *args.size],
            dtype=DTYPES[request.dtype].proto,
            codec=codec.proto,
            payload_bytes=payload_bytes,
            decoded_bytes=sum(array.nbytes for array in rendered.arrays),
            instances=rendered.instances,
            payload_crc32=crc32,
        )
        timings = pb.Timings(
            queue_us=rendered.queue_us,
            render_us=rendered.render_us,
            encode_us=int((encoded - started) * 1e6),
            total_us=int((encoded - job.arrived) * 1e6),
            coalesced_requests=rendered.coalesced_requests,
        )
        metrics.queue_seconds.observe(rendered.queue_us / 1e6)
        metrics.render_seconds.observe(rendered.render_us / 1e6)
        metrics.encode_seconds.observe(encoded - started)
        metrics.total_seconds.observe(encoded - job.arrived)
        metrics.coalesced.observe(rendered.coalesced_requests)
        metrics.bytes_out.inc(payload_bytes)
        metrics.renders.labels("OK").inc()
        weights = tensor_from_array(rendered.weights, "weights")
        return list(_chunks(request.request_id, weights, pieces, header, timings))

    async def Render(
        self, request: pb.RenderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RenderChunk]:
        async with self._observe("Render", context) as outcome:
            try:
                job, codec = job_from_request(request, self._limits, time.perf_counter())
                chunks = await self._reply(request, job, codec)
            except RequestError as error:
                await self._refuse(context, outcome, error)
                return
            for chunk in chunks:
                yield chunk

    async def RenderStream(
        self, request_iterator: AsyncIterator[pb.RenderRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RenderChunk]:
        # Requests are read and started ahead (up to STREAM_WINDOW) while earlier replies are
        # being sent, so render and encode overlap the client's decode; replies stay in order.
        pending: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)

        async def read_requests() -> None:
            try:
                async for request in request_iterator:
                    try:
                        job, codec = job_from_request(request, self._limits, time.perf_counter())
                    except RequestError as error:
                        await pending.put((request.request_id, error))
                        return
                    task = asyncio.ensure_future(self._reply(request, job, codec))
                    try:
                        await pending.put((request.request_id, task))
                    except asyncio.CancelledError:
                        task.cancel()  # the stream ended while the window was full
                        raise
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read_requests())
        try:
            async with self._observe("RenderStream", context) as outcome:
                while (item := await pending.get()) is not None:
                    request_id, work = item
                    try:
                        if isinstance(work, RequestError):
                            raise work
                        chunks = await work
                    except RequestError as error:
                        await self._refuse(context, outcome, error, f"request {request_id}: ")
                        return
                    for chunk in chunks:
                        yield chunk
                await reader
        finally:
            reader.cancel()
            while not pending.empty():
                item = pending.get_nowait()
                if item is not None and isinstance(item[1], asyncio.Future):
                    item[1].cancel()

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
            methods=[pb.METHOD_SEED, pb.METHOD_MSRA, pb.METHOD_UDP, pb.METHOD_DARK],
            codecs=[pb.CODEC_ZSTD, pb.CODEC_NONE, pb.CODEC_SEPARABLE],
            dtypes=[wire for wire in DTYPES if wire != pb.DTYPE_UNSPECIFIED],
            coordinate_spaces=[
                pb.COORDINATE_SPACE_HEATMAP,
                pb.COORDINATE_SPACE_PIXEL,
                pb.COORDINATE_SPACE_NORMALIZED,
            ],
            limits=pb.Limits(
                max_output_elements=limits.max_output_elements,
                max_request_bytes=limits.max_request_bytes,
                chunk_bytes=limits.chunk_bytes,
                max_side=limits.max_side,
                max_instances=limits.max_instances,
            ),
        )


def add_to_server(service: HeatmapRendererService, server: grpc.aio.Server) -> None:
    """Registers ``service`` as the generated ``add_HeatmapRendererServicer_to_server`` does, but
    with request parsers that hand undecodable bytes to the handler as an
    :class:`UndecodableRequest`."""
    name = pb.DESCRIPTOR.services_by_name["HeatmapRenderer"].full_name
    chunk = pb.RenderChunk.SerializeToString
    handlers = {
        "Render": grpc.unary_stream_rpc_method_handler(
            service.Render, request_deserializer=_parser(pb.RenderRequest),
            response_serializer=chunk,
        ),
        "RenderStream": grpc.stream_stream_rpc_method_handler(
            service.RenderStream, request_deserializer=_parser(pb.RenderRequest),
            response_serializer=chunk,
        ),
        "GetServerInfo": grpc.unary_unary_rpc_method_handler(
            service.GetServerInfo, request_deserializer=_parser(pb.GetServerInfoRequest),
            response_serializer=pb.ServerInfo.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
