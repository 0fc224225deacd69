"""Targets and connection settings are checked where they are written: a URL or a near miss of
``"local"`` fails at construction with an ``ArgumentError`` naming ``target`` and saying what to
write, instead of gRPC's resolver error at the first call; every target gRPC resolves passes."""

from __future__ import annotations

import numpy as np
import pytest

from heatmap_client import ArgumentError, AsyncHeatmapClient, HeatmapClient

CLIENTS = [HeatmapClient, AsyncHeatmapClient]


@pytest.mark.parametrize("client_class", CLIENTS)
@pytest.mark.parametrize("target, bare", [
    ("http://127.0.0.1:50051", "127.0.0.1:50051"),
    ("https://heatmap.example.com:443/", "heatmap.example.com:443"),
    ("grpc://heatmap:50051", "heatmap:50051"),
    ("HTTP://[::1]:50051", "[::1]:50051"),
])
def test_a_url_is_refused_with_the_target_to_write(client_class, target, bare):
    with pytest.raises(ArgumentError) as caught:
        client_class(target)
    assert caught.value.argument == "target"
    scheme = target.split("://")[0]
    assert str(caught.value).startswith(f"target: drop the {scheme}:// scheme: {bare!r}")


@pytest.mark.parametrize("target", ["locals", "Local", "lcoal", "loca", "locl", "LOCAL"])
def test_a_near_miss_of_local_is_refused_with_a_hint(target):
    with pytest.raises(ArgumentError) as caught:
        HeatmapClient(target)
    assert caught.value.argument == "target"
    assert "did you mean 'local'" in str(caught.value)


def test_the_collate_says_the_same_for_its_target():
    pytest.importorskip("torch")
    from heatmap_client.torch import HeatmapCollate

    with pytest.raises(ArgumentError, match=r"^target: 'locals' has no port: did you mean "
                                            r"'local'"):
        HeatmapCollate("locals", size=(64, 48), sigma=2.0)
    with pytest.raises(ArgumentError, match="^target: drop the http:// scheme"):
        HeatmapCollate("http://127.0.0.1:50051", size=(64, 48), sigma=2.0)
    assert HeatmapCollate("local", size=(64, 48), sigma=2.0)(
        [dict(keypoints=np.zeros((17, 2), np.float32))])["heatmaps"].shape == (1, 17, 64, 48)


@pytest.mark.parametrize("client_class", CLIENTS)
@pytest.mark.parametrize("target", [
    "127.0.0.1:50051", "localhost:50051", "heatmap:50051", "localhost", "locale-server:1",
    "dns:///heatmap:50051", "dns://8.8.8.8/heatmap.example.com:50051",
    "ipv4:127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053", "ipv6:[::1]:50051",
    "[::1]:50051", "unix:/tmp/heatmap.sock", "unix:///tmp/heatmap.sock",
    "unix-abstract:heatmap", "xds:///heatmap",
])
def test_every_target_grpc_resolves_is_accepted(client_class, target):
    assert client_class(target).target == target


@pytest.mark.parametrize("target", ["", "   ", None, 50051])
def test_no_target_at_all_is_refused(target):
    with pytest.raises(ArgumentError, match="^target: expected 'host:port'"):
        HeatmapClient(target)


@pytest.mark.parametrize("settings, argument", [
    (dict(ready_timeout=-1), "ready_timeout"),
    (dict(ready_timeout="60"), "ready_timeout"),
    (dict(ready_timeout=True), "ready_timeout"),
    (dict(ready_timeout=float("nan")), "ready_timeout"),
    (dict(max_request_bytes=0), "max_request_bytes"),
    (dict(max_request_bytes=2.5e6), "max_request_bytes"),
])
@pytest.mark.parametrize("client_class", CLIENTS)
def test_connection_settings_are_checked_at_construction(client_class, settings, argument):
    with pytest.raises(ArgumentError) as caught:
        client_class("127.0.0.1:50051", **settings)
    assert caught.value.argument == argument


@pytest.mark.parametrize("ready_timeout", [0, 2.5, None])
def test_ready_timeout_takes_0_a_number_or_none(ready_timeout):
    assert HeatmapClient("127.0.0.1:1", ready_timeout=ready_timeout).ready_timeout == (
        ready_timeout)


def test_the_collate_passes_ready_timeout_to_the_client_it_makes():
    pytest.importorskip("torch")
    from heatmap_client.torch import HeatmapCollate

    made = HeatmapCollate("127.0.0.1:1", size=(64, 48), sigma=2.0, ready_timeout=5.0)
    assert made.client.ready_timeout == 5.0
    assert HeatmapCollate("127.0.0.1:1", size=(64, 48), sigma=2.0).client.ready_timeout == 60.0
    given = HeatmapClient("127.0.0.1:1", ready_timeout=1.0)
    with pytest.raises(ArgumentError, match="^ready_timeout: only for a client made"):
        HeatmapCollate(given, size=(64, 48), sigma=2.0, ready_timeout=5.0)
    assert HeatmapCollate(given, size=(64, 48), sigma=2.0).client.ready_timeout == 1.0
