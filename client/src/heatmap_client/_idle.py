"""The idle deadline of a ``render_many`` stream: how long it waits for a chunk the server owes.

A stream may span an epoch, so no deadline bounds it as a whole by default. What bounds it is
this clock: the client gives up when a request is in flight and no chunk arrives for
``idle_timeout`` seconds. Only waiting counts: not the time the caller spends between results,
nor a time with no request in flight (the caller's own iterator may be slow to make the next).
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

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "IdleClock", "watch_from_thread"]

# As long as the default deadline of one call: a reply that takes longer to start is a server
# that has stopped, not a slow one.
DEFAULT_IDLE_TIMEOUT_S = 60.0

# A watcher never sleeps less than this, so a clock about to run out costs no spinning.
_MIN_SLEEP_S = 0.01


class IdleClock:
    """Time the reader has waited for a chunk while a request was in flight.

    Args:
        limit: ``idle_timeout`` in seconds, or None for no limit.
        owed: tells whether a request is in flight (a reply is owed).

    Raises:
        ArgumentError: naming ``idle_timeout`` when ``limit`` is not None or a number > 0.
    """

    def __init__(self, limit: float | None, owed: Callable[[], bool]):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, (int, float))
            or not math.isfinite(limit) or limit <= 0
        ):
            raise ArgumentError(
                "idle_timeout", f"must be None or a number of seconds > 0, got {limit!r}"
            )
        self.limit = limit
        self.ran_out = False
        self._owed = owed
        self._since = time.monotonic()
        self._waiting = False

    def reading(self) -> None:
        """The reader starts waiting for the next chunk."""
        self._since = time.monotonic()
        self._waiting = True

    def paused(self) -> None:
        """The reader has a chunk, or is handing the caller a result: its time is not idle."""
        self._waiting = False

    def sent(self) -> None:
        """A request went out: the server owes a reply from now."""
        self._since = time.monotonic()

    def remaining(self) -> float:
        """Seconds before the clock runs out (``limit`` while it does not run)."""
        if self.limit is None:
            return math.inf
        if not (self._waiting and self._owed()):
            return self.limit
        return self.limit - (time.monotonic() - self._since)

    def next_check(self) -> float:
        """Seconds to sleep before the next :meth:`check`: when it would run out, but at most a
        quarter of ``limit``, so that a wait (or a request) that starts meanwhile is caught at
        most that late."""
        return min(max(self.remaining(), _MIN_SLEEP_S), self.limit / 4)

    def check(self) -> bool:
        """Whether the clock has run out; once it has, it stays so."""
        if not self.ran_out and self.remaining() <= 0:
            self.ran_out = True
        return self.ran_out

    def error(self) -> HeatmapError:
        return HeatmapError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"idle_timeout: no reply chunk from the server for {self.limit:g} s while a request "
            "was in flight",
        )


def watch_from_thread(
    clock: IdleClock, finished: threading.Event, cancel: Callable[[], object]
) -> threading.Thread | None:
    """Calls ``cancel`` (the blocking call's) once ``clock`` runs out, unless ``finished`` is
    set first; one thread per stream, asleep but for four times per ``limit``. None without a
    limit."""
    if clock.limit is None:
        return None

    def watch() -> None:
        while not finished.wait(clock.next_check()):
            if clock.check():
                cancel()
                return

    thread = threading.Thread(target=watch, name="heatmap-idle-watch", daemon=True)
    thread.start()
    return thread
