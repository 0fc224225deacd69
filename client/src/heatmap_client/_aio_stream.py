"""The asyncio ``render_many`` stream's parts: its request writer, its bounded reads, and the
status it reports (reopening after a break is :mod:`heatmap_client._stream`'s, as for the blocking
client).

grpc.aio replaces a call's status by INTERNAL ("Internal error from Core") when a write meets a
call the server has just ended: the server's status and message (``request 3: sigma: ...``) are
lost unless they are taken when the call ends, before that write's failure lands. So the writer
stops writing once the call is done, its failures are never the stream's error, and
:class:`EndStatus` keeps the status the call ended with.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc

from ._errors import HeatmapError
from ._idle import IdleClock
from ._stream import Outbox
from .replies import PendingReply

__all__ = ["EndStatus", "RequestWriter", "next_chunk"]

# How long a stream whose write failed first waits for the server's status to replace INTERNAL.
_STATUS_WAIT_S = 2.0


class RequestWriter:
    """Writes one stream's requests: first those sent again after a break, then the caller's as
    the window allows, and none once the call is done.

    The requests come from the :class:`~heatmap_client._stream.Outbox` the streams share: a bad
    one, or an error of the caller's iterator, ends the writing side (so the stream completes
    after the replies before it) and stays there for the caller. A write that fails because the
    call has ended sets ``lost_write``: the call's status says what went wrong. ``all_sent``
    tells a stream the server ended early (with OK) from one that was complete.
    """

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall,
        outbox: Outbox,
        slots: asyncio.Semaphore,
        clock: IdleClock,
        again: list[PendingReply],
    ):
        self._call = call
        self._outbox = outbox
        self._generation = outbox.generation
        self._slots = slots
        self._clock = clock
        self._again = again
        self.lost_write = False
        self.all_sent = False  # every request up to the end, or up to a bad one, and the close

    async def run(self) -> None:
        call = self._call
        try:
            for reply in self._again:
                if call.done():
                    return
                await call.write(reply.request)
            while True:
                # The slot first, then the item: a writer cancelled while it waits holds nothing
                # the next stream would miss.
                await self._slots.acquire()
                if call.done():
                    self._slots.release()
                    return
                reply = self._outbox.take(self._generation)
                if reply is None:
                    self._slots.release()
                    break
                self._clock.sent()
                await call.write(reply.request)
            if not call.done():
                await call.done_writing()
                self.all_sent = True
        except (grpc.RpcError, asyncio.InvalidStateError):
            self.lost_write = True


async def next_chunk(chunks: AsyncIterator[Any], clock: IdleClock) -> Any:
    """The stream's next chunk from ``chunks`` (the call's own iterator), or None at its end,
    within ``clock``'s idle limit.

    The call's iterator, not ``call.read()``: once a lost write has marked the call done,
    ``read()`` refuses to return the replies still buffered, and the iterator does not.

    Raises:
        HeatmapError: ``DEADLINE_EXCEEDED`` once the clock runs out (the read is cancelled,
            which cancels the call).
    """
    if not clock.bounded:
        return await anext(chunks, None)
    clock.reading()
    # Waited on, not wrapped in wait_for: a timeout must not cancel a read the clock still allows.
    read = asyncio.ensure_future(anext(chunks, None))
    try:
        while True:
            done, _ = await asyncio.wait((read,), timeout=clock.next_check())
            if done:
                return read.result()
            if clock.check():
                raise clock.error()
    finally:
        clock.paused()
        read.cancel()  # a no-op once it is done


def _settled(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The value of a coroutine that completes without waiting, as a done call's accessors do;
    None (and the coroutine closed) if it would wait."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    return None


class EndStatus:
    """The status ``call`` ended with, taken at the moment it ended."""

    def __init__(self, call: grpc.aio.StreamStreamCall):
        self._call = call
        self._first: grpc.aio.AioRpcError | None = None
        call.add_done_callback(self._ended)

    def _ended(self, call: grpc.aio.StreamStreamCall) -> None:
        code = _settled(call.code())
        if code is None or code == grpc.StatusCode.OK:
            return
        self._first = grpc.aio.AioRpcError(
            code, _settled(call.initial_metadata()), _settled(call.trailing_metadata()),
            _settled(call.details()),
        )

    async def error(self, error: grpc.RpcError, lost_write: bool) -> HeatmapError:
        """The error to raise for a stream that failed with ``error``: the server's own status
        where a lost write made it INTERNAL.

        The status is lost one of two ways: it came first and the write's failure replaced it
        (then ``_first`` has it), or the write failed first and the server's status replaces
        INTERNAL a moment later (then it is waited for, at most ``_STATUS_WAIT_S``).
        """
        if not (lost_write and error.code() == grpc.StatusCode.INTERNAL):
            return HeatmapError.from_rpc_error(error)
        first = self._first
        if first is not None and first.code() != grpc.StatusCode.INTERNAL:
            return HeatmapError.from_rpc_error(first)
        call = self._call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STATUS_WAIT_S
        while await call.code() == grpc.StatusCode.INTERNAL and loop.time() < deadline:
            await asyncio.sleep(0.005)
        code = await call.code()
        if code == grpc.StatusCode.INTERNAL:
            return HeatmapError.from_rpc_error(error)
        return HeatmapError.from_rpc_error(grpc.aio.AioRpcError(
            code, await call.initial_metadata(), await call.trailing_metadata(),
            await call.details(),
        ))
