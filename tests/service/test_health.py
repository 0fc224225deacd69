"""grpc.health.v1 on the real server: Check and Watch per service name."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@pytest.fixture()
def health(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        yield health_pb2_grpc.HealthStub(channel)


@pytest.mark.parametrize("service", ["", "heatmap.v1.HeatmapRenderer"])
def test_the_server_and_the_renderer_are_serving(health, service):
    request = health_pb2.HealthCheckRequest(service=service)
    assert health.Check(request, timeout=10).status == SERVING
    watch = health.Watch(request, timeout=10)
    assert next(watch).status == SERVING
    watch.cancel()


def test_an_unknown_service_is_not_found_by_check_and_unknown_to_watch(health):
    request = health_pb2.HealthCheckRequest(service="no.such.Service")
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no.such.Service" in caught.value.details()
    watch = health.Watch(request, timeout=10)
    assert next(watch).status == SERVICE_UNKNOWN
    watch.cancel()
