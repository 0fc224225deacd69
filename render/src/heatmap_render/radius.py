"""Box-sized Gaussians: CornerNet/CenterNet's ``gaussian_radius`` and the sigma it implies.

A box of ``(h, w)`` gets the largest radius ``r`` such that a box whose corners move by ``r``
still overlaps the original by ``min_overlap`` (IoU). Each of three cases (both corners inside,
both outside, one of each) is a quadratic ``a r^2 - b r + c = 0``:

    case 1: a = 1,             b = h + w,              c = w h (1 - o) / (1 + o)
    case 2: a = 4,             b = 2 (h + w),          c = (1 - o) w h
    case 3: a = 4 o,           b = -2 o (h + w),       c = (o - 1) w h

``variant="mmdet"`` solves them correctly, ``r_i = (b - sqrt(b^2 - 4 a c)) / (2 a)`` for cases 1
and 2 and ``(b + sqrt(...)) / (2 a)`` for case 3 (mmdet ``gaussian_target.gaussian_radius``).
``variant="centernet"`` is the formula CornerNet and CenterNet shipped and trained with,
``(b + sqrt(...)) / 2`` in all three cases; its radii are larger, and models trained with it
expect them. Both return the smallest of the three.

CenterNet then truncates the radius to an integer, draws a kernel of ``diameter = 2 r + 1`` and
uses ``sigma = diameter / 6``; CID (mmpose's ``DecoupledHeatmap``) uses ``sigma = r / 3`` of the
CenterNet roots, untruncated. :func:`sigma_from_box` gives either (``rule``), the per-instance
sigma that ``render_heatmaps(..., sigma=(B, N, 1))`` takes. Boxes are ``(h, w)`` in heatmap
pixels, as everywhere in this package (mmdet and CenterNet call the pair ``det_size`` in that
same order).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .errors import RenderArgumentError, RenderArgumentTypeError

__all__ = [
    "RADIUS_VARIANTS",
    "SIGMA_RULES",
    "gaussian_radius",
    "sigma_from_box",
]

RADIUS_VARIANTS = ("centernet", "mmdet")


def _check(box_hw: Any, min_overlap: Any, variant: str):
    """``(h, w, kind)``: the sides as float64 tensors and how to return them."""
    if variant not in RADIUS_VARIANTS:
        raise RenderArgumentError(
            "variant", f"expected one of {', '.join(RADIUS_VARIANTS)}, got {variant!r}"
        )
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, numbers.Real):
        raise RenderArgumentError(
            "min_overlap", f"expected a number in (0, 1), got {min_overlap!r}"
        )
    if not 0 < float(min_overlap) < 1:
        raise RenderArgumentError("min_overlap", f"must lie in (0, 1), got {min_overlap!r}")
    if isinstance(box_hw, torch.Tensor):
        kind, sides = "torch", box_hw
    else:
        kind = "numpy" if isinstance(box_hw, np.ndarray) else "python"
        try:
            sides = torch.from_numpy(np.array(box_hw, dtype=np.float64))
        except (TypeError, ValueError):
            raise RenderArgumentTypeError(
                "box_hw", f"expected (h, w) numbers or an array (..., 2), got {box_hw!r}"
            ) from None
    if sides.is_complex() or sides.ndim == 0 or sides.shape[-1] != 2:
        raise RenderArgumentError(
            "box_hw", f"expected shape (..., 2) of (h, w), got {tuple(sides.shape)}"
        )
    sides = sides.to(torch.float64)
    if not bool((torch.isfinite(sides) & (sides >= 0)).all()):
        raise RenderArgumentError("box_hw", "sides must be finite and >= 0")
    return sides[..., 0], sides[..., 1], kind, box_hw


def _radius(height: torch.Tensor, width: torch.Tensor, overlap: float, variant: str):
    total, area = height + width, height * width
    c1 = area * (1 - overlap) / (1 + overlap)
    sq1 = torch.sqrt(total**2 - 4 * c1)
    b2, c2 = 2 * total, (1 - overlap) * area
    sq2 = torch.sqrt(b2**2 - 16 * c2)
    a3, b3, c3 = 4 * overlap, -2 * overlap * total, (overlap - 1) * area
    sq3 = torch.sqrt(b3**2 - 4 * a3 * c3)
    if variant == "mmdet":
        radii = ((total - sq1) / 2, (b2 - sq2) / 8, (b3 + sq3) / (2 * a3))
    else:
        radii = ((total + sq1) / 2, (b2 + sq2) / 2, (b3 + sq3) / 2)
    return torch.minimum(torch.minimum(radii[0], radii[1]), radii[2])


def _returned(values: torch.Tensor, kind: str, like: Any):
    if kind == "torch":
        dtype = like.dtype if like.is_floating_point() else torch.float64
        return values.to(dtype)
    array = values.numpy()
    if kind == "python" and array.ndim == 0:
        return float(array)
    return array


def gaussian_radius(box_hw: Any, min_overlap: float = 0.7, *, variant: str = "centernet"):
    """The Gaussian radius of boxes, as CenterNet (``"centernet"``) or mmdet (``"mmdet"``) has it.

    Args:
        box_hw: ``(h, w)`` of one box, or boxes ``(..., 2)`` as (h, w); numpy, torch or numbers.
        min_overlap: the IoU a box with moved corners must keep, in ``(0, 1)``.
        variant: ``"centernet"`` (the original formula, which CenterNet trains with) or
            ``"mmdet"`` (the corrected roots).

    Returns:
        The radius, not truncated: shape ``(...)``; a torch tensor for a tensor (its float dtype,
        else float64), a float64 array for an array, a float for a pair of numbers.

    Raises:
        RenderArgumentError: naming ``box_hw``, ``min_overlap`` or ``variant``.
    """
    height, width, kind, like = _check(box_hw, min_overlap, variant)
    return _returned(_radius(height, width, float(min_overlap), variant), kind, like)


SIGMA_RULES = ("centernet", "cid")


def sigma_from_box(box_hw: Any, min_overlap: float = 0.7, *, variant: str = "centernet",
                   rule: str = "centernet"):
    """The per-instance sigma of boxes, by the rule a model was trained with.

    - ``rule="centernet"`` (CenterNet, CornerNet): the radius truncated to an integer, a kernel
      of ``2 r + 1`` pixels and ``sigma = (2 * max(0, int(r)) + 1) / 6``.
    - ``rule="cid"`` (mmpose's ``DecoupledHeatmap``, CID): ``sigma = r / 3``, not truncated, with
      mmpose's ``min_overlap=0.7`` and its (CenterNet) roots; pass the boxes in heatmap pixels.

    Args: as :func:`gaussian_radius`, and ``rule``.

    Returns:
        Sigma in the boxes' pixels, shaped and typed as :func:`gaussian_radius` returns: the
        per-instance sigma ``render_heatmaps(..., sigma=(B, N, 1))`` takes (``[..., None]``).

    Raises:
        RenderArgumentError: naming ``box_hw``, ``min_overlap``, ``variant`` or ``rule``.
    """
    if rule not in SIGMA_RULES:
        raise RenderArgumentError("rule", f"expected one of {', '.join(SIGMA_RULES)}, got {rule!r}")
    height, width, kind, like = _check(box_hw, min_overlap, variant)
    radius = _radius(height, width, float(min_overlap), variant)
    if rule == "cid":
        return _returned(radius / 3, kind, like)
    return _returned((2 * torch.floor(radius).clamp_(min=0) + 1) / 6, kind, like)
