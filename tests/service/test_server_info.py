"""GetServerInfo, health and reflection on the real server."""

from __future__ import annotations

import grpc
import torch
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from heatmap.v1 import heatmap_pb2 as pb
from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient


def test_server_info_lists_capabilities_and_limits(live_server):
    with HeatmapClient(live_server.target, timeout=10) as client:
        info = client.info()
    assert info.version
    assert info.device.startswith(live_server.device)
    assert info.torch_version == torch.__version__
    assert set(info.methods) == {pb.METHOD_SEED, pb.METHOD_MSRA, pb.METHOD_UDP, pb.METHOD_DARK}
    assert set(info.codecs) == {pb.CODEC_ZSTD, pb.CODEC_NONE, pb.CODEC_SEPARABLE,
                                pb.CODEC_PROFILE_TABLE}
    assert pb.DTYPE_BFLOAT16 in info.dtypes and pb.DTYPE_UINT8 in info.dtypes
    assert set(info.targets) == {pb.TARGET_HEATMAP, pb.TARGET_SIMCC}
    assert set(info.smoothings) == {pb.SMOOTHING_GAUSSIAN, pb.SMOOTHING_STANDARD}
    assert info.limits.chunk_bytes == 1024 * 1024
    assert info.limits.max_output_elements == 64 * 1024 * 1024
    # The memory and work bounds, as their flags' defaults set them.
    assert info.limits.max_work_elements == 1 << 30
    assert info.limits.reply_budget_bytes == 512 << 20
    assert info.limits.stream_window_bytes == 64 << 20
    assert info.limits.max_unary_reply_bytes == 8 << 20


def test_empty_info_request_works_on_a_raw_channel(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        stub = pb_grpc.HeatmapRendererStub(channel)
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
    assert info.device.startswith(live_server.device)


def test_health_is_serving(live_server):
    with HeatmapClient(live_server.target) as client:
        assert client.health() == "SERVING"
        assert client.health("heatmap.v1.HeatmapRenderer") == "SERVING"


def test_reflection_lists_the_services(live_server):
    with grpc.insecure_channel(live_server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    names = {service.name for service in reply.list_services_response.service}
    assert {"heatmap.v1.HeatmapRenderer", "grpc.health.v1.Health"} <= names
