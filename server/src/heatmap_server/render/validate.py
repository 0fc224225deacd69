"""Argument checking for the renderer: every bad input becomes a ``ValueError`` naming its argument.

The renderer is called both by people in notebooks and by the gRPC service on untrusted input, so
nothing here uses ``assert`` (``python -O`` strips it) and every message starts with the argument's
name, which the service forwards to the client as the field at fault.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "COORDS",
    "DTYPES",
    "METHODS",
    "RenderArgs",
    "check_render_args",
]

METHODS = ("seed", "msra", "udp", "dark")
COORDS = ("heatmap", "pixel", "normalized")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class RenderArgs:
    """Checked, normalised renderer arguments.

    ``keypoints`` is always ``(B, N, K, 2)`` (an instance axis of 1 is added to ``(B, K, 2)`` input and
    ``has_instances`` remembers that); ``visibility`` is ``(B, N, K)`` float32 on the same device,
    or None when every keypoint is visible.
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

    @property
    def batch(self) -> int:
        return self.keypoints.shape[0]

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[2]


def _as_tensor(name: str, value: Any, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a numeric array, got dtype {value.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    else:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}") from None
        tensor = torch.from_numpy(array)
    if tensor.is_complex():
        raise TypeError(f"{name}: complex values are not coordinates")
    if device is not None and tensor.device != device:
        tensor = tensor.to(device)
    return tensor


def _all_finite(tensor: torch.Tensor) -> bool:
    # A finite sum proves every element finite, at a fraction of isfinite().all()'s cost; a
    # non-finite sum may be an overflow of large finite values, so only then look closer.
    if tensor.numel() == 0 or math.isfinite(float(tensor.sum())):
        return True
    return bool(torch.isfinite(tensor).all())


def _check_keypoints(keypoints: Any) -> tuple[torch.Tensor, bool]:
    tensor = _as_tensor("keypoints", keypoints)
    if tensor.ndim not in (3, 4) or tensor.shape[-1] != 2:
        raise ValueError(
            f"keypoints: expected shape (B, K, 2) or (B, N, K, 2), got {tuple(tensor.shape)}"
        )
    # Coordinate arithmetic runs in the keypoints' own precision, as mmpose's does on float32
    # keypoints; integer and half inputs are widened to float32.
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    if not _all_finite(tensor):
        raise ValueError("keypoints: contains NaN or infinite coordinates")
    has_instances = tensor.ndim == 4
    return (tensor if has_instances else tensor.unsqueeze(1)), has_instances


def _check_hw(name: str, value: Any) -> tuple[int, int]:
    try:
        height, width = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (H, W), got {value!r}") from None
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise ValueError(f"{name}: expected two integers (H, W), got {value!r}")
        if side <= 0:
            raise ValueError(f"{name}: sides must be positive, got {value!r}")
    return int(height), int(width)


def _check_sigma(sigma: Any, num_keypoints: int, size: tuple[int, int]) -> tuple[float, ...]:
    if isinstance(sigma, bool):
        raise ValueError(f"sigma: expected a number or one number per keypoint, got {sigma!r}")
    if isinstance(sigma, numbers.Real):
        values: tuple[float, ...] = (float(sigma),)
    else:
        flat = _as_tensor("sigma", sigma).detach().to("cpu", torch.float64)
        if flat.ndim == 0:
            values = (float(flat),)
        elif flat.ndim == 1 and flat.numel() == num_keypoints:
            values = tuple(float(v) for v in flat.tolist())
        else:
            raise ValueError(
                f"sigma: expected a scalar or one value per keypoint ({num_keypoints}), "
                f"got shape {tuple(flat.shape)}"
            )
    # A Gaussian wider than the heatmap is no longer a keypoint target; the bound also keeps the
    # cached kernel tables (rows per possible centre) proportional to the heatmap.
    limit = max(size)
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"sigma: must be a finite number > 0, got {value!r}")
        if value > limit:
            raise ValueError(f"sigma: {value!r} exceeds the heatmap's larger side ({limit})")
    return values


def _check_visibility(
    visibility: Any, keypoints: torch.Tensor, has_instances: bool
) -> torch.Tensor | None:
    expected = tuple(keypoints.shape[:-1]) if has_instances else (keypoints.shape[0], keypoints.shape[2])
    if visibility is None:
        return None
    tensor = _as_tensor("visibility", visibility, keypoints.device).to(torch.float32)
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"visibility: expected shape {expected} to match keypoints, got {tuple(tensor.shape)}"
        )
    if not _all_finite(tensor):
        raise ValueError("visibility: contains NaN or infinite values")
    return tensor if has_instances else tensor.unsqueeze(1)


def _check_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype
    raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")


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
    """Checks and normalises the arguments of :func:`render_heatmaps`.

    Raises:
        ValueError: naming the argument, for any value the renderer cannot honour exactly.
        TypeError: for arguments that are not numbers or arrays at all.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if coords not in COORDS:
        raise ValueError(f"coords: expected one of {', '.join(COORDS)}, got {coords!r}")
    points, has_instances = _check_keypoints(keypoints)
    checked_size = _check_hw("size", size)
    checked_input: tuple[int, int] | None = None
    if coords == "pixel":
        if input_size is None:
            raise ValueError("input_size: required when coords='pixel'")
        checked_input = _check_hw("input_size", input_size)
        if method == "udp" and (min(checked_size) < 2 or min(checked_input) < 2):
            # UDP scales by (input - 1) / (heatmap - 1): undefined for a side of 1.
            raise ValueError("size: method='udp' with coords='pixel' needs sides of at least 2")
    elif input_size is not None:
        raise ValueError(f"input_size: only used with coords='pixel', got coords={coords!r}")
    sigmas = _check_sigma(sigma, points.shape[2], checked_size)
    vis = _check_visibility(visibility, points, has_instances)
    return RenderArgs(
        keypoints=points,
        visibility=vis,
        has_instances=has_instances,
        size=checked_size,
        sigmas=sigmas,
        method=method,
        coords=coords,
        input_size=checked_input,
        dtype=_check_dtype(dtype),
    )

