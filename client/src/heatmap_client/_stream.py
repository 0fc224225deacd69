"""``render_many`` across server restarts: the requests a stream owes replies to, and the blocking
client's stream loop.

A ``RenderStream`` breaks when its server restarts (``UNAVAILABLE``), and a server ends a stream
that had nothing in flight for ``--stream-idle-s`` (``UNAVAILABLE``, "stream: idle ..."). Either
way the client opens a new stream and sends again, in order, every request whose reply was not
complete, then goes on with the caller's items: the caller sees each result once, in order. The
requests are made from the caller's iterator once (:class:`Outbox`), whatever stream carries them;
the wait for a server to come back is bounded by the client's ``ready_timeout``
(:mod:`heatmap_client._ready`), counted from the break and started again by every reply; the
time a reply has waited for (``reply_timeout``) goes on across streams.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from heatmap.v1 import heatmap_pb2 as pb

from ._channel import metadata
from ._errors import HeatmapError
from ._idle import IdleClock, watch_from_thread
from ._ready import ReadyWait, ready_in_time, status_of
from ._render_api import pending_from_item
from .replies import PendingReply, unanswered
from .results import RenderResult

if TYPE_CHECKING:
    from ._client import HeatmapClient

__all__ = [
    "Outbox",
    "ended_idle",
    "gave_up",
    "idle_pause",
    "idle_pause_aio",
    "left",
    "render_many_blocking",
    "stream_deadline",
]

# How the server says it ended a stream that had nothing in flight (its --stream-idle-s).
_IDLE_END = "stream: idle"


def ended_idle(error: BaseException) -> bool:
    """Whether the server ended a stream for having nothing in flight: not an outage, so a new
    one opens at once, without counting as a wait for the server. Requests still unanswered then
    never reached the server (its replies all came before its status), and go on the new one."""
    code, details = status_of(error)
    return code == grpc.StatusCode.UNAVAILABLE and details.startswith(_IDLE_END)


class Outbox:
    """A ``render_many``'s requests: made from the caller's items one at a time, kept until their
    reply is complete, and handed to a new stream after one breaks.

    Shared by the stream's reader and gRPC's request thread (blocking client) or the writer task
    (asyncio), hence its locks. ``generation`` counts the streams: a writer of an older one takes
    nothing more.
    """

    def __init__(self, requests: Iterable[Mapping[str, Any]]):
        self._items = enumerate(requests)
        self._pending: deque[PendingReply] = deque()
        self._lock = threading.Lock()  # the pending replies
        self._taking = threading.Lock()  # the caller's iterator, one taker at a time
        self.generation = 0
        self.request_error: Exception | None = None
        self.exhausted = False  # every item taken, or a bad one ended them

    def in_flight(self) -> int:
        return len(self._pending)

    def take(self, generation: int) -> PendingReply | None:
        """The next item as a pending reply (kept until answered); None at the end of the items,
        after a bad one (kept in ``request_error`` for the caller), or for an old stream."""
        with self._taking:
            if generation != self.generation or self.exhausted:
                return None
            try:
                request_id, item = next(self._items)
                reply = pending_from_item(item, request_id)
            except StopIteration:
                self.exhausted = True
                return None
            except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread
                # The caller's iterator's errors too: gRPC would only log them and cancel.
                self.request_error = error
                self.exhausted = True
                return None
            with self._lock:
                self._pending.append(reply)
            return reply

    def feed(self, chunk: pb.RenderChunk) -> RenderResult | None:
        """Gives ``chunk`` to the oldest reply in flight; returns its result once that reply is
        whole (and no longer in flight).

        Raises:
            HeatmapError: ``DATA_LOSS`` for a chunk with no request in flight, or as
                :meth:`PendingReply.feed`.
        """
        with self._lock:
            current = self._pending[0] if self._pending else None
        if current is None:
            raise HeatmapError(grpc.StatusCode.DATA_LOSS, "reply: a chunk for no request in flight")
        result = current.feed(chunk)
        if result is not None:
            with self._lock:
                self._pending.popleft()
        return result

    def reopen(self) -> list[PendingReply]:
        """Starts a new stream's generation; returns the requests it sends first, in order (their
        replies start over)."""
        with self._taking, self._lock:
            self.generation += 1
            again = list(self._pending)
        for reply in again:
            reply.restart()
        return again

    def unanswered(self) -> HeatmapError:
        with self._lock:
            return unanswered(list(self._pending))


def idle_pause(clock: IdleClock, wait: ReadyWait) -> None:
    """Pauses before a stream ended for idling is reopened (longer each time, until a reply
    comes), the pause counted as waiting for the oldest reply: so a server that ends every
    stream at once cannot keep a reply owed for ever (``reply_timeout``).

    Raises:
        HeatmapError: ``DEADLINE_EXCEEDED`` once that reply's clock has run out.
    """
    clock.reading()
    time.sleep(wait.next_pause())
    clock.paused()
    if clock.check():
        raise clock.error()


async def idle_pause_aio(clock: IdleClock, wait: ReadyWait) -> None:
    """:func:`idle_pause` for the asyncio client."""
    clock.reading()
    await asyncio.sleep(wait.next_pause())
    clock.paused()
    if clock.check():
        raise clock.error()


def stream_deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def gave_up(
    wait: ReadyWait, error: BaseException, timeout: float | None, deadline: float | None
) -> HeatmapError:
    """The error of a stream that waited for a server in vain: its own ``timeout`` ran out, or
    the client's ``ready_timeout``."""
    if deadline is not None and deadline <= time.monotonic():
        return HeatmapError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"timeout: the stream's {timeout:g} s ran out while it waited for the server "
            f"(last error: {status_of(error)[1]})",
        )
    return wait.ran_out(error)


