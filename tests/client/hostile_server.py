"""A hostile ``heatmap.v1.HeatmapRenderer``: replies that never end, for the client's bound tests.

Run as ``python hostile_server.py``: it binds 127.0.0.1:0, prints ``port N`` and serves
``Render`` and ``RenderStream`` through a generic handler until stdin closes or
``LIFETIME_S`` passes. The bearer token of a call picks how it misbehaves (see ``MODES``); every
reply answers a request with ``codec="none"`` and float32, so its true payload is
``B * K * H * W * 4`` bytes. Every endless loop is bounded (a count or a time), so the server
stops by itself.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading

import grpc

from heatmap.v1 import heatmap_pb2 as pb

CHUNK_BYTES = 1 << 20
LIFETIME_S = 300.0
# "Without end", within reason: 100 GB of flood, 10 M empty chunks, a minute of silence.
MAX_FLOOD_CHUNKS = 100_000
MAX_EMPTY_CHUNKS = 10_000_000
SILENCE_S = 60.0

MODES = {
    "flood": "a header announcing the true payload, then 1 MiB chunks without end, none last",
    "overclaim": "a header announcing twice what the request can need, then chunks",
    "empty": "the whole payload, then empty chunks without end, none last",
    "stall": "the whole payload, then silence: never a last chunk",
    "silent": "nothing at all, the call left open",
    "one-then-silent": "a correct reply to the first request, then silence (no status)",
    "quits": "ends the call with OK, Render without a reply, RenderStream after the first",
}


def _header(request: pb.RenderRequest, payload_bytes: int) -> pb.TensorHeader:
    shape = list(request.keypoints.shape)
    batch, keypoints = shape[0], shape[-2]
    return pb.TensorHeader(
        shape=[batch, keypoints, request.height, request.width], dtype=pb.DTYPE_FLOAT32,
        codec=pb.CODEC_NONE, payload_bytes=payload_bytes, decoded_bytes=payload_bytes,
        instances=shape[1] if len(shape) == 4 else 1,
    )


def _true_payload(request: pb.RenderRequest) -> int:
    shape = list(request.keypoints.shape)
    return shape[0] * shape[-2] * request.height * request.width * 4


def _payload_chunks(request: pb.RenderRequest, announced: int, last: bool):
    """The request's true payload of zeros in 1 MiB chunks, the first with a header announcing
    ``announced`` bytes; with ``last``, the final one carries weights and ``last``."""
    total = _true_payload(request)
    count = max(math.ceil(total / CHUNK_BYTES), 1)
    for index in range(count):
        size = min(CHUNK_BYTES, total - index * CHUNK_BYTES)
        chunk = pb.RenderChunk(request_id=request.request_id, data=bytes(size))
        if index == 0:
            chunk.header.CopyFrom(_header(request, announced))
        if last and index == count - 1:
            chunk.last = True
            weights = list(request.keypoints.shape)[:-1]
            chunk.weights.CopyFrom(pb.Tensor(shape=weights, data=bytes(4 * math.prod(weights))))
        yield chunk


async def _reply(mode: str, request: pb.RenderRequest, first: bool, streaming: bool):
    """The chunks ``mode`` answers ``request`` with (an async generator that may never end)."""
    true = _true_payload(request)
    if mode == "quits":
        if first and streaming:
            for chunk in _payload_chunks(request, true, last=True):
                yield chunk
        return
    if mode == "silent" or (mode == "one-then-silent" and not first):
        await asyncio.sleep(SILENCE_S)
        return
    if mode == "one-then-silent":
        for chunk in _payload_chunks(request, true, last=True):
            yield chunk
        return
    if mode in ("flood", "overclaim"):
        announced = true if mode == "flood" else 2 * true
        flood = pb.RenderChunk(request_id=request.request_id, data=bytes(CHUNK_BYTES))
        header = pb.RenderChunk(request_id=request.request_id, data=bytes(CHUNK_BYTES))
        header.header.CopyFrom(_header(request, announced))
        yield header
        for _ in range(MAX_FLOOD_CHUNKS):
            yield flood
        return
    for chunk in _payload_chunks(request, true, last=False):
        yield chunk
    if mode == "empty":
        empty = pb.RenderChunk(request_id=request.request_id)
        for _ in range(MAX_EMPTY_CHUNKS):
            yield empty
    await asyncio.sleep(SILENCE_S)  # "stall", and "empty" once its count is spent


def _mode(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "authorization" and value.removeprefix("Bearer ") in MODES:
            return value.removeprefix("Bearer ")
    raise ValueError(f"no mode: the bearer token names one of {sorted(MODES)}")


async def render(request: pb.RenderRequest, context: grpc.aio.ServicerContext):
    mode = _mode(context)
    async for chunk in _reply(mode, request, first=True, streaming=False):
        yield chunk
    if mode == "one-then-silent":
        await asyncio.sleep(SILENCE_S)  # the reply, but never the call's status


async def render_stream(requests, context: grpc.aio.ServicerContext):
    mode = _mode(context)
    first = True
    async for request in requests:
        async for chunk in _reply(mode, request, first, streaming=True):
            yield chunk
        if mode == "quits":
            return
        first = False


async def serve() -> None:
    handler = grpc.method_handlers_generic_handler("heatmap.v1.HeatmapRenderer", {
        "Render": grpc.unary_stream_rpc_method_handler(
            render, request_deserializer=pb.RenderRequest.FromString,
            response_serializer=pb.RenderChunk.SerializeToString,
        ),
        "RenderStream": grpc.stream_stream_rpc_method_handler(
            render_stream, request_deserializer=pb.RenderRequest.FromString,
            response_serializer=pb.RenderChunk.SerializeToString,
        ),
    })
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"port {port}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def wait_for_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    # Ends when the test closes stdin (or dies), or after LIFETIME_S.
    threading.Thread(target=wait_for_stdin, daemon=True).start()
    try:
        await asyncio.wait_for(stdin_closed.wait(), LIFETIME_S)
    except asyncio.TimeoutError:
        pass
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(serve())
