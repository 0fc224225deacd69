"""Byte budgets: how many reply bytes may exist at once, server-wide and per stream.

Every reply reserves what it will hold (its rendered bytes) before it is rendered, and keeps the
reservation until gRPC has taken its last chunk; a compressed reply shrinks its reservation to its
payload once encoded. Waiting is first come, first served within each of two classes, ordinary
and large replies (below), so a large reply is not starved by later large ones, and ordinary
replies never queue behind a large one that waits for its share.

The server-wide budget keeps room for ordinary replies: replies larger than ``limit / 16`` (a
stalled client's typical weapon) may together hold at most 5/8 of it, so a flood of large
replies that nobody reads still leaves 3/8 to everybody else. (5/8, not 1/2: at the default
512 MiB, the largest default reply, 256 MiB of float32 plus its weights, must fit.)

All methods run on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import collections

import grpc

from .errors import RequestError

__all__ = ["ByteBudget", "Grant"]

# A reply above limit / _LARGE_FRACTION is large; large replies share limit * 5 / 8.
_LARGE_FRACTION = 16


def _large_share(limit: int) -> int:
    return limit * 5 // 8


class Grant:
    """Bytes held from a :class:`ByteBudget`; :meth:`release` (idempotent) gives them back."""

    def __init__(self, budget: ByteBudget, nbytes: int, large: bool):
        self._budget = budget
        self.nbytes = nbytes
        self.large = large

    def resize(self, nbytes: int) -> None:
        """Holds ``nbytes`` instead, at once: the memory exists already (an encoded payload)."""
        if self._budget is not None:
            self._budget._change(self, nbytes - self.nbytes)
            self.nbytes = nbytes

    def release(self) -> None:
        if self._budget is not None:
            budget, self._budget = self._budget, None
            budget._change(self, -self.nbytes)
            self.nbytes = 0


class ByteBudget:
    """At most ``limit`` bytes granted at once.

    Args:
        limit: bytes in all grants together.
        name: what a refusal names (``reply budget``); also the flag that sets it.
        flag: the setting that raises ``limit``, named in refusals.
        keep_room: large grants share at most 5/8 of the limit (see the module docstring).
        lone_grant_any_size: a grant larger than ``limit`` is given when nothing else is held
            (a stream's window: one reply always goes, however large).
        on_change: called with the bytes in use after every change (a gauge's ``set``).
    """

    def __init__(
        self,
        limit: int,
        *,
        name: str = "reply budget",
        flag: str = "--reply-budget-bytes",
        keep_room: bool = True,
        lone_grant_any_size: bool = False,
        on_change=None,
    ):
        self.limit = limit
        self.name = name
        self.flag = flag
        self._keep_room = keep_room
        self._lone_grant_any_size = lone_grant_any_size
        self._on_change = on_change
        self.in_use = 0
        self._large_in_use = 0
        # Per class (large or not), in arrival order.
        self._waiters: dict[bool, collections.deque[tuple[int, bool, asyncio.Future]]] = {
            False: collections.deque(), True: collections.deque(),
        }

    def _is_large(self, nbytes: int) -> bool:
        return self._keep_room and nbytes > self.limit // _LARGE_FRACTION

    def _fits(self, nbytes: int, large: bool) -> bool:
        if self._lone_grant_any_size and self.in_use == 0:
            return True
        if self.in_use + nbytes > self.limit:
            return False
        return not large or self._large_in_use + nbytes <= _large_share(self.limit)

    def _refusal(self, description: str) -> RequestError:
        return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, self.name.replace(" ", "_"),
                            description)

    async def acquire(self, nbytes: int, wait_s: float | None = None) -> Grant:
        """Grants ``nbytes``, waiting at most ``wait_s`` seconds (None: as long as it takes).

        Raises:
            RequestError: RESOURCE_EXHAUSTED naming the budget, when ``nbytes`` can never fit or
                did not fit within ``wait_s``.
        """
        large = self._is_large(nbytes)
        ceiling = _large_share(self.limit) if large else self.limit
        if nbytes > ceiling and not self._lone_grant_any_size:
            share = " (5/8 of it, the share of replies over 1/16 of it)" if large else ""
            raise self._refusal(
                f"a reply of {nbytes} bytes exceeds the server's {self.name} of {self.limit} "
                f"bytes{share}; raise {self.flag} or ask for less"
            )
        queue = self._waiters[large]
        if not queue and self._fits(nbytes, large):
            return self._grant(nbytes, large)
        waiter = asyncio.get_running_loop().create_future()
        entry = (nbytes, large, waiter)
        queue.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), wait_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as error:
            if waiter.done() and not waiter.cancelled():
                waiter.result().release()  # granted just as we gave up: give it back
            else:
                waiter.cancel()
                queue.remove(entry)
                self._wake()  # those behind may fit now
            if isinstance(error, asyncio.CancelledError):
                raise
            raise self._refusal(
                f"{self.in_use} of {self.limit} bytes in use; a reply of {nbytes} bytes waited "
                f"{wait_s:g} s for room (raise {self.flag}, or read replies sooner)"
            ) from None
        return waiter.result()

    def _grant(self, nbytes: int, large: bool) -> Grant:
        grant = Grant(self, 0, large)
        self._change(grant, nbytes, wake=False)
        grant.nbytes = nbytes
        return grant

    def _change(self, grant: Grant, delta: int, wake: bool = True) -> None:
        self.in_use += delta
        if grant.large:
            self._large_in_use += delta
        if self._on_change is not None:
            self._on_change(self.in_use)
        if wake and delta < 0:
            self._wake()

    def _wake(self) -> None:
        # Ordinary replies first; in each class the first waiter that does not fit holds those
        # behind it.
        for queue in (self._waiters[False], self._waiters[True]):
            while queue:
                nbytes, large, waiter = queue[0]
                if waiter.cancelled():
                    queue.popleft()
                    continue
                if not self._fits(nbytes, large):
                    break
                queue.popleft()
                waiter.set_result(self._grant(nbytes, large))
