"""Coordinate spaces: what each maps a keypoint to, and the flip each one keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import render_heatmaps

SIZE = (32, 24)  # (H, W)
METHODS = ["msra", "udp", "dark"]


def _normalized(device) -> torch.Tensor:
    rng = np.random.default_rng(8)
    return torch.from_numpy(rng.uniform(-1.1, 1.1, size=(3, 9, 2)).astype(np.float32)).to(device)


@pytest.mark.parametrize("method", [*METHODS, "seed"])
def test_normalized_edges_is_left_edge_to_right_edge(device, method):
    keypoints = _normalized(device)
    extent = torch.tensor([SIZE[1], SIZE[0]], dtype=torch.float32, device=device)
    pixels = ((keypoints + 1) * extent - 1) * 0.5  # u = ((x + 1) W - 1) / 2, in float32
    edges = render_heatmaps(keypoints, SIZE, 2.0, method=method, coords="normalized_edges")
    direct = render_heatmaps(pixels, SIZE, 2.0, method=method)
    assert torch.equal(edges.heatmaps, direct.heatmaps)
    assert torch.equal(edges.weights, direct.weights)


@pytest.mark.parametrize("method", METHODS)
def test_flipping_edge_normalized_keypoints_flips_the_heatmap(device, method):
    # With a whole 3 sigma the kernel's window is symmetric, so x -> -x is the mirror image
    # (away from ties: a centre on a half pixel rounds up on both sides, int(u + 0.5)).
    rng = np.random.default_rng(9)
    pixels = rng.integers(2, 20, size=(3, 9, 2)) + rng.choice([0.25, 0.75], size=(3, 9, 2))
    extent = np.array([SIZE[1], SIZE[0]])
    keypoints = torch.from_numpy(((2 * pixels + 1) / extent - 1).astype(np.float32)).to(device)
    flipped = keypoints * torch.tensor([-1.0, 1.0], device=device)
    once = render_heatmaps(keypoints, SIZE, 2.0, method=method, coords="normalized_edges")
    mirrored = render_heatmaps(flipped, SIZE, 2.0, method=method, coords="normalized_edges")
    torch.testing.assert_close(once.heatmaps.flip(-1), mirrored.heatmaps, rtol=0, atol=3e-7)


def test_the_seed_normalized_space_is_not_a_mirror(device):
    # -1 is the centre of pixel 0 and +1 the centre of pixel W: x -> -x maps u to W - u, one pixel
    # off the mirror image W - 1 - u (documented; normalized_edges is the symmetric space).
    keypoint = torch.tensor([[[-1.0, 0.0]]], device=device)
    heatmap = render_heatmaps(keypoint, SIZE, 2.0, coords="normalized").heatmaps[0, 0]
    mirror = render_heatmaps(-keypoint, SIZE, 2.0, coords="normalized").heatmaps[0, 0]
    assert int(heatmap.amax(dim=0).argmax()) == 0
    assert int(mirror.amax(dim=0).argmax()) == SIZE[1] - 1  # the peak at W is off the map...
    assert float(mirror.amax()) < 1.0  # ...so what shows is its tail, not its peak
