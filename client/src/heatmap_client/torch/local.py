"""The in-process renderer behind ``HeatmapCollate("local", ...)``, for loaders with cores to spare.

It has the client's ``render`` and ``render_profiles`` signatures and gives the same values the
service would (the service runs this renderer), so a loader switches between the two by its first
argument alone. It needs the ``heatmap-server`` distribution, imported on first use only: the
client itself never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..options import RenderOptions, SimccOptions, split_sigma
from ..wire.dtypes import dequantize, dtype_by_name, quantize

__all__ = ["LocalRenderer", "LocalResult"]


def _renderer():
    try:
        from heatmap_server import render
    except ImportError as error:
        raise ImportError(
            "HeatmapCollate('local', ...) renders in this process and needs the renderer of the "
            "package heatmap-server: pip install heatmap-server (or pass a server's target)"
            f" [{error}]"
        ) from None
    return render


@dataclass
class LocalResult:
    """One batch rendered in-process: torch tensors, shaped as the client's results.

    Attributes:
        heatmaps: ``(B, K, H, W)`` (a :meth:`LocalRenderer.render` result), else None.
        rows: ``(B, N, K, H)`` float32 (a :meth:`LocalRenderer.render_profiles` result), else None.
        cols: ``(B, N, K, W)`` float32, likewise.
        weights: float32 ``(B, K)`` or ``(B, N, K)``.
    """

    weights: torch.Tensor
    heatmaps: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    x_labels: torch.Tensor | None = None
    y_labels: torch.Tensor | None = None

    def to_torch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(heatmaps, weights)``, as ``RenderResult.to_torch`` gives them."""
        return self.heatmaps, self.weights


class LocalRenderer:
    """Renders on the CPU of this process with ``heatmap_server.render``.

    Raises:
        ImportError: naming the package ``heatmap-server`` when it is not installed.
    """

    def __init__(self):
        _renderer()  # fail where the loader is built, not in its first worker

    def __repr__(self) -> str:
        return "LocalRenderer()"

    def render(
        self,
        keypoints: Any,
        *,
        size: tuple[int, int],
        sigma: Any,
        method: str = "msra",
        coords: str = "heatmap",
        input_size: tuple[int, int] | None = None,
        visibility: Any = None,
        dtype: str = "float32",
        codec: str = "auto",
        timeout: float | None = None,
        keep_dtype: bool = False,
    ) -> LocalResult:
        """Dense heatmaps, with the values and dtypes :meth:`HeatmapClient.render` would return.

        The options are checked as the client checks them (:class:`RenderOptions`); ``codec``
        and ``timeout`` have nothing else to do here: every codec is lossless, and nothing
        travels. ``dtype`` is rounded to as the wire would round it.
        """
        del timeout
        RenderOptions(size=size, sigma=split_sigma(sigma)[0], method=method, coords=coords,
                      input_size=input_size, dtype=dtype, codec=codec)
        wire = dtype_by_name(dtype)
        render = _renderer()
        float_dtype = getattr(torch, wire.render_as)  # fixed point renders in float32
        result = render.render_heatmaps(
            keypoints, size, sigma, method=method, coords=coords, input_size=input_size,
            visibility=visibility, dtype=float_dtype,
        )
        heatmaps = result.heatmaps
        if wire.scale is not None:
            stored = quantize(heatmaps.numpy(), wire)  # the fixed point the server would send
            values = stored if keep_dtype else dequantize(stored, wire)
            heatmaps = torch.from_numpy(np.ascontiguousarray(values))
        elif not keep_dtype and heatmaps.dtype != torch.float32:
            heatmaps = heatmaps.float()
        return LocalResult(weights=result.weights, heatmaps=heatmaps)

    def render_profiles(
        self,
        keypoints: Any,
        *,
        size: tuple[int, int],
        sigma: Any,
        method: str = "msra",
        coords: str = "heatmap",
        input_size: tuple[int, int] | None = None,
        visibility: Any = None,
        timeout: float | None = None,
    ) -> LocalResult:
        """The profiles ``rows (B, N, K, H)`` and ``cols (B, N, K, W)`` and the weights."""
        del timeout
        RenderOptions(size=size, sigma=split_sigma(sigma)[0], method=method, coords=coords,
                      input_size=input_size)
        profiles = _renderer().render_profiles(
            keypoints, size, sigma, method=method, coords=coords, input_size=input_size,
            visibility=visibility,
        )
        return LocalResult(weights=profiles.weights, rows=profiles.rows, cols=profiles.cols)

    def render_simcc(
        self,
        keypoints: Any,
        input_size: tuple[int, int],
        sigma: Any,
        *,
        split_ratio: float = 2.0,
        smoothing: str = "gaussian",
        label_smooth_weight: float = 0.0,
        normalize: bool = True,
        visibility: Any = None,
        dtype: str = "float32",
        codec: str = "zstd",
        timeout: float | None = None,
    ) -> LocalResult:
        """SimCC labels ``x_labels (B, [N,] K, Wx)``, ``y_labels (B, [N,] K, Hy)`` and weights,
        float32 as :meth:`HeatmapClient.render_simcc` returns them for ``dtype="float32"``."""
        del timeout
        options = SimccOptions(
            input_size=input_size, sigma=sigma, split_ratio=split_ratio, smoothing=smoothing,
            label_smooth_weight=label_smooth_weight, normalize=normalize, dtype=dtype,
            codec=codec,
        )
        if options.dtype != "float32":
            raise ValueError(f"dtype: the local renderer gives float32 labels, got {dtype!r}")
        labels = _renderer().render_simcc(
            keypoints, options.input_size, options.sigma, split_ratio=options.split_ratio,
            smoothing=options.smoothing, label_smooth_weight=options.label_smooth_weight,
            normalize=options.normalize, visibility=visibility,
        )
        return LocalResult(
            weights=labels.weights, x_labels=labels.x_labels, y_labels=labels.y_labels
        )
