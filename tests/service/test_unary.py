"""RenderUnary: a reply that fits one message travels as one, equal to Render's streamed reply;
the clients take it for every such request; light work renders without hand-offs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
from heatmap_client import HeatmapClient, RenderOptions
from heatmap_client.replies import result_from_chunks
from heatmap_client.requests import build_request
from heatmap_client.wire import MAX_UNARY_REPLY_BYTES, layout_of
from heatmap_render import render_heatmaps

from live_server import running_server
from probes import free_port, scrape, wait_for

KEYPOINTS = np.random.default_rng(3).uniform(-4, 52, size=(4, 17, 2)).astype(np.float32)
CODECS = ["zstd", "none", "separable", "profile_table"]


@pytest.fixture(scope="module")
def metered():
    port = free_port()
    with running_server("--metrics-port", str(port)) as server:
        yield server, port


@pytest.fixture(scope="module")
def stub(metered):
    with grpc.insecure_channel(metered[0].target) as channel:
        yield pb_grpc.HeatmapRendererStub(channel)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("method", ["seed", "msra", "udp", "dark"])
def test_one_message_equals_the_streamed_reply(stub, method, codec):
    request = build_request(KEYPOINTS, RenderOptions(size=(48, 40), sigma=2.0, method=method,
                                                     codec=codec))
    message = stub.RenderUnary(request, timeout=30)
    assert message.last and message.HasField("header")
    unary = result_from_chunks([message], request=request)
    streamed = result_from_chunks(stub.Render(request, timeout=30), request=request)
    local = render_heatmaps(KEYPOINTS, (48, 40), 2.0, method=method)
    np.testing.assert_array_equal(unary.heatmaps, local.heatmaps.numpy())
    np.testing.assert_array_equal(unary.heatmaps, streamed.heatmaps)
    np.testing.assert_array_equal(unary.weights, streamed.weights)


def test_a_reply_that_may_not_fit_is_refused_before_rendering(stub):
    keypoints = np.zeros((2, 17, 2), np.float32)
    request = build_request(keypoints, RenderOptions(size=(512, 512), sigma=2.0, codec="none"))
    layout = layout_of(request)
    assert not layout.fits_one_message  # 2*17*512*512*4 bytes: more than one message holds
    with pytest.raises(grpc.RpcError) as caught:
        stub.RenderUnary(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details().startswith("keypoints: a reply of up to")
    assert "call Render" in caught.value.details()
    assert len(result_from_chunks(stub.Render(request, timeout=30),
                                  request=request).heatmaps) == 2


def test_profile_tables_are_smaller_than_profiles_and_exact(stub):
    keypoints = np.random.default_rng(4).uniform(0, 64, size=(32, 68, 2)).astype(np.float32)
    tables = RenderOptions(size=(64, 64), sigma=2.0, codec="profile_table")
    profiles = RenderOptions(size=(64, 64), sigma=2.0, codec="separable")
    requests = [build_request(keypoints, options) for options in (tables, profiles)]
    table, plain = (stub.RenderUnary(request, timeout=30) for request in requests)
    # A batch's msra profiles are a few dozen distinct kernel rows per axis.
    assert table.header.table_rows <= 64 + 16 and table.header.table_cols <= 64 + 16
    assert table.header.decoded_bytes < plain.header.decoded_bytes / 10
    from_table = result_from_chunks([table], request=requests[0], profiles=True)
    from_plain = result_from_chunks([plain], request=requests[1], profiles=True)
    np.testing.assert_array_equal(from_table.rows, from_plain.rows)
    np.testing.assert_array_equal(from_table.cols, from_plain.cols)
    np.testing.assert_array_equal(from_table.dense(), from_plain.dense())


def _calls(port: int, rpc: str) -> float:
    return scrape(port).value("heatmap_requests_total", rpc=rpc, code="OK")


def test_clients_take_one_message_when_it_fits_and_stream_otherwise(metered):
    server, port = metered
    before = {rpc: _calls(port, rpc) for rpc in ("Render", "RenderUnary")}
    with HeatmapClient(server.target, timeout=30) as client:
        client.render_profiles(KEYPOINTS, size=(64, 48), sigma=2.0)
        client.render(KEYPOINTS, size=(64, 48), sigma=2.0)
        big = client.render(KEYPOINTS[:2], size=(512, 512), sigma=2.0, codec="none")
        assert big.heatmaps.shape == (2, 17, 512, 512)
    assert wait_for(lambda: _calls(port, "RenderUnary") == before["RenderUnary"] + 2)
    assert wait_for(lambda: _calls(port, "Render") == before["Render"] + 1)


def test_a_lone_light_request_renders_inline_and_concurrent_ones_coalesce():
    port = free_port()
    with running_server("--metrics-port", str(port), "--max-delay-us", "50000") as server:
        with HeatmapClient(server.target, timeout=30) as client:
            client.render_profiles(KEYPOINTS, size=(64, 48), sigma=2.0)
            assert wait_for(lambda: scrape(port).value("heatmap_inline_renders_total") == 1)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(6) as pool:
                results = list(pool.map(
                    lambda seed: client.render_profiles(KEYPOINTS + seed, size=(64, 48),
                                                        sigma=2.0), range(6)))
        coalesced = max(result.timings.coalesced_requests for result in results)
        # Requests that came close together waited for company instead of rendering alone.
        assert coalesced > 1, [result.timings.coalesced_requests for result in results]


def test_server_info_tells_the_largest_unary_reply(stub):
    from heatmap.v1 import heatmap_pb2 as pb

    info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)
    assert info.limits.max_unary_reply_bytes == MAX_UNARY_REPLY_BYTES
