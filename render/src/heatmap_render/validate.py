"""Checked heatmap arguments: :class:`RenderArgs`, and how the batcher joins and splits them.

Every bad input becomes a :class:`RenderArgumentError` naming its argument (see ``inputs.py``).
A :class:`RenderArgs` is split into what is per sample (tensors whose first axis is B: keypoints,
visibility, per-element sigma) and everything else (:attr:`RenderArgs.coalescing_key`), so that
requests with equal keys render as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .batch import PerSampleFields, concatenate_render_args
from .errors import RenderArgumentError
from .inputs import check_dtype, check_hw, check_keypoints, check_visibility, drawn_finite
from .sigma import check_sigma

__all__ = [
    "COORDS",
    "METHODS",
    "RenderArgs",
    "check_render_args",
    "concatenate_render_args",
]

METHODS = ("seed", "msra", "udp", "dark")
COORDS = ("heatmap", "pixel", "normalized", "normalized_edges")
@dataclass(frozen=True)
class RenderArgs(PerSampleFields):
    """Checked, normalised renderer arguments.

    Per sample (first axis B, so that jobs concatenate and slice along it):

    - ``keypoints``: always ``(B, N, K, 2)`` (an instance axis of 1 is added to ``(B, K, 2)`` input
      and ``has_instances`` remembers that), float32 or float64;
    - ``visibility``: ``(B, N, K)`` float32 on the same device, or None when every keypoint is
      visible;
    - ``sample_sigmas``: ``(B, N, K)`` float64 on the same device when sigma varies across samples
      or instances, else None.

    Shared: ``sigmas`` is one value or one per keypoint (``()`` when ``sample_sigmas`` is set);
    ``size`` and ``input_size`` are ``(H, W)``. ``take(rows)``, ``to(device)`` and
    :func:`concatenate_render_args` handle every per-sample field.
    """

    keypoints: torch.Tensor
    visibility: torch.Tensor | None
    has_instances: bool
    size: tuple[int, int]
    sigmas: tuple[float, ...]
    method: str
    coords: str
    input_size: tuple[int, int] | None
    dtype: torch.dtype
    sample_sigmas: torch.Tensor | None = None

    PER_SAMPLE_FIELDS: ClassVar[tuple[str, ...]] = ("keypoints", "visibility", "sample_sigmas")

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[2]

    @property
    def coalescing_key(self) -> tuple:
        """Everything that is not per sample, hashable: jobs with equal keys concatenate along B."""
        _, instances, num_keypoints, _ = self.keypoints.shape
        return (
            self.size, self.sigmas, self.sample_sigmas is not None, self.method, self.coords,
            self.input_size, self.dtype, self.keypoints.dtype, self.has_instances, instances,
            num_keypoints,
        )


def check_render_args(
    keypoints: Any,
    size: Any,
    sigma: Any,
    *,
    method: str,
    coords: str,
    input_size: Any,
    visibility: Any,
    dtype: Any,
) -> RenderArgs:
    """Checks and normalises the arguments of :func:`render_heatmaps` and :func:`render_profiles`.

    Args: as :func:`render_heatmaps`; ``sigma`` broadcasts against ``keypoints.shape[:-1]``.

    Raises:
        RenderArgumentError: a ``ValueError`` whose ``.argument`` names the argument, for any value
            the renderer cannot honour exactly.
        RenderArgumentTypeError: also a ``TypeError``, for arguments that are not numbers or
            arrays at all.
    """
    if method not in METHODS:
        raise RenderArgumentError("method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    if coords not in COORDS:
        raise RenderArgumentError("coords", f"expected one of {', '.join(COORDS)}, got {coords!r}")
    points, has_instances = check_keypoints(keypoints)
    checked_size = check_hw("size", size)
    checked_input: tuple[int, int] | None = None
    if coords == "pixel":
        if input_size is None:
            raise RenderArgumentError("input_size", "required when coords='pixel'")
        checked_input = check_hw("input_size", input_size)
        if method == "udp" and (min(checked_size) < 2 or min(checked_input) < 2):
            # UDP scales by (input - 1) / (heatmap - 1): undefined for a side of 1.
            raise RenderArgumentError(
                "size", "method='udp' with coords='pixel' needs sides of at least 2"
            )
    elif input_size is not None:
        raise RenderArgumentError(
            "input_size", f"only used with coords='pixel', got coords={coords!r}"
        )
    spec = check_sigma(sigma, points, has_instances, checked_size)
    vis = check_visibility(visibility, points, has_instances)
    points = drawn_finite(points, vis)
    return RenderArgs(
        keypoints=points,
        visibility=vis,
        has_instances=has_instances,
        size=checked_size,
        sigmas=spec.shared,
        method=method,
        coords=coords,
        input_size=checked_input,
        dtype=check_dtype(dtype),
        sample_sigmas=spec.per_element,
    )
