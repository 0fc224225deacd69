"""``grpc.health.v1.Health`` whose Watch streams end when the server shuts down.

grpc_health's own servicer keeps a Watch open until the client goes away, and an open call holds
``server.stop(grace)`` for the whole grace period: a single load balancer or prober watching the
server would make every planned restart last ``--grace-s``. Here a watcher is told NOT_SERVING
and then its stream ends, so only real work in flight holds the shutdown.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["HealthService"]

_Status = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):
    """Check and Watch over a status per service name (``""`` is the whole server)."""

    def __init__(self) -> None:
        self._status: dict[str, _Status] = {"": SERVING}
        self._changed = asyncio.Condition()
        self._shutting_down = False

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"service: {request.service!r} unknown")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context) -> None:
        sent = None
        while True:
            async with self._changed:
                # The lock is not held while writing: a slow watcher must not stall set().
                await self._changed.wait_for(
                    lambda sent=sent: self._shutting_down
                    or self._status.get(request.service, SERVICE_UNKNOWN) != sent
                )
                status = self._status.get(request.service, SERVICE_UNKNOWN)
                closing = self._shutting_down
            if status != sent:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                sent = status
            if closing:
                return

    async def set(self, service: str, status: _Status) -> None:
        """Sets ``service``'s status; ignored once shutdown has begun."""
        async with self._changed:
            if self._shutting_down:
                return
            self._status[service] = status
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING for good; watchers get that and their streams end."""
        async with self._changed:
            self._shutting_down = True
            for service in self._status:
                self._status[service] = NOT_SERVING
            self._changed.notify_all()