class _BlockingStream:
    """One ``RenderStream`` call: its requests (the ones sent again first), fed to gRPC from
    its own thread as the window allows, and its idle watch."""

    def __init__(self, client: HeatmapClient, outbox: Outbox, slots: threading.Semaphore,
                 clock: IdleClock, again: list[PendingReply], timeout: float | None):
        self.all_sent = False
        self._outbox, self._slots, self._clock = outbox, slots, clock
        self._generation = outbox.generation
        self._finished = threading.Event()
        _, stub = client._stub()
        self.call = stub.RenderStream(self._outgoing(again), timeout=timeout,
                                      metadata=metadata(client._token))
        watch_from_thread(clock, self._finished, self.call.cancel)

    def _outgoing(self, again: list[PendingReply]) -> Iterator[pb.RenderRequest]:
        for reply in again:
            yield reply.request
        outbox, slots = self._outbox, self._slots
        while True:
            while not slots.acquire(timeout=0.1):
                if self._finished.is_set():
                    return
            reply = outbox.take(self._generation)
            if reply is None:
                slots.release()
                break
            self._clock.sent()
            yield reply.request
        self.all_sent = outbox.generation == self._generation

    def close(self) -> None:
        self._finished.set()
        self.call.cancel()


def render_many_blocking(
    client: HeatmapClient,
    requests: Iterable[Mapping[str, Any]],
    window: int,
    timeout: float | None,
    idle_timeout: float | None,
    reply_timeout: float | None,
) -> Iterator[RenderResult]:
    """:meth:`HeatmapClient.render_many`'s work, its arguments checked."""
    outbox = Outbox(requests)
    slots = threading.Semaphore(window)
    clock = IdleClock(idle_timeout, owed=outbox.in_flight, reply_limit=reply_timeout)
    wait = ReadyWait(client.target, client.ready_timeout, client._reached)
    deadline = stream_deadline(timeout)
    again: list[PendingReply] = []
    while True:
        stream = _BlockingStream(client, outbox, slots, clock, again, left(deadline))
        try:
            while True:
                # One chunk at a time: what is held is the replies in flight, each within its
                # bound, never the stream.
                clock.reading()
                try:
                    chunk = next(stream.call, None)
                finally:
                    clock.paused()
                if chunk is None:
                    break
                result = outbox.feed(chunk)
                if result is None:
                    continue
                slots.release()
                clock.replied()
                wait.progressed()
                client._reached = True
                yield result
            if outbox.request_error is not None:
                raise outbox.request_error
            if outbox.in_flight() or not stream.all_sent:
                raise outbox.unanswered()
            return
        except grpc.RpcError as error:
            if clock.ran_out:
                raise clock.error() from None
            if ended_idle(error):
                idle_pause(clock, wait)
            elif not wait.waits_for(error):
                raise HeatmapError.from_rpc_error(error) from None
            elif not ready_in_time(client._open(), wait, left(deadline)):
                raise gave_up(wait, error, timeout, deadline) from None
        finally:
            stream.close()
        # The oldest reply's clock goes on: a server that breaks every stream cannot renew it.
        again = outbox.reopen()
