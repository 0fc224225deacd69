"""The bound on renderer calls served at once: ``--max-concurrent-rpcs``.

gRPC's own ``maximum_concurrent_rpcs`` counts every call, health checks and reflection included:
streams that send nothing could take every slot, and a liveness probe refused RESOURCE_EXHAUSTED
would have the orchestrator kill a server that is merely busy. This bound covers the renderer's
calls that hold work or a stream (Render, RenderUnary, RenderStream); health, reflection and
``GetServerInfo`` (one small message, answered on the spot) are served whatever the load.
"""

from __future__ import annotations

import grpc

from .errors import RequestError

__all__ = ["CallSlots"]


class CallSlots:
    """At most ``limit`` renderer calls held at once; ``held`` is a gauge kept equal to the count.

    One event loop takes and gives back slots, so a plain counter is exact.
    """

    def __init__(self, limit: int, held=None, refused=None):
        if limit < 1:
            raise ValueError(f"max_concurrent_rpcs: must be at least 1, got {limit}")
        self.limit = limit
        self.held = 0
        self._gauge = held
        self._refused = refused

    def take(self) -> None:
        """Holds one slot until :meth:`give_back`.

        Raises:
            RequestError: RESOURCE_EXHAUSTED naming the limit, when every slot is held.
        """
        if self.held >= self.limit:
            if self._refused is not None:
                self._refused.inc()
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "concurrent_calls",
                f"the server is serving its limit of {self.limit} renderer calls at once "
                "(--max-concurrent-rpcs); retry later, or reach another replica",
            )
        self.held += 1
        if self._gauge is not None:
            self._gauge.set(self.held)

    def give_back(self) -> None:
        self.held -= 1
        if self._gauge is not None:
            self._gauge.set(self.held)
