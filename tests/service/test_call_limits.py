"""``--max-concurrent-rpcs`` and ``--max-open-streams`` on a real server: calls past either are
refused RESOURCE_EXHAUSTED naming the limit, while the other pool, health, reflection and
GetServerInfo are served whatever the load, and a freed slot serves the next caller."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient, HeatmapError

from idle_streams import IdleStreams, connection
from live_server import running_server
from probes import free_port, render_request, scrape, wait_for
from server_process import ServerProcess

pytestmark = pytest.mark.timeout(120)

SERVING = health_pb2.HealthCheckResponse.SERVING
KEYPOINTS = np.random.default_rng(5).uniform(0, 16, (2, 5, 2)).astype(np.float32)
REQUEST = render_request(KEYPOINTS, size=(16, 16), sigma=1.0)


def _field(error: grpc.RpcError) -> str:
    bad_request = error_details_pb2.BadRequest()
    assert rpc_status.from_call(error).details[0].Unpack(bad_request)
    return bad_request.field_violations[0].field


def _refused(call, field: str, flag: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert _field(error) == field
    assert flag in error.details() and " 4 " in error.details()
    return error


def _always_answered(channel: grpc.Channel) -> None:
    """Never refused for capacity: health (Check and Watch), reflection, GetServerInfo."""
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "heatmap.v1.HeatmapRenderer"):
        request = health_pb2.HealthCheckRequest(service=service)
        assert health.Check(request, timeout=10).status == SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(watch).status == SERVING
    watch.cancel()
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([listing]), timeout=10))
    assert "heatmap.v1.HeatmapRenderer" in {
        service.name for service in reply.list_services_response.service}
    assert pb_grpc.HeatmapRendererStub(channel).GetServerInfo(
        pb.GetServerInfoRequest(), timeout=10).version


def _one_reply(stub) -> None:
    assert len([chunk for chunk in stub.Render(REQUEST, timeout=10) if chunk.last]) == 1
    assert stub.RenderUnary(REQUEST, timeout=10).last


def test_streams_past_their_limit_are_refused_and_single_calls_and_health_are_served():
    port = free_port()
    flags = ("--metrics-port", str(port), "--max-open-streams", "4", "--stream-idle-s", "0")
    with running_server(*flags) as server, connection(server.target) as channel:
        stub = pb_grpc.HeatmapRendererStub(channel)
        assert scrape(port).value("heatmap_open_streams_limit") == 4
        with IdleStreams(server.target, 4, connections=2) as idle:
            assert wait_for(lambda: scrape(port).value("heatmap_open_streams") == 4,
                            timeout=30), scrape(port)
            _refused(lambda: list(stub.RenderStream(iter([REQUEST]), timeout=10)),
                     "open_streams", "--max-open-streams")
            with HeatmapClient(server.target, timeout=10) as client:
                with pytest.raises(HeatmapError) as caught:
                    list(client.render_many([dict(keypoints=KEYPOINTS, size=(16, 16),
                                                  sigma=1.0)]))
                assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "--max-open-streams" in caught.value.message
                # Streams that send nothing never keep a single call out.
                result = client.render(KEYPOINTS, size=(16, 16), sigma=1.0)
                assert result.heatmaps.max() > 0.5
            _one_reply(stub)
            _always_answered(channel)
            samples = scrape(port)
            assert samples.value("heatmap_open_streams") == 4
            assert samples.value("heatmap_refused_streams_total") == 2
            assert samples.value("heatmap_refused_calls_total") == 0
            assert samples.value("heatmap_requests_total", rpc="RenderStream",
                                 code="RESOURCE_EXHAUSTED") == 2
            assert not idle.ended()
            # A slot given back serves the next stream.
            idle.half_close(idle.calls[:1])
            assert wait_for(lambda: scrape(port).value("heatmap_open_streams") == 3,
                            timeout=30), scrape(port)
            replies = list(stub.RenderStream(iter([REQUEST]), timeout=10))
            assert len([chunk for chunk in replies if chunk.last]) == 1
        assert wait_for(lambda: scrape(port).value("heatmap_open_streams") == 0, timeout=30)
        server.stop()
        assert "Traceback" not in server.log, server.log


# A reply far larger than gRPC's flow-control windows: a call whose client does not read it
# holds its slot (until --send-timeout-s).
UNREAD = render_request(np.zeros((1, 16, 2), np.float32), size=(512, 512), sigma=2.0,
                        codec="none")


def test_single_calls_past_their_limit_are_refused_and_streams_and_health_are_served():
    port = free_port()
    flags = ("--metrics-port", str(port), "--max-concurrent-rpcs", "4")
    with running_server(*flags) as server, connection(server.target) as channel:
        stub = pb_grpc.HeatmapRendererStub(channel)
        assert scrape(port).value("heatmap_renderer_calls_limit") == 4
        held = [connection(server.target) for _ in range(2)]
        unread = [pb_grpc.HeatmapRendererStub(held[index % 2]).Render(UNREAD, timeout=60)
                  for index in range(4)]
        try:
            assert wait_for(lambda: scrape(port).value("heatmap_renderer_calls") == 4,
                            timeout=30), scrape(port)
            _refused(lambda: list(stub.Render(REQUEST, timeout=10)),
                     "concurrent_calls", "--max-concurrent-rpcs")
            _refused(lambda: stub.RenderUnary(REQUEST, timeout=10),
                     "concurrent_calls", "--max-concurrent-rpcs")
            replies = list(stub.RenderStream(iter([REQUEST]), timeout=10))
            assert len([chunk for chunk in replies if chunk.last]) == 1
            _always_answered(channel)
            samples = scrape(port)
            assert samples.value("heatmap_renderer_calls") == 4
            assert samples.value("heatmap_refused_calls_total") == 2
            # A slot given back serves the next caller.
            unread[0].cancel()
            assert wait_for(lambda: scrape(port).value("heatmap_renderer_calls") == 3,
                            timeout=30), scrape(port)
            _one_reply(stub)
        finally:
            for call in unread:
                call.cancel()
            for channel_held in held:
                channel_held.close()
        assert wait_for(lambda: scrape(port).value("heatmap_renderer_calls") == 0, timeout=30)
        server.stop()
        assert "Traceback" not in server.log, server.log


@pytest.mark.parametrize("flag, value", [("--max-concurrent-rpcs", "0"),
                                         ("--max-open-streams", "0"),
                                         ("--max-streams-per-connection", "0"),
                                         ("--stream-idle-s", "-1")])
def test_a_bound_the_server_cannot_run_with_is_refused_at_start_naming_its_flag(flag, value):
    with pytest.raises(RuntimeError, match="exited before listening") as caught:
        ServerProcess([flag, value], timeout=60)
    assert f"{flag} must be at least" in str(caught.value)
