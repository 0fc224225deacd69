"""The kernel-table cache: bounded, clearable, and invisible in the results."""

from __future__ import annotations

import pytest
import torch

from heatmap_server.render import clear_table_cache, render_heatmaps, table_cache_info

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


def test_tables_are_per_sigma_set_and_size(device):
    keypoints = torch.from_numpy(random_keypoints(9, (1, 3), (24, 20))).to(device)
    clear_table_cache()
    render_heatmaps(keypoints, (24, 20), 2.0)
    entries = table_cache_info()["entries"]
    render_heatmaps(keypoints, (24, 20), 3.0)  # another sigma: other tables
    render_heatmaps(keypoints, (25, 20), 2.0)  # another height: another row table
    assert table_cache_info()["entries"] > entries
