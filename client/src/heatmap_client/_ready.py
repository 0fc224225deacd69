"""Waiting for a server that restarts: the bounded wait behind a client's ``ready_timeout``.

What gRPC (1.85) does on its own, measured against the real server on loopback:

- Nothing listening (the server gone; or draining: on SIGTERM it closes its port at once while
  the calls in flight finish): a new call fails ``UNAVAILABLE`` ("connections to all backends
  failing ... Connection refused") once the service config's 5 tries are spent, after 1.3-1.6 s.
  With ``wait_for_ready=True`` it waits instead, but within its own deadline, and then fails
  ``DEADLINE_EXCEEDED`` "Deadline Exceeded", which does not tell a wait from slow work.
- A call in flight when the server stops (kill -9, or the end of its grace period) fails
  ``UNAVAILABLE``; gRPC retries nothing that the server has begun to answer.
- A call that reached a server as it began to shut down, before a handler took it, fails
  ``CANCELLED`` (details "CANCELLED", the server's reset of the stream): 6 of ~2,600 calls from 4
  threads over 15 SIGTERM restarts. This client cancels no call it is waiting on (gRPC's words for
  that are "Locally cancelled by application!"), so such a CANCELLED is the server going away.
- Between connection attempts gRPC backs off up to 120 s by default, so a waiting call found a
  server back after 4 s too late for a 10 s deadline (the channel now tries every second at most).

So the wait is the client's, around gRPC's: a call that fails ``UNAVAILABLE`` (or ``CANCELLED``
by the server) waits for the channel to be ready (gRPC's own connectivity watch), within
``ready_timeout`` counted from that first failure, and is sent again, with ``wait_for_ready=True``
and its own full deadline. Renders and ``info`` are idempotent, so a second try is safe;
``health`` never waits (a probe wants the truth now).

A client that has never had a reply from any server does not wait when the server it reached
closed the connection or failed the TLS handshake: that is a TLS setup that does not match the
server's (TLS against plaintext, or the reverse, or a certificate refused), not a restart.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from ._errors import HeatmapError

__all__ = ["ReadyWait", "ready_in_time", "ready_in_time_aio", "status_of"]

# How gRPC words a call's CANCELLED when this process cancelled it (any other is the server's).
_CANCELLED_HERE = "Locally cancelled"
# Signs, in gRPC's words, of a server that was reached and refused this client's transport.
_TRANSPORT_REFUSED = ("handshake", "socket closed")

# Pauses between tries while the channel is ready but calls still fail UNAVAILABLE (a server that
# accepts connections and refuses work, as one whose device stopped does): from the first to the
# most, doubling.
_FIRST_PAUSE_S = 0.1
_MOST_PAUSE_S = 1.0


def status_of(error: BaseException) -> tuple[grpc.StatusCode | None, str]:
    """The status code and details of a failed call, gRPC's error or this client's."""
    if isinstance(error, HeatmapError):
        return error.code, error.message
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return error.code(), error.details() or ""
    return None, str(error)


class ReadyWait:
    """One call's (or one stream's) wait for a server, bounded by ``ready_timeout``.

    Args:
        target: the client's target, named in the error when the wait runs out.
        limit: ``ready_timeout`` in seconds; None: no bound; 0: no wait.
        reached: whether the client has had a reply from a server before.
    """

    def __init__(self, target: str, limit: float | None, reached: bool):
        self._target = target
        self._limit = limit
        self._reached = reached
        self._until: float | None = None
        self._pause = 0.0

    def waits_for(self, error: BaseException) -> bool:
        """Whether a call that failed with ``error`` should wait for a server and go again; the
        clock starts at the first such failure."""
        code, details = status_of(error)
        if code == grpc.StatusCode.CANCELLED and not details.startswith(_CANCELLED_HERE):
            return self._limit != 0 and self._started()
        if code != grpc.StatusCode.UNAVAILABLE or self._limit == 0:
            return False
        if not self._reached and any(sign in details.lower() for sign in _TRANSPORT_REFUSED):
            return False
        return self._started()

    def _started(self) -> bool:
        """Starts the clock at the first failure that waits; True."""
        if self._until is None and self._limit is not None:
            self._until = time.monotonic() + self._limit
        return True

    def remaining(self) -> float | None:
        """Seconds left to wait (None: no bound)."""
        if self._limit is None:
            return None
        if self._until is None:
            return self._limit
        return max(self._until - time.monotonic(), 0.0)

    def next_pause(self) -> float:
        """Seconds to pause before the next try: none before the first, then 0.1 s doubling
        to 1 s, within what is left."""
        pause = self._pause
        self._pause = min(max(pause * 2, _FIRST_PAUSE_S), _MOST_PAUSE_S)
        remaining = self.remaining()
        return pause if remaining is None else min(pause, remaining)

    def progressed(self) -> None:
        """A reply came: a later failure is a new outage, with the whole limit again."""
        self._until = None
        self._pause = 0.0
        self._reached = True

    def ran_out(self, error: BaseException | None) -> HeatmapError:
        """``UNAVAILABLE`` naming the target, the wait and the last failure."""
        last = "" if error is None else f"; last error: {status_of(error)[1]}"
        return HeatmapError(
            grpc.StatusCode.UNAVAILABLE,
            f"target {self._target!r}: no server answered within ready_timeout="
            f"{self._limit if self._limit is None else format(self._limit, 'g')} s{last}",
        )


def _seconds_left(wait: ReadyWait, within: float | None) -> float | None:
    left = [seconds for seconds in (wait.remaining(), within) if seconds is not None]
    return min(left) if left else None


def ready_in_time(channel: grpc.Channel, wait: ReadyWait, within: float | None = None) -> bool:
    """Pauses as ``wait`` says, then waits for ``channel`` to be ready (connected to a server),
    within what is left of ``wait`` and of ``within`` seconds; whether it is."""
    time.sleep(wait.next_pause())
    seconds = _seconds_left(wait, within)
    if seconds is not None and seconds <= 0:
        return False
    ready = grpc.channel_ready_future(channel)
    try:
        ready.result(timeout=seconds)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        ready.cancel()


async def ready_in_time_aio(
    channel: grpc.aio.Channel, wait: ReadyWait, within: float | None = None
) -> bool:
    """:func:`ready_in_time` for an asyncio channel."""
    await asyncio.sleep(wait.next_pause())
    seconds = _seconds_left(wait, within)
    if seconds is not None and seconds <= 0:
        return False
    try:
        await asyncio.wait_for(channel.channel_ready(), seconds)
        return True
    except asyncio.TimeoutError:
        return False
