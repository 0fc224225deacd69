"""Dense heatmaps from their profiles: one broadcast multiply, max over instances.

This is the one place the dense tensor is made: :func:`render_heatmaps` calls it on the profiles
it has just rendered, and a training loop calls :func:`expand_profiles` on profiles that travelled
(``SeparableHeatmaps.to(device)``), so both give the same bits. Each element is the float32 product
``rows[..., y] * cols[..., x]`` (IEEE multiplication rounds the same on every device), merged over
instances by maximum, and for float16 or bfloat16 that float32 product rounded once. Rounding is
monotonic, so taking the maximum before or after it gives the same bits, which lets the
low-precision path merge in the output dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import RenderArgumentError, RenderArgumentTypeError
from .inputs import check_dtype

__all__ = [
    "check_out",
    "check_profiles",
    "expand_into",
    "expand_profiles",
]

# A float32 scratch block for low-precision CPU output (a cross-dtype multiply takes a slow
# generic path there): a couple of MB stays in L2.
_SCRATCH_BYTES = 2 * 1024 * 1024


def check_profiles(rows: Any, cols: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` unchanged, once they are float32 ``(B, N, K, L)`` on one device."""
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, torch.Tensor):
            raise RenderArgumentTypeError(
                name, f"expected a torch.Tensor, got {type(value).__name__}"
            )
        if value.dtype != torch.float32:
            raise RenderArgumentError(name, f"expected float32 profiles, got {value.dtype}")
        if value.dim() != 4:
            raise RenderArgumentError(
                name, f"expected 4 dimensions (B, N, K, L), got {tuple(value.shape)}"
            )
    if rows.shape[:3] != cols.shape[:3]:
        raise RenderArgumentError(
            "cols", f"(B, N, K) {tuple(cols.shape[:3])} differs from rows' {tuple(rows.shape[:3])}"
        )
    if cols.device != rows.device:
        raise RenderArgumentError(
            "cols", f"on {cols.device}, rows on {rows.device}; expected one device"
        )
    return rows, cols


def check_out(out: Any, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
    """Raises naming ``out`` unless it is a contiguous tensor of ``shape``, ``dtype`` and
    ``device``."""
    if not isinstance(out, torch.Tensor):
        raise RenderArgumentTypeError("out", f"expected a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise RenderArgumentError("out", f"expected shape {shape}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise RenderArgumentError("out", f"expected dtype {dtype}, got {out.dtype}")
    if out.device != device:
        raise RenderArgumentError("out", f"expected device {device}, got {out.device}")
    if not out.is_contiguous():
        raise RenderArgumentError("out", "must be contiguous")


def _outer_max(rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> None:
    """``out[b, k] = max_n rows[b, n, k, :, None] * cols[b, n, k, None, :]``, one multiply per
    instance over the whole batch."""
    instances = rows.shape[1]
    if instances == 0 or out.numel() == 0:
        out.zero_()  # nothing to draw; an empty out must not cost a loop over the instances
        return
    torch.mul(rows[:, 0, :, :, None], cols[:, 0, :, None, :], out=out)
    if instances > 1:
        scratch = torch.empty_like(out)
        for n in range(1, instances):
            torch.mul(rows[:, n, :, :, None], cols[:, n, :, None, :], out=scratch)
            torch.maximum(out, scratch, out=out)


def _outer_max_via_scratch(rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> None:
    """:func:`_outer_max` into a low-precision CPU ``out``, through float32 blocks of samples."""
    per_sample = 4 * out[0].numel() if out.shape[0] else 1
    block = max(1, _SCRATCH_BYTES // max(per_sample, 1))
    scratch = torch.empty((min(block, out.shape[0]), *out.shape[1:]), dtype=torch.float32)
    for start in range(0, out.shape[0], block):
        stop = min(start + block, out.shape[0])
        part = scratch[: stop - start]
        _outer_max(rows[start:stop], cols[start:stop], part)
        out[start:stop].copy_(part)


def expand_into(rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`expand_profiles` on checked profiles into a checked ``out``; returns ``out``."""
    if out.dtype == torch.float32 or out.device.type != "cpu":
        _outer_max(rows, cols, out)  # off the CPU the multiply casts as it writes
    else:
        _outer_max_via_scratch(rows, cols, out)
    return out


def expand_profiles(
    rows: torch.Tensor,
    cols: torch.Tensor,
    *,
    dtype: Any = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiplies separable profiles out into dense heatmaps, on the profiles' device.

    Args:
        rows: ``(B, N, K, H)`` float32 row profiles ``gy``.
        cols: ``(B, N, K, W)`` float32 column profiles ``gx``, on the same device.
        dtype: ``torch.float32`` (default), ``torch.float16`` or ``torch.bfloat16`` (or a name):
            the float32 product rounded once.
        out: optional contiguous ``(B, K, H, W)`` tensor of ``dtype`` on that device, written in
            place and returned.

    Returns:
        ``(B, K, H, W)``: ``max_n rows[:, n, :, :, None] * cols[:, n, :, None, :]``, zero where
        ``N == 0``.

    Raises:
        RenderArgumentTypeError: (a ``TypeError``) ``rows``, ``cols`` or ``out`` is not a tensor.
        RenderArgumentError: (a ``ValueError``) naming the argument: wrong dtype, shape or device.
    """
    rows, cols = check_profiles(rows, cols)
    dtype = check_dtype(dtype)
    batch, _, keypoints, height = rows.shape
    shape = (batch, keypoints, height, cols.shape[-1])
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=rows.device)
    else:
        check_out(out, shape, dtype, rows.device)
    return expand_into(rows, cols, out)
