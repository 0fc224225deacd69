"""The kernel-table cache: bounded, clearable, and invisible in the results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatmap_render import clear_table_cache, render_heatmaps, table_cache_info

from .heatmap_reference import random_keypoints


@pytest.mark.parametrize("method", ["seed", "msra", "udp"])
def test_cache_is_filled_bounded_and_cleared(device, method):
    keypoints = torch.from_numpy(random_keypoints(9, (2, 6), (24, 20))).to(device)
    sigma = [1.1, 2.0, 3.0, 1.1, 2.0, 3.0]
    clear_table_cache()
    assert table_cache_info()["entries"] == 0 and table_cache_info()["bytes"] == 0
    first = render_heatmaps(keypoints, (24, 20), sigma, method=method)
    info = table_cache_info()
    assert info["entries"] > 0 and 0 < info["bytes"] <= info["budget_bytes"]
    cached = render_heatmaps(keypoints, (24, 20), sigma, method=method)
    assert table_cache_info()["entries"] == info["entries"]  # a hit builds nothing new
    clear_table_cache()
    rebuilt = render_heatmaps(keypoints, (24, 20), sigma, method=method)
    assert torch.equal(first.heatmaps, cached.heatmaps)
    assert torch.equal(first.heatmaps, rebuilt.heatmaps)


def test_dark_keeps_no_table(device):
    """dark evaluates each keypoint at its own float centre over the whole axis: no window."""
    keypoints = torch.from_numpy(random_keypoints(9, (2, 6), (24, 20))).to(device)
    clear_table_cache()
    render_heatmaps(keypoints, (24, 20), 2.0, method="dark")
    assert table_cache_info()["entries"] == 0


def test_tables_are_per_sigma_set_and_size(device):
    keypoints = torch.from_numpy(random_keypoints(9, (1, 3), (24, 20))).to(device)
    clear_table_cache()
    render_heatmaps(keypoints, (24, 20), 2.0)
    entries = table_cache_info()["entries"]
    render_heatmaps(keypoints, (24, 20), 3.0)  # another sigma: other tables
    render_heatmaps(keypoints, (25, 20), 2.0)  # another height: another row table
    assert table_cache_info()["entries"] > entries


@pytest.mark.parametrize("visibility", [False, True])
@pytest.mark.parametrize("method", ["seed", "msra", "udp"])
def test_profiles_without_a_table_equal_the_table_path(monkeypatch, device, method, visibility):
    import heatmap_render.profiles as profiles

    rng = np.random.default_rng(5)
    keypoints = (rng.uniform(-0.2, 1.2, size=(3, 2, 7, 2)) * [40, 30]).astype(np.float32)
    keypoints = torch.from_numpy(keypoints).to(device)
    seen = None
    if visibility:
        seen = torch.from_numpy(rng.uniform(0, 1, size=(3, 2, 7)).astype(np.float32)).to(device)
    sigmas = np.linspace(1.1, 3.0, 7)
    tabled = render_heatmaps(keypoints, (30, 40), sigmas, method=method, visibility=seen)
    monkeypatch.setattr(profiles, "PLAN_MAX_ELEMENTS", 0)  # every configuration goes direct
    direct = render_heatmaps(keypoints, (30, 40), sigmas, method=method, visibility=seen)
    assert torch.equal(direct.weights, tabled.weights)
    if device.type == "cpu":
        assert torch.equal(direct.heatmaps, tabled.heatmaps)
    else:  # the direct path evaluates exp on the device; tables are built on the CPU
        torch.testing.assert_close(direct.heatmaps, tabled.heatmaps, rtol=0, atol=2.5e-7)


def test_a_huge_sigma_on_a_huge_heatmap_builds_no_table(device):
    clear_table_cache()
    keypoints = torch.tensor([[[2000.0, 1000.0]]], device=device)
    result = render_heatmaps(keypoints, (4096, 4096), 4000.0)
    assert table_cache_info()["entries"] == 0
    assert result.heatmaps[0, 0, 1000, 2000] == 1.0
