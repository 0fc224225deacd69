"""Sigma checking: one value, one per keypoint, or one per sample, instance and keypoint.

``sigma`` broadcasts against the keypoints' shape without its last axis by numpy's rules, so for
``(B, N, K, 2)`` keypoints a scalar, ``(K,)`` (per keypoint), ``(B, N, 1)`` (per instance, CID's
or CenterNet's box-sized Gaussians), ``(B, 1, 1)`` (per sample) and ``(B, N, K)`` all work; for
``(B, K, 2)`` keypoints ``(K,)``, ``(B, 1)`` and ``(B, K)``.

The floor. Every method evaluates ``exp(-d^2 / (2 sigma^2))`` in float64 whatever the keypoints'
dtype; ``2 sigma^2`` underflows to 0 below sigma = 1.6e-162 and the peak becomes ``0 / 0``. Were
the exponent evaluated in float32 it would underflow below 2.6e-23, and SimCC's normalisation
``1 / (sigma sqrt(2 pi))`` overflows float32 below 1.2e-39. :data:`SIGMA_MIN` = 1e-20 sits above
all three with a margin of at least 100x and far below any sigma a target is drawn with.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from .errors import RenderArgumentError
from .inputs import as_tensor

__all__ = [
    "SHARED_MAX_KEYPOINTS",
    "SIGMA_MIN",
    "SigmaSpec",
    "check_sigma",
    "check_sigma_values",
    "max_sigma",
]

SIGMA_MIN = 1e-20

# One sigma per keypoint is kept as a shared tuple (a cached plan's key, and what coalescing
# compares) up to this many keypoints: whole-body sets have 133. Longer ones are per element, whose
# plans are keyed by their few distinct values, so that a large request cannot make a key as large
# as itself.
SHARED_MAX_KEYPOINTS = 1024


class SigmaSpec:
    """A checked sigma: shared by every sample (``shared``) or one per element (``per_element``).

    Attributes:
        shared: one value, or one per keypoint; ``()`` when ``per_element`` is set.
        per_element: float64 ``(B, N, K)`` on the keypoints' device, or None.
    """

    __slots__ = ("per_element", "shared")

    def __init__(self, shared: tuple[float, ...], per_element: torch.Tensor | None):
        self.shared = shared
        self.per_element = per_element


def check_sigma_values(values: Any, limit: float, what: str = "the heatmap's larger side"):
    """Raises ``RenderArgumentError("sigma")`` unless every value is finite, >= the floor and
    <= ``limit``. ``values``: a float64 CPU tensor or a sequence of floats."""
    if isinstance(values, torch.Tensor):
        if values.numel() == 0:
            return
        lowest, highest = float(values.min()), float(values.max())
        if math.isfinite(lowest) and math.isfinite(highest) and SIGMA_MIN <= lowest \
                and highest <= limit:
            return  # the common case in two reductions; otherwise find the culprit below
        values = values.reshape(-1).tolist()
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise RenderArgumentError("sigma", f"must be a finite number > 0, got {value!r}")
    for value in values:
        if value < SIGMA_MIN:
            raise RenderArgumentError(
                "sigma",
                f"{value!r} is below {SIGMA_MIN:g}, the smallest sigma whose Gaussian is finite",
            )
    for value in values:
        if value > limit:
            # A Gaussian wider than the target is no longer a keypoint target; the bound also
            # keeps the cached kernel tables (rows per possible centre) proportional to it.
            raise RenderArgumentError("sigma", f"{value!r} exceeds {what} ({limit:g})")


def check_sigma(
    sigma: Any, points: torch.Tensor, has_instances: bool, size: tuple[int, int]
) -> SigmaSpec:
    """Checks ``sigma`` against keypoints ``points`` ``(B, N, K, 2)`` and a heatmap of ``size``.

    Returns a :class:`SigmaSpec`: a scalar stays one shared value and ``(K,)`` one per keypoint;
    a larger shape whose values do not vary across samples and instances becomes one shared value
    (all equal) or one per keypoint, so that such requests still share cached kernel tables and
    coalesce; anything else is per element.
    """
    if isinstance(sigma, bool):
        raise RenderArgumentError(
            "sigma", f"expected a number or one number per keypoint, got {sigma!r}"
        )
    if isinstance(sigma, numbers.Real):
        value = float(sigma)  # the common case: no tensor at all
        check_sigma_values((value,), float(max(size)))
        return SigmaSpec((value,), None)
    else:
        tensor = as_tensor("sigma", sigma).detach().to("cpu", torch.float64)
    batch, instances, num_keypoints = points.shape[:3]
    target = (batch, instances, num_keypoints) if has_instances else (batch, num_keypoints)
    try:
        fits = torch.broadcast_shapes(tuple(tensor.shape), target) == target
    except RuntimeError:
        fits = False
    if not fits:
        raise RenderArgumentError(
            "sigma",
            f"expected a scalar, one value per keypoint ({num_keypoints}) or an array that "
            f"broadcasts against the keypoints' shape without its last axis {target}, "
            f"got shape {tuple(tensor.shape)}",
        )
    check_sigma_values(tensor, float(max(size)))
    if tensor.ndim == 0:
        return SigmaSpec((float(tensor),), None)
    if tensor.ndim == 1 and num_keypoints <= SHARED_MAX_KEYPOINTS:
        return SigmaSpec(tuple(tensor.tolist()), None)
    full = tensor.expand(target)
    if not has_instances:
        full = full.unsqueeze(1)
    if full.numel() == 0:
        # Nothing is drawn (B, N or K is 0), so any one shared value renders the same; an empty
        # array (a (0, K) sigma for B = 0) has none of its own, and () would mean none for K > 0.
        return SigmaSpec((float(tensor.reshape(-1)[0]),) if tensor.numel() else (1.0,), None)
    first = full[:1, :1]
    if bool((full == first).all()):
        values = first.reshape(-1)
        if bool((values == values[0]).all()):
            return SigmaSpec((float(values[0]),), None)
        if num_keypoints <= SHARED_MAX_KEYPOINTS:
            return SigmaSpec(tuple(values.tolist()), None)
    return SigmaSpec((), full.contiguous().to(points.device))


def max_sigma(shared: tuple[float, ...], per_element: torch.Tensor | None) -> float:
    """The largest sigma of a checked spec (1.0 when there is none, as for K = 0)."""
    if per_element is not None:
        return float(per_element.max()) if per_element.numel() else 1.0
    return max(shared, default=1.0)

