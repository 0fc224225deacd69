"""A warning when most keypoints a batch asked to draw landed off the heatmap.

Keypoints in image pixels rendered with ``coords="heatmap"`` (or with the wrong ``input_size``)
give targets that are almost all zeros, with weight 0 where the keypoint missed: a render that
succeeds and trains nothing. The renderer's own weights say which drawn keypoints missed, so the
check costs a comparison or two per batch it looks at; each client (and so each collate) warns
once.
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


# The first batches are all looked at (a wrong coords or input_size shows in the first), later
# ones one in EVERY: a systematic mistake is still caught, and a long run pays almost nothing.
FIRST_BATCHES = 16
EVERY = 16


class OffMapCheck:
    """Looks at results' weights until it has warned once (then costs nothing)."""

    __slots__ = ("seen", "warned")

    def __init__(self) -> None:
        self.warned = False
        self.seen = 0

    def __call__(self, result: Any, options: Any, visibility: Any) -> None:
        self.seen += 1
        if self.warned or (self.seen > FIRST_BATCHES and self.seen % EVERY):
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
