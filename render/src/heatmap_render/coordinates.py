"""Coordinates: keypoints in the caller's space converted to heatmap pixels (centres at integers).

- ``heatmap``: as given.
- ``pixel``: input-image pixels; divided by ``input / heatmap`` (``udp``: by
  ``(input - 1) / (heatmap - 1)``, corner pixel to corner pixel), mmpose's ratios.
- ``normalized``: the seed's ``0.5 * (x + 1) * W``: ``x = -1`` is the centre of pixel 0 and
  ``x = +1`` the centre of pixel ``W``, one past the last (so ``x -> -x`` maps ``u`` to ``W - u``,
  not to its mirror image ``W - 1 - u``).
- ``normalized_edges``: ``((x + 1) * W - 1) / 2``: ``-1`` the left edge of pixel 0, ``+1`` the right
  edge of the last pixel (torch's ``grid_sample(align_corners=False)``, DSNT): ``x -> -x`` is
  flipping the heatmap.

The arithmetic runs in the keypoints' precision, float32, as mmpose's does on float32 keypoints,
so that truncation edges fall exactly where theirs do.
"""

from __future__ import annotations

import functools

import torch

from .errors import RenderArgumentError
from .validate import RenderArgs

__all__ = ["coordinate_limit", "heatmap_coordinates"]


@functools.lru_cache(maxsize=256)
def _coordinate_scale(
    coords: str, method: str, size: tuple[int, int], input_size: tuple[int, int] | None,
    dtype: torch.dtype, device: torch.device,
) -> torch.Tensor:
    """The (x, y) factor of a coordinate space, as mmpose and the seed compute it."""
    height, width = size
    if coords in ("normalized", "normalized_edges"):
        ratio = [width, height]
    elif method == "udp":
        # UDP maps corner pixel to corner pixel: (input - 1) / (heatmap - 1).
        in_height, in_width = input_size
        ratio = [(in_width - 1) / (width - 1), (in_height - 1) / (height - 1)]
    else:
        in_height, in_width = input_size
        ratio = [in_width / width, in_height / height]
    # mmpose computes the ratio in float64 and divides float32 keypoints by its float32 rounding.
    return torch.tensor(ratio, dtype=torch.float64).to(dtype).to(device)


def coordinate_limit(size: tuple[int, int]) -> float:
    """A bound on heatmap coordinates beyond which every method leaves a keypoint outside.

    Sigma is at most ``max(H, W)``, so a window reaches at most ``3 sigma + 2`` pixels past an
    edge, ``4 max(H, W) + 2`` from the origin; anything farther is outside for every method,
    clamped or not.
    """
    return float(8 * max(size) + 16)


def heatmap_coordinates(args: RenderArgs) -> torch.Tensor:
    """Keypoints ``(B, N, K, 2)`` converted to heatmap pixels (pixel centres at integers).

    Coordinates farther than :func:`coordinate_limit` from the origin are clamped to it: they are
    off the heatmap either way, and finite keypoints near the float range (3.4e38 in float32)
    would otherwise scale to infinity and later to ``inf - inf = NaN``.
    """
    points = args.keypoints
    limit = coordinate_limit(args.size)
    if args.coords == "heatmap":
        return points.clamp(-limit, limit)
    if args.coords == "pixel" and args.input_size is None:
        raise RenderArgumentError("input_size", "required when coords='pixel'")
    scale = _coordinate_scale(
        args.coords, args.method, args.size, args.input_size, points.dtype, points.device
    )
    if args.coords == "normalized":
        # The seed's convention: x in [-1, 1], -1 the centre of pixel 0, 0.5 * (x + 1) * W.
        converted = (points + 1) * 0.5 * scale
    elif args.coords == "normalized_edges":
        # -1 the left edge of pixel 0 (u = -0.5), +1 the right edge of pixel W - 1 (u = W - 0.5).
        converted = ((points + 1) * scale - 1) * 0.5
    else:
        converted = points / scale
    # Finite in, so the only non-finite values are overflows to +-inf, which clamp to +-limit.
    return converted.clamp_(-limit, limit)
