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
    """Keypoints ``(B, K, 2)`` or ``(B, N, K, 2)`` as ``((B, N, K, 2), has_instances)``, in
    float32 or float64."""
    tensor = as_tensor("keypoints", keypoints)
    if tensor.ndim not in (3, 4) or tensor.shape[-1] != 2:
        raise RenderArgumentError(
            "keypoints", f"expected shape (B, K, 2) or (B, N, K, 2), got {tuple(tensor.shape)}"
        )
    # Coordinate arithmetic runs in the keypoints' own precision, as mmpose's does on float32
    # keypoints; integer and half inputs are widened to float32.
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    if not all_finite(tensor):
        raise RenderArgumentError("keypoints", "contains NaN or infinite coordinates")
    has_instances = tensor.ndim == 4
    return (tensor if has_instances else tensor.unsqueeze(1)), has_instances


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
    return tensor if has_instances else tensor.unsqueeze(1)


def check_dtype(dtype: Any) -> torch.dtype:
    """An output dtype: one of :data:`DTYPES`, by name or as the torch dtype."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype
    raise RenderArgumentError("dtype", f"expected one of {', '.join(DTYPES)}, got {dtype!r}")
