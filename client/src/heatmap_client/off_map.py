"""A warning when most keypoints a batch asked to draw landed off the heatmap.

Keypoints in image pixels rendered with ``coords="heatmap"`` (or with the wrong ``input_size``)
give targets that are almost all zeros, with weight 0 where the keypoint missed: a render that
succeeds and trains nothing. The renderer's own weights say which drawn keypoints missed, so the
check costs a comparison or two per batch; each client (and so each collate) warns once.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["OffMapCheck", "OffMapWarning"]


class OffMapWarning(UserWarning):
    """Most keypoints a batch asked to draw landed off the heatmap: its targets are mostly empty.
    ``coords`` and ``input_size`` probably do not describe the keypoints."""


def _hint(options: Any) -> str:
    if options.coords == "heatmap":
        return ("keypoints in image pixels? pass coords='pixel', input_size=(H, W) of the image "
                "they are pixels of")
    if options.coords == "pixel":
        return f"is input_size={options.input_size} the (H, W) of the image the keypoints are in?"
    return f"coords={options.coords!r} keypoints lie in [-1, 1]"


def _array(values: Any) -> np.ndarray:
    detach = getattr(values, "detach", None)
    if detach is not None:
        values = detach().cpu()
    return np.asarray(values)


class OffMapCheck:
    """Looks at each result's weights until it has warned once (then costs nothing)."""

    __slots__ = ("warned",)

    def __init__(self) -> None:
        self.warned = False

    def __call__(self, result: Any, options: Any, visibility: Any) -> None:
        if self.warned:
            return
        weights = _array(result.weights)
        missed = weights == 0
        if visibility is None:
            drawn = weights.size
        else:
            asked = _array(visibility) >= 0.5
            drawn = int(np.count_nonzero(asked))
            missed &= asked
        off = int(np.count_nonzero(missed))
        if drawn == 0 or 2 * off <= drawn:
            return
        self.warned = True
        height, width = options.size
        warnings.warn(OffMapWarning(
            f"{off} of the {drawn} keypoints this batch asked to draw landed off the "
            f"{height}x{width} heatmap (coords={options.coords!r}): their targets are empty "
            f"and their weights 0; {_hint(options)} (warned once per client)"
        ), stacklevel=6)  # the caller of render(): past this, the check, render_with
