"""Drop-in mmpose codecs: mmpose's own classes with ``encode()`` as one vectorised render.

``type='MSRAHeatmap'`` -> ``type='FastMSRAHeatmap'`` (likewise ``UDPHeatmap``, ``SimCCLabel``) in a
config is the whole migration: each class subclasses mmpose's, takes the same constructor
arguments, keeps its ``decode()`` and mapping tables, and returns from ``encode()`` the same keys,
shapes and dtypes, with values equal to mmpose's within a few float32 ulps (see ``targets.py``),
rendered for all N x K keypoints at once instead of mmpose's per-keypoint loop
(``mmpose/codecs/utils/gaussian_heatmap.py``).

They run where mmpose's encoders run, in the data loader's workers, one sample at a time; to
take the work off the workers altogether, see ``preprocessor.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mmpose.codecs import MSRAHeatmap, SimCCLabel, UDPHeatmap
from mmpose.registry import KEYPOINT_CODECS

from ..errors import RenderArgumentError
from .targets import TargetSpec, render_targets, target_spec

__all__ = [
    "FastMSRAHeatmap",
    "FastSimCCLabel",
    "FastUDPHeatmap",
    "encode_numpy",
]


def encode_numpy(spec: TargetSpec, keypoints: Any, keypoints_visible: Any) -> dict[str, Any]:
    """One sample's mmpose ``encode()``: numpy in, numpy out.

    Args:
        spec: the codec's :class:`TargetSpec`.
        keypoints: ``(N, K, 2)`` (x, y) in input pixels, as mmpose passes them (float32 from its
            pipeline; float64 is computed in float64, as mmpose does).
        keypoints_visible: ``(N, K)``, or None for all visible (float32 ones, as mmpose).

    Returns:
        heatmaps: ``{"heatmaps": (K, H, W) float32, "keypoint_weights": (N, K)}``; SimCC:
        ``{"keypoint_x_labels": (N, K, Wx), "keypoint_y_labels": (N, K, Hy),
        "keypoint_weights": (N, K)}``, labels float32; weights in ``keypoints_visible``'s dtype.

    Raises:
        RenderArgumentError: naming ``keypoints`` or ``keypoints_visible`` (mmpose asserts).
    """
    points = np.asarray(keypoints)
    if points.ndim != 3:
        raise RenderArgumentError(
            "keypoints", f"expected (N, K, 2) (x, y), got shape {points.shape}"
        )
    if keypoints_visible is None:
        keypoints_visible = np.ones(points.shape[:2], dtype=np.float32)
    visible = np.asarray(keypoints_visible)
    if visible.dtype.kind not in "biuf":
        raise RenderArgumentError(
            "keypoints_visible", f"expected a numeric array, got dtype {visible.dtype}"
        )
    # from_numpy shares the arrays: the renderer reads them and writes nothing back.
    encoded = render_targets(
        spec,
        torch.from_numpy(np.ascontiguousarray(points))[None],
        torch.from_numpy(np.ascontiguousarray(visible))[None],
    )
    return {key: value[0].numpy() for key, value in encoded.items()}


class _VectorisedEncode:
    """``encode()`` as one render of the codec's :class:`TargetSpec`, set up once with the codec;
    mmpose's own ``encode()`` where the codec has none (placed before mmpose's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._spec = self._vectorised_spec()

    def _vectorised_spec(self) -> TargetSpec | None:
        return target_spec(self)

    def encode(self, keypoints: np.ndarray,
               keypoints_visible: np.ndarray | None = None) -> dict:
        if self._spec is None:
            return super().encode(keypoints, keypoints_visible)
        return encode_numpy(self._spec, keypoints, keypoints_visible)


@KEYPOINT_CODECS.register_module()
class FastMSRAHeatmap(_VectorisedEncode, MSRAHeatmap):
    """mmpose's ``MSRAHeatmap`` (SimpleBaseline, HRNet; ``unbiased=True``: DARK), vectorised.

    Args: as ``MSRAHeatmap``: ``input_size`` ``(w, h)``, ``heatmap_size`` ``(W, H)``, ``sigma``,
    ``unbiased``, ``blur_kernel_size`` (decoding only).

    ``encode(keypoints (1, K, 2), keypoints_visible (1, K))`` returns ``heatmaps (K, H, W)``
    float32 and ``keypoint_weights (1, K)``; ``decode()`` is mmpose's.
    """


@KEYPOINT_CODECS.register_module()
class FastUDPHeatmap(_VectorisedEncode, UDPHeatmap):
    """mmpose's ``UDPHeatmap`` (UDP, RTMPose's heatmap variants), vectorised.

    Args: as ``UDPHeatmap``. ``heatmap_type='gaussian'`` (the default) is rendered here;
    ``'combined'`` (offset maps) runs mmpose's own encoder unchanged.

    ``encode(keypoints (1, K, 2), keypoints_visible (1, K))`` returns ``heatmaps (K, H, W)``
    float32 and ``keypoint_weights (1, K)``; ``decode()`` is mmpose's.
    """

    def _vectorised_spec(self) -> TargetSpec | None:
        return target_spec(self) if self.heatmap_type == "gaussian" else None


@KEYPOINT_CODECS.register_module()
class FastSimCCLabel(_VectorisedEncode, SimCCLabel):
    """mmpose's ``SimCCLabel`` (SimCC, RTMPose), vectorised over every instance and keypoint.

    Args: as ``SimCCLabel``: ``input_size`` ``(w, h)``, ``smoothing_type``, ``sigma`` (a number
    or ``(sigma_x, sigma_y)`` in bins), ``simcc_split_ratio``, ``label_smooth_weight``,
    ``normalize``, and the decoding options ``use_dark``, ``decode_visibility``,
    ``decode_beta``.

    ``encode(keypoints (N, K, 2), keypoints_visible (N, K))`` returns ``keypoint_x_labels
    (N, K, Wx)``, ``keypoint_y_labels (N, K, Hy)`` (float32) and ``keypoint_weights (N, K)``;
    ``decode()`` is mmpose's.
    """
