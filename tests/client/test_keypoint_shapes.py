"""Keypoints checked where they are written: the shapes people pass by mistake (one sample
without its batch axis, flat COCO triplets), strings, and tensors that require grad, on the
network client (before anything is sent), the local renderer and the server."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_client import ArgumentError, HeatmapClient
from heatmap_client.torch.local import LocalRenderer

KEYPOINTS = np.random.default_rng(0).uniform(0, 48, (4, 17, 2)).astype(np.float32)

# (keypoints, the words of the hint)
MISTAKES = {
    "one sample (K, 2)": (KEYPOINTS[0], "pass keypoints[None]"),
    "flat COCO (B, 51)": (np.zeros((4, 51), np.float32), "reshape to (B, K, 3)"),
    "flat pairs (B, 34)": (np.zeros((4, 34), np.float32), "reshape to (B, K, 2)"),
    "(x, y, v) triplets": (np.zeros((4, 17, 3), np.float32), "as visibility"),
    "strings": (np.array([[["a", "b"]]]), "real numbers"),
    "objects": (np.array([[[1.0, None]]], dtype=object), "real numbers"),
    "complex": (np.zeros((1, 2, 2), np.complex64), "real numbers"),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_the_network_client_names_keypoints_before_sending(case):
    keypoints, words = MISTAKES[case]
    with HeatmapClient("127.0.0.1:1", timeout=1) as client:  # nothing listens: never sent
        with pytest.raises(ArgumentError) as caught:
            client.render(keypoints, size=(64, 48), sigma=2.0)
    assert caught.value.argument == "keypoints"
    assert words in str(caught.value)


@pytest.mark.parametrize("case", list(MISTAKES))
def test_the_local_renderer_names_keypoints(case):
    keypoints, _ = MISTAKES[case]
    with pytest.raises(ValueError) as caught:
        LocalRenderer().render(keypoints, size=(64, 48), sigma=2.0)
    assert getattr(caught.value, "argument", None) == "keypoints"
    assert str(caught.value).startswith("keypoints")


def test_a_tensor_that_requires_grad_renders_as_its_values(live_server):
    """A keypoint tensor that is part of a graph (a model's predicted keypoints) is detached:
    the targets are its values, on every path."""
    points = torch.from_numpy(KEYPOINTS).requires_grad_()
    with HeatmapClient(live_server.target, timeout=30) as client:
        remote = client.render(points * 1.0, size=(64, 48), sigma=2.0)
        plain = client.render(KEYPOINTS, size=(64, 48), sigma=2.0)
    local = LocalRenderer().render(points * 1.0, size=(64, 48), sigma=2.0)
    np.testing.assert_array_equal(remote.heatmaps, plain.heatmaps)
    np.testing.assert_array_equal(np.asarray(local.heatmaps), plain.heatmaps)


def test_the_server_refuses_a_one_sample_shape_naming_keypoints(live_server):
    """What a client that skips the checks sends: INVALID_ARGUMENT naming keypoints, never a
    reply the client takes for lost data."""
    import grpc

    from heatmap.v1 import heatmap_pb2 as pb
    from heatmap.v1 import heatmap_pb2_grpc as pb_grpc
    from heatmap_client.wire import tensor_from_array

    request = pb.RenderRequest(keypoints=tensor_from_array(KEYPOINTS[0], "keypoints"),
                               height=64, width=48, sigma=2.0)
    with grpc.insecure_channel(live_server.target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.HeatmapRendererStub(channel).RenderUnary(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("keypoints")
