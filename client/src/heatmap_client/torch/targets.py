"""What ``HeatmapCollate`` adds to a batch, by kind: dense heatmaps, separable heatmaps or SimCC
labels. The kind is chosen once, when the collate is made; each renders a batch with one call of
the renderer's options-taking methods (``render_with``, ``render_profiles_with``,
``render_simcc_with``), which the clients and the local renderer share."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..options import RenderOptions, SimccOptions
from .separable import SeparableHeatmaps, packed_size

__all__ = ["DenseTargets", "SeparableTargets", "SimccTargets"]

# mmpose's own batch names for SimCC targets (RTMPose's loss reads them).
SIMCC_KEYS = ("keypoint_x_labels", "keypoint_y_labels", "keypoint_weights")

Named = list[tuple[str, Any]]


class DenseTargets:
    """``(B, K, H, W)`` heatmaps and their weights, as tensors."""

    def __init__(self, options: RenderOptions, keep_dtype: bool, keys: tuple[str, str]):
        self.options, self.keep_dtype, self.keys = options, keep_dtype, keys

    def render(self, renderer: Any, keypoints: np.ndarray, visibility: np.ndarray | None,
               sigma: np.ndarray | None, timeout: float | None,
               share: list[torch.Tensor]) -> tuple[Named, dict]:
        result = renderer.render_with(self.options, keypoints, visibility=visibility,
                                      sigma=sigma, timeout=timeout, keep_dtype=self.keep_dtype)
        if hasattr(result, "to_torch"):
            heatmaps, weights = result.to_torch()
        else:  # a renderer of the caller's own: any result with heatmaps and weights
            heatmaps, weights = torch.as_tensor(result.heatmaps), torch.as_tensor(result.weights)
        return list(zip(self.keys, (heatmaps, weights))), {}


class SeparableTargets:
    """A :class:`SeparableHeatmaps` (the targets' distinct profiles and an index each) and the
    weights, in one storage with the batch's keypoints and visibility: a batch pays per storage
    it moves between processes (a shared-memory segment and a file descriptor each way), so the
    targets add none to what the batch moved already."""

    def __init__(self, options: RenderOptions, keys: tuple[str, str]):
        self.options, self.keys = options, keys

    def render(self, renderer: Any, keypoints: np.ndarray, visibility: np.ndarray | None,
               sigma: np.ndarray | None, timeout: float | None,
               share: list[torch.Tensor]) -> tuple[Named, dict]:
        result = renderer.render_profiles_with(self.options, keypoints, visibility=visibility,
                                               sigma=sigma, timeout=timeout)
        row_table, col_table, row_index, col_index = (torch.as_tensor(part)
                                                      for part in result.tables)
        weights = torch.as_tensor(result.weights)
        size = packed_size(tuple(row_index.shape), (row_table.shape[1], col_table.shape[1]),
                           row_table.shape[0], col_table.shape[0])
        parts = [weights, *share]
        flat = torch.empty(size + sum(part.numel() for part in parts), dtype=torch.float32)
        heatmaps = SeparableHeatmaps.from_table(row_table, row_index, col_table, col_index,
                                                dtype=self.options.dtype, out=flat[:size])
        views, start = [], size
        for part in parts:
            views.append(flat[start: start + part.numel()].view(part.shape).copy_(part))
            start += part.numel()
        replaced = {id(original): view for original, view in zip(share, views[1:])}
        return list(zip(self.keys, (heatmaps, views[0]))), replaced


class SimccTargets:
    """mmpose's SimCC labels ``keypoint_x_labels`` ``(B, K, Wx)`` and ``keypoint_y_labels``
    ``(B, K, Hy)``, and the weights."""

    def __init__(self, options: SimccOptions, weights_key: str):
        self.options = options
        self.keys = (*SIMCC_KEYS[:2], weights_key)

    def render(self, renderer: Any, keypoints: np.ndarray, visibility: np.ndarray | None,
               sigma: np.ndarray | None, timeout: float | None,
               share: list[torch.Tensor]) -> tuple[Named, dict]:
        result = renderer.render_simcc_with(self.options, keypoints, visibility=visibility,
                                            timeout=timeout)
        values = (result.x_labels, result.y_labels, result.weights)
        return list(zip(self.keys, (torch.as_tensor(value) for value in values))), {}
