"""The waiting bounds of a ``render_many`` stream: how long it waits for what the server owes.

A stream may span an epoch, so no deadline bounds it as a whole by default. Two clocks bound it
instead, and both count only waiting: not the time the caller spends between results, nor a time
with no request in flight (the caller's own iterator may be slow to make the next).

- ``idle_timeout``: no chunk at all for that long while a request is in flight.
- ``reply_timeout``: the oldest reply in flight not complete after that much waiting, counted from
  when it became the oldest. Without it a server that trickles a byte a second keeps the idle
  clock from ever running out (57 bytes kept a stream with ``idle_timeout=3`` alive 57 s).

The same clock serves the blocking client (watched from a thread) and the asyncio one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import grpc

from ._errors import HeatmapError
from .wire.vocabulary import ArgumentError

__all__ = [
    "CLIENT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT_S",
    "IdleClock",
    "watch_from_thread",
]

# As long as the default deadline of one call: a reply that takes longer to start is a server
# that has stopped, not a slow one.
DEFAULT_IDLE_TIMEOUT_S = 60.0

# A watcher never sleeps less than this, so a clock about to run out costs no spinning.
_MIN_SLEEP_S = 0.01


class _ClientTimeout:
    """``reply_timeout``'s default: the client's own ``timeout``, the bound of one ``render``."""

    def __repr__(self) -> str:
        return "CLIENT_TIMEOUT"


CLIENT_TIMEOUT = _ClientTimeout()


def _checked(name: str, limit: float | None) -> float | None:
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, float))
        or not math.isfinite(limit) or limit <= 0
    ):
        raise ArgumentError(name, f"must be None or a number of seconds > 0, got {limit!r}")
    return limit


class IdleClock:
    """Time the reader has waited while requests were in flight: for any chunk, and for the
    oldest reply.

    Args:
        limit: ``idle_timeout`` in seconds, or None for no limit.
        owed: how many requests are in flight (replies owed).
        reply_limit: ``reply_timeout`` in seconds, or None for no limit.

    Raises:
        ArgumentError: naming ``idle_timeout`` or ``reply_timeout`` when it is not None or a
            number > 0.
    """

    def __init__(
        self, limit: float | None, owed: Callable[[], int], reply_limit: float | None = None
    ):
        self.limit = _checked("idle_timeout", limit)
        self.reply_limit = _checked("reply_timeout", reply_limit)
        self.ran_out = False
        self._which = "idle_timeout"
        self._owed = owed
        self._since = time.monotonic()
        self._waiting = False
        # The oldest reply's waiting: what earlier waits added up to, and when this one began.
        self._reply_waited = 0.0
        self._wait_began = self._since

    @property
    def bounded(self) -> bool:
        return self.limit is not None or self.reply_limit is not None

    def reading(self) -> None:
        """The reader starts waiting for the next chunk."""
        self._since = self._wait_began = time.monotonic()
        self._waiting = True

    def paused(self) -> None:
        """The reader has a chunk, or is handing the caller a result: its time is not idle."""
        if self._waiting:
            self._reply_waited += time.monotonic() - self._wait_began
        self._waiting = False

    def sent(self) -> None:
        """A request went out: the server owes a reply from now (the oldest, if it is alone)."""
        now = time.monotonic()
        self._since = now
        if self._owed() <= 1:
            self._reply_waited, self._wait_began = 0.0, now

    def replied(self) -> None:
        """The oldest reply is complete: the next one's clock starts."""
        self._reply_waited, self._wait_began = 0.0, time.monotonic()

    def _reply_remaining(self) -> float:
        waited = self._reply_waited
        if self._waiting:
            waited += time.monotonic() - self._wait_began
        return self.reply_limit - waited

    def remaining(self) -> float:
        """Seconds before a clock runs out (the shortest limit while none runs)."""
        if not self.bounded:
            return math.inf
        idle = math.inf if self.limit is None else self.limit
        reply = math.inf if self.reply_limit is None else self.reply_limit
        if not self._owed():
            return min(idle, reply)
        if reply != math.inf:
            reply = self._reply_remaining()
            if reply <= 0:
                self._which = "reply_timeout"
        if self._waiting and idle != math.inf:
            idle -= time.monotonic() - self._since
            if idle <= 0:
                self._which = "idle_timeout"
        return min(idle, reply)

    def next_check(self) -> float:
        """Seconds to sleep before the next :meth:`check`: when a clock would run out, but at
        most a quarter of the shortest limit, so that a wait (or a request) that starts
        meanwhile is caught at most that late."""
        shortest = min(limit for limit in (self.limit, self.reply_limit) if limit is not None)
        return min(max(self.remaining(), _MIN_SLEEP_S), shortest / 4)

    def check(self) -> bool:
        """Whether a clock has run out; once one has, it stays so."""
        if not self.ran_out and self.bounded and self.remaining() <= 0:
            self.ran_out = True
        return self.ran_out

    def error(self) -> HeatmapError:
        if self._which == "reply_timeout":
            message = (f"reply_timeout: the oldest reply in flight was not complete after "
                       f"{self.reply_limit:g} s of waiting for it")
        else:
            message = (f"idle_timeout: no reply chunk from the server for {self.limit:g} s "
                       "while a request was in flight")
        return HeatmapError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def watch_from_thread(
    clock: IdleClock, finished: threading.Event, cancel: Callable[[], object]
) -> threading.Thread | None:
    """Calls ``cancel`` (the blocking call's) once ``clock`` runs out, unless ``finished`` is
    set first; one thread per stream, asleep but for four times per limit. None without a
    limit."""
    if not clock.bounded:
        return None

    def watch() -> None:
        while not finished.wait(clock.next_check()):
            if clock.check():
                cancel()
                return

    thread = threading.Thread(target=watch, name="heatmap-idle-watch", daemon=True)
    thread.start()
    return thread
