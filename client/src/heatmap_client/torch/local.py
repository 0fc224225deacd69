"""The in-process renderer behind ``HeatmapCollate("local", ...)``, for loaders with cores to spare.

It has the client's render methods (the same typed signatures, from the same code) and gives the
same values the service would: the service runs this renderer, which computes on float32
keypoints whatever the caller passes, as they travel on the wire; so a loader switches between the
two by its first argument alone. It needs the ``heatmap-render`` distribution
(``pip install 'heatmap-client[torch]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import heatmap_render

from .._render_api import RenderCalls
from ..options import RenderOptions, SimccOptions
from ..wire.dtypes import dequantize, quantize
from ..wire.vocabulary import ArgumentError

__all__ = ["LocalRenderer", "LocalResult"]


@dataclass
class LocalResult:
    """One batch rendered in-process: torch tensors, shaped as the client's results.

    Attributes:
        heatmaps: ``(B, K, H, W)`` (a :meth:`LocalRenderer.render` result), else None.
        tables: ``(row_table, col_table, row_index, col_index)``: the profiles of a
            :meth:`LocalRenderer.render_profiles` result as distinct ones and an index each (see
            ``heatmap_render.ProfileTable``), else None; ``rows`` ``(B, N, K, H)`` and ``cols``
            ``(B, N, K, W)`` gather them.
        x_labels, y_labels: SimCC labels (a :meth:`LocalRenderer.render_simcc` result), else None.
        weights: float32 ``(B, K)`` or ``(B, N, K)``.
    """

    weights: torch.Tensor
    heatmaps: torch.Tensor | None = None
    tables: tuple[torch.Tensor, ...] | None = None
    x_labels: torch.Tensor | None = None
    y_labels: torch.Tensor | None = None

    @property
    def rows(self) -> torch.Tensor | None:
        return None if self.tables is None else _gather(self.tables[0], self.tables[2])

    @property
    def cols(self) -> torch.Tensor | None:
        return None if self.tables is None else _gather(self.tables[1], self.tables[3])

    def to_torch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(heatmaps, weights)``, as ``RenderResult.to_torch`` gives them."""
        return self.heatmaps, self.weights


class LocalRenderer(RenderCalls[LocalResult, LocalResult, LocalResult]):
    """Renders in this process with :mod:`heatmap_render`, on the CPU.

    Its ``render``, ``render_profiles`` and ``render_simcc`` take the client's arguments (checked
    the same way, by the same options types); ``codec`` and ``timeout`` have nothing to do here:
    every codec is lossless, and nothing travels. ``dtype`` is rounded to as the wire rounds it.
    """

    def __repr__(self) -> str:
        return "LocalRenderer()"

    def render_with(self, options: RenderOptions, keypoints: Any, *, visibility: Any = None,
                    sigma: Any = None, timeout: float | None = None, keep_dtype: bool = False,
                    out: Any = None) -> LocalResult:
        del timeout, out
        wire = options.wire
        result = heatmap_render.render_heatmaps(
            keypoints, options.size, _sigma(options, sigma),
            method=options.method, coords=options.coords, input_size=options.input_size,
            visibility=visibility, dtype=wire.render_as,  # fixed point: float32
        )
        heatmaps = result.heatmaps
        if wire.scale is not None:
            stored = quantize(heatmaps.numpy(), wire)  # the fixed point the server would send
            values = stored if keep_dtype else dequantize(stored, wire)
            heatmaps = torch.from_numpy(np.ascontiguousarray(values))
        elif not keep_dtype and heatmaps.dtype != torch.float32:
            heatmaps = heatmaps.float()
        return self._checked(LocalResult(weights=result.weights, heatmaps=heatmaps), options,
                             visibility)

    def render_profiles_with(self, options: RenderOptions, keypoints: Any, *,
                             visibility: Any = None, sigma: Any = None,
                             timeout: float | None = None) -> LocalResult:
        del timeout
        args = heatmap_render.check_render_args(
            keypoints, options.size, _sigma(options, sigma), method=options.method,
            coords=options.coords, input_size=options.input_size, visibility=visibility,
            dtype=torch.float32,
        )
        table = heatmap_render.profile_table_from_args(args)
        tables = (table.row_table, table.col_table, table.row_index, table.col_index)
        return self._checked(LocalResult(weights=table.weights, tables=tables), options,
                             visibility)

    def render_simcc_with(self, options: SimccOptions, keypoints: Any, *,
                          visibility: Any = None, timeout: float | None = None) -> LocalResult:
        del timeout
        if options.dtype != "float32":
            raise ArgumentError("dtype", f"the local renderer gives float32 labels, got "
                                         f"{options.dtype!r}")
        labels = heatmap_render.render_simcc(
            keypoints, options.input_size, options.sigma,
            split_ratio=options.split_ratio, smoothing=options.smoothing,
            label_smooth_weight=options.label_smooth_weight, normalize=options.normalize,
            visibility=visibility,
        )
        return LocalResult(
            weights=labels.weights, x_labels=labels.x_labels, y_labels=labels.y_labels
        )


def _gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])


def _sigma(options: RenderOptions, per_batch: Any) -> Any:
    """The sigma to render with: the options' shared one, or this batch's own array."""
    if per_batch is not None:
        if options.sigma is not None:
            raise ArgumentError(
                "sigma", "give either a shared sigma or a per-batch array, not both"
            )
        return per_batch
    if options.sigma is None:
        raise ArgumentError("sigma", "required: a number, (K,), or an array per batch")
    return options.sigma
