"""Checks shared by every renderer entry point: tensors, keypoints, (H, W) sizes, visibility.

The renderer is called both by people in notebooks and by the gRPC service on untrusted input, so
nothing here uses ``assert`` (``python -O`` strips it) and every error is a
:class:`RenderArgumentError` naming the caller's argument.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from .errors import RenderArgumentError, RenderArgumentTypeError

__all__ = [
    "DTYPES",
    "all_finite",
    "as_tensor",
    "check_dtype",
    "check_hw",
    "check_keypoints",
    "check_visibility",
    "drawn_finite",
]

# The renderer's output dtypes, by the names users and the wire write; low-precision outputs are
# the float32 result rounded once.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def as_tensor(name: str, value: Any, device: torch.device | None = None) -> torch.Tensor:
    """``value`` (tensor, numpy array, number or nested sequence) as a real tensor."""
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise RenderArgumentTypeError(
                name, f"expected a numeric array, got dtype {value.dtype}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    else:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise RenderArgumentTypeError(
                name, f"expected a tensor or array, got {type(value).__name__}"
            ) from None
        tensor = torch.from_numpy(array)
    if tensor.is_complex():
        raise RenderArgumentTypeError(name, "complex values are not coordinates")
    if device is not None and tensor.device != device:
        tensor = tensor.to(device)
    return tensor


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every element is finite."""
    # A finite sum proves every element finite, at a fraction of isfinite().all()'s cost; a
    # non-finite sum may be an overflow of large finite values, so only then look closer.
    if tensor.numel() == 0 or math.isfinite(float(tensor.sum())):
        return True
    return bool(torch.isfinite(tensor).all())


def check_keypoints(keypoints: Any) -> tuple[torch.Tensor, bool]:
    """Keypoints ``(B, K, 2)`` or ``(B, N, K, 2)`` as ``((B, N, K, 2), has_instances)``, float32.

    Coordinates are computed in float32 whatever the caller passes, exactly as they travel on the
    wire, so that the in-process renderer and the service give the same bits for the same call
    (and as mmpose computes on its float32 keypoints). Whether they are finite is checked with
    the visibility (:func:`drawn_finite`): a keypoint that is not drawn may be NaN.
    """
    tensor = as_tensor("keypoints", keypoints)
    if tensor.ndim not in (3, 4) or tensor.shape[-1] != 2:
        raise RenderArgumentError(
            "keypoints", f"expected shape (B, K, 2) or (B, N, K, 2), got {tuple(tensor.shape)}"
        )
    tensor = tensor.detach()
    if tensor.dtype != torch.float32:
        tensor = tensor.to(torch.float32)
    has_instances = tensor.ndim == 4
    return (tensor if has_instances else tensor.unsqueeze(1)), has_instances


def drawn_finite(points: torch.Tensor, visibility: torch.Tensor | None) -> torch.Tensor:
    """``points`` ``(B, N, K, 2)``, once every keypoint to be drawn is finite; the coordinates
    of keypoints that are not drawn (visibility below 0.5) may be NaN or infinite, as label tools
    write "not labelled", and become 0 (an empty channel and the visibility as weight).

    Raises:
        RenderArgumentError: naming ``keypoints``, for a drawn keypoint that is not finite.
    """
    if all_finite(points):
        return points
    finite = torch.isfinite(points).all(dim=-1)
    drawn = torch.ones_like(finite) if visibility is None else visibility >= 0.5
    bad = drawn & ~finite
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        hint = "" if visibility is not None else "; keypoints that are not labelled need " \
            "a visibility below 0.5"
        raise RenderArgumentError(
            "keypoints", f"contains NaN or infinite coordinates of a keypoint to be drawn "
            f"(first at (b, n, k) = {where}){hint}"
        )
    return torch.where(finite[..., None], points, torch.zeros((), dtype=points.dtype,
                                                              device=points.device))


def check_hw(name: str, value: Any) -> tuple[int, int]:
    """A size ``(H, W)`` of two positive integers."""
    try:
        height, width = value
    except (TypeError, ValueError):
        raise RenderArgumentError(name, f"expected (H, W), got {value!r}") from None
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise RenderArgumentError(name, f"expected two integers (H, W), got {value!r}")
        if side <= 0:
            raise RenderArgumentError(name, f"sides must be positive, got {value!r}")
    return int(height), int(width)


def check_visibility(
    visibility: Any, keypoints: torch.Tensor, has_instances: bool
) -> torch.Tensor | None:
    """Visibility ``(B, K)`` or ``(B, N, K)`` as ``(B, N, K)`` float32 on the keypoints' device."""
    batch, _, num_keypoints, _ = keypoints.shape
    expected = tuple(keypoints.shape[:-1]) if has_instances else (batch, num_keypoints)
    if visibility is None:
        return None
    tensor = as_tensor("visibility", visibility, keypoints.device).to(torch.float32)
    if tuple(tensor.shape) != expected:
        raise RenderArgumentError(
            "visibility", f"expected shape {expected} to match keypoints, got {tuple(tensor.shape)}"
        )
    if not all_finite(tensor):
        raise RenderArgumentError("visibility", "contains NaN or infinite values")
    if tensor.numel() and not (0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0):
        # A weight of 2 would double a keypoint's loss: COCO's raw flags are the usual cause.
        raise RenderArgumentError(
            "visibility", f"values must lie in [0, 1], got {float(tensor.min()):g} to "
            f"{float(tensor.max()):g}; COCO's flags 0/1/2: pass min(v, 1) as mmpose does (or "
            "v > 0)"
        )
    return tensor if has_instances else tensor.unsqueeze(1)


def check_dtype(dtype: Any) -> torch.dtype:
    """An output dtype: one of :data:`DTYPES`, by name or as the torch dtype."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype
    raise RenderArgumentError("dtype", f"expected one of {', '.join(DTYPES)}, got {dtype!r}")
