"""The bounds on renderer calls held at once: ``--max-concurrent-rpcs`` and
``--max-open-streams``.

gRPC's own ``maximum_concurrent_rpcs`` counts every call, health checks and reflection included:
streams that send nothing could take every slot, and a liveness probe refused RESOURCE_EXHAUSTED
would have the orchestrator kill a server that is merely busy. So the service bounds its renderer
calls itself, in two pools: single calls (``Render``, ``RenderUnary``), whose request is whole when
they start, so each holds work until its reply is sent; and ``RenderStream``s, which may sit with
nothing in flight until ``--stream-idle-s`` ends them. Streams that send nothing can fill their
own pool, never the single calls' one. Health, reflection and ``GetServerInfo`` (one small
message, answered on the spot) are served whatever the load.
"""

from __future__ import annotations

import grpc

from .errors import RequestError

__all__ = ["CallSlots", "single_call_slots", "stream_slots"]


class CallSlots:
    """At most ``limit`` calls held at once; ``held`` is a gauge kept equal to the count.

    Args:
        limit: the bound; ``flag`` is the server flag that sets it, ``field`` the name a refusal's
            ``google.rpc.BadRequest`` gives, ``calls`` what is counted (for the message).
        held, refused: a gauge of the slots held and a counter of the calls refused (optional).

    One event loop takes and gives back slots, so a plain counter is exact.
    """

    def __init__(self, limit: int, *, flag: str, field: str, calls: str, held=None,
                 refused=None):
        if limit < 1:
            raise ValueError(f"{flag}: must be at least 1, got {limit}")
        self.limit = limit
        self.held = 0
        self._flag, self._field, self._calls = flag, field, calls
        self._gauge = held
        self._refused = refused

    def take(self) -> None:
        """Holds one slot until :meth:`give_back`.

        Raises:
            RequestError: RESOURCE_EXHAUSTED naming the limit and its flag, when every slot is
                held.
        """
        if self.held >= self.limit:
            if self._refused is not None:
                self._refused.inc()
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, self._field,
                f"the server is serving its limit of {self.limit} {self._calls} at once "
                f"({self._flag}); retry later, or reach another replica",
            )
        self.held += 1
        if self._gauge is not None:
            self._gauge.set(self.held)

    def give_back(self) -> None:
        self.held -= 1
        if self._gauge is not None:
            self._gauge.set(self.held)


def single_call_slots(limit: int, metrics) -> CallSlots:
    """``--max-concurrent-rpcs``: ``Render`` and ``RenderUnary`` calls held at once."""
    return CallSlots(limit, flag="--max-concurrent-rpcs", field="concurrent_calls",
                     calls="Render and RenderUnary calls", held=metrics.renderer_calls,
                     refused=metrics.refused_calls)


def stream_slots(limit: int, metrics) -> CallSlots:
    """``--max-open-streams``: ``RenderStream``s open at once."""
    return CallSlots(limit, flag="--max-open-streams", field="open_streams",
                     calls="open RenderStreams", held=metrics.open_streams,
                     refused=metrics.refused_streams)
