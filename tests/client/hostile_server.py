"""A hostile ``heatmap.v1.HeatmapRenderer``: replies that never end, for the client's bound tests.

Run as ``python hostile_server.py``: it binds 127.0.0.1:0, prints ``port N`` and serves
``Render``, ``RenderUnary`` and ``RenderStream`` through a generic handler until stdin closes or
``LIFETIME_S`` passes. The bearer token of a call picks how it misbehaves (see ``MODES``); every
reply answers a request with ``codec="none"`` and float32, so its true payload is
``B * K * H * W * 4`` bytes, all zeros. Every endless loop is bounded (a count or a time), so the
server stops by itself.
"""

from __future__ import annotations

import asyncio
import collections
import math
import sys
import threading

import grpc

from heatmap.v1 import heatmap_pb2 as pb

CHUNK_BYTES = 1 << 20
LIFETIME_S = 300.0
# "Without end", within reason: 100 GB of flood, 10 M empty chunks, a minute of silence, ten
# minutes of trickle.
MAX_FLOOD_CHUNKS = 100_000
MAX_EMPTY_CHUNKS = 10_000_000
SILENCE_S = 60.0
TRICKLE_EVERY_S = 0.1
MAX_TRICKLE_BYTES = 6000
# One message eight times the largest any legal reply makes (the client's receive limit).
OVERSIZED_BYTES = 64 << 20
# float32 1.0, little-endian.
ONE = b"\x00\x00\x80\x3f"
# How long a stream with nothing in flight lives in mode "idles".
IDLE_END_S = 0.3

MODES = {
    "flood": "a header announcing the true payload, then 1 MiB chunks without end, none last",
    "overclaim": "a header announcing twice what the request can need, then chunks",
    "empty": "the whole payload, then empty chunks without end, none last",
    "stall": "the whole payload, then silence: never a last chunk",
    "silent": "nothing at all, the call left open",
    "one-then-silent": "a correct reply to the first request, then silence (no status)",
    "quits": "ends the call with OK, Render without a reply, RenderStream after the first",
    "trickle": "a header announcing the true payload, then one byte per chunk every 0.1 s",
    "oversized": "a message of 64 MiB (RenderUnary's reply, a stream's first chunk)",
    "not-whole": "RenderUnary: the whole payload in a message that is not the last",
    "liar": "RenderUnary: a whole reply whose header gives the heatmap as (W, H)",
    "idles": "correct replies; a stream with nothing in flight for 0.3 s ends UNAVAILABLE, "
             "'stream: idle ...', as the real server's --stream-idle-s",
    "always-idle": "ends every RenderStream at once UNAVAILABLE 'stream: idle ...', whatever was "
                   "sent",
    "breaks": "every other call (counted per mode) fails UNAVAILABLE half-way through its second "
              "reply (Render: its only one), as a server going away; the others are correct",
}

# Calls so far, per mode ("breaks" breaks the odd ones).
_CALLS: collections.Counter = collections.Counter()


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
            # Weight 1 for every keypoint (float32 1.0): drawn, none off the map.
            chunk.weights.CopyFrom(pb.Tensor(shape=weights, data=ONE * math.prod(weights)))
        yield chunk


def _whole(request: pb.RenderRequest) -> pb.RenderChunk:
    """A correct reply to ``request`` as one message."""
    chunks = list(_payload_chunks(request, _true_payload(request), last=True))
    whole = pb.RenderChunk(request_id=request.request_id, header=chunks[0].header,
                           data=b"".join(chunk.data for chunk in chunks), last=True,
                           weights=chunks[-1].weights)
    return whole


async def _reply(mode: str, request: pb.RenderRequest, first: bool, streaming: bool):
    """The chunks ``mode`` answers ``request`` with (an async generator that may never end)."""
    true = _true_payload(request)
    if mode in ("idles", "breaks"):
        for chunk in _payload_chunks(request, true, last=True):
            yield chunk
        return
    if mode == "oversized":
        chunk = pb.RenderChunk(request_id=request.request_id, data=bytes(OVERSIZED_BYTES))
        chunk.header.CopyFrom(_header(request, true))
        yield chunk
        return
    if mode == "trickle":
        byte = pb.RenderChunk(request_id=request.request_id, data=b"\0")
        header = pb.RenderChunk(request_id=request.request_id, data=b"\0")
        header.header.CopyFrom(_header(request, true))
        yield header
        for _ in range(min(true - 2, MAX_TRICKLE_BYTES)):
            await asyncio.sleep(TRICKLE_EVERY_S)
            yield byte
        await asyncio.sleep(SILENCE_S)
        return
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


async def _break(context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "breaks: the server went away mid-reply")


async def render(request: pb.RenderRequest, context: grpc.aio.ServicerContext):
    mode = _mode(context)
    _CALLS[mode] += 1
    if mode == "breaks" and _CALLS[mode] % 2:
        yield next(_payload_chunks(request, _true_payload(request), last=False))
        await _break(context)
    async for chunk in _reply(mode, request, first=True, streaming=False):
        yield chunk
    if mode == "one-then-silent":
        await asyncio.sleep(SILENCE_S)  # the reply, but never the call's status


async def render_unary(request: pb.RenderRequest, context: grpc.aio.ServicerContext):
    mode = _mode(context)
    _CALLS[mode] += 1
    whole = _whole(request)
    if mode == "oversized":
        whole.data = bytes(OVERSIZED_BYTES)
    elif mode == "not-whole":
        whole.last = False
    elif mode == "liar":
        height, width = whole.header.shape[2:]
        whole.header.shape[2:] = [width, height]
    elif mode == "breaks" and _CALLS[mode] % 2:
        await _break(context)
    elif mode not in ("idles", "breaks"):
        await asyncio.sleep(SILENCE_S)
    return whole


async def _requests_until_idle(requests, context: grpc.aio.ServicerContext):
    """``requests``, ending the call as the real server ends an idle stream: UNAVAILABLE once
    none arrives for ``IDLE_END_S`` (every reply before it has been sent)."""
    pending = requests.__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(pending.__anext__(), IDLE_END_S)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"stream: idle for {IDLE_END_S:g} s with nothing in flight (--stream-idle-s)")


async def render_stream(requests, context: grpc.aio.ServicerContext):
    mode = _mode(context)
    _CALLS[mode] += 1
    breaks = mode == "breaks" and _CALLS[mode] % 2
    if mode == "always-idle":
        await context.abort(grpc.StatusCode.UNAVAILABLE,
                            "stream: idle for 0 s with nothing in flight (--stream-idle-s)")
    if mode == "idles":
        requests = _requests_until_idle(requests, context)
    first = True
    async for request in requests:
        if breaks and not first:
            yield next(_payload_chunks(request, _true_payload(request), last=False))
            await _break(context)
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
        "RenderUnary": grpc.unary_unary_rpc_method_handler(
            render_unary, request_deserializer=pb.RenderRequest.FromString,
            response_serializer=pb.RenderChunk.SerializeToString,
        ),
        "RenderStream": grpc.stream_stream_rpc_method_handler(
            render_stream, request_deserializer=pb.RenderRequest.FromString,
            response_serializer=pb.RenderChunk.SerializeToString,
        ),
    })
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 0), ("grpc.max_send_message_length", 2 * OVERSIZED_BYTES),
    ])
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
