"""Clocks that end a call whose other side has gone quiet.

A call is under one clock or the other. While a reply is owed, :class:`SendWatch` cuts the call
off when its client takes no chunk for ``--send-timeout-s`` (a reader that stalls). While nothing
is owed, :class:`IdleWatch` ends a ``RenderStream`` after ``--stream-idle-s``: a stream that sends
nothing would otherwise hold one of the renderer's call slots, and one of its connection's
streams, for as long as its client keeps it open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

__all__ = ["STREAM_IDLE", "IdleWatch", "Outcome", "SendWatch"]

# How the details of an idle stream's UNAVAILABLE begin. Clients reopen a stream that ended so,
# and match these words: they are part of the contract, keep them as they are.
STREAM_IDLE = "stream: idle for"


class Outcome:
    """The status an RPC ends with, as the metrics record it."""

    code: grpc.StatusCode = grpc.StatusCode.OK


class SendWatch:
    """Cuts a call off when gRPC takes none of its chunks for ``timeout_s``: a client that never
    reads would otherwise hold its reply (or its stream's window) for as long as it likes.

    A cut gives the call's memory back at once (``releases``, which the handler keeps current)
    and makes no further chunk. gRPC's Python server cannot reset a stream whose write is pending,
    so the chunk already handed over stays in gRPC until the client reads it (then the call ends
    with DEADLINE_EXCEEDED, see :meth:`end_if_cut`), its deadline passes or its connection closes
    (``grpc.max_connection_age_ms`` plus its grace).
    """

    def __init__(self, timeout_s: float, on_cut, context: grpc.aio.ServicerContext):
        self._timeout_s = timeout_s
        self._on_cut = on_cut
        self._context = context
        self._timer: asyncio.TimerHandle | None = None
        self.releases: list = []
        self.cut = False

    def chunks(self, chunks):
        """``chunks``, each one watched until gRPC has taken it (the generator resumes); none
        once the client has gone away or the call was cut off."""
        loop = asyncio.get_running_loop()
        for chunk in chunks:
            if self.cut or self._context.cancelled():
                return
            self._timer = loop.call_later(self._timeout_s, self._cut)
            yield chunk
            self._timer.cancel()

    def _cut(self) -> None:
        self.cut = True
        self._on_cut()
        releases, self.releases = self.releases, []
        for release in releases:
            release()

    async def end_if_cut(self, outcome: Outcome) -> None:
        """Ends a call that was cut off with DEADLINE_EXCEEDED (from its handler)."""
        if self.cut:
            outcome.code = grpc.StatusCode.DEADLINE_EXCEEDED
            await self._context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"reply: the client took no chunk for {self._timeout_s:g} s (--send-timeout-s)",
            )

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class IdleWatch:
    """Calls ``on_idle`` once a stream has had nothing in flight for ``idle_s`` (0: never).

    In flight: a request received whose reply gRPC has not yet taken whole. The clock runs from
    the stream's start and from each moment its last reply owed was taken; a request received
    stops it. A stream with replies owed is the send watch's, however slowly its client reads.
    """

    def __init__(self, idle_s: float, on_idle: Callable[[], None]):
        self._idle_s = idle_s
        self._on_idle = on_idle
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._start()

    @property
    def details(self) -> str:
        """The UNAVAILABLE details an idle stream ends with; they begin with :data:`STREAM_IDLE`."""
        return (f"{STREAM_IDLE} {self._idle_s:g} s with no request in flight (--stream-idle-s); "
                "open a new stream to send more")

    @property
    def in_flight(self) -> int:
        """Requests received whose replies gRPC has not yet taken whole."""
        return self._in_flight

    def received(self) -> None:
        """A request arrived: its reply is owed."""
        self._in_flight += 1
        self.stop()

    def answered(self) -> None:
        """gRPC took a reply's last chunk."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self) -> None:
        if self._idle_s > 0:
            self._timer = asyncio.get_running_loop().call_later(self._idle_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._on_idle()
