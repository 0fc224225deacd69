"""Dense heatmaps from their profiles: one broadcast multiply, max over instances.

``expand_profiles(rows, cols)`` is bit for bit what ``heatmap_server.render.render_heatmaps``
returns: each element is the float32 product ``rows[..., y] * cols[..., x]`` (IEEE multiplication
is exact to the same rounding on every device), merged over instances by maximum, and for float16
or bfloat16 that float32 product rounded once. Rounding is monotonic, so taking the maximum before
or after it gives the same bits, which lets the low-precision path merge in the output dtype.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["expand_profiles"]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# A float32 scratch block for low-precision CPU output (a cross-dtype multiply takes a slow
# generic path there): a couple of MB stays in L2.
_SCRATCH_BYTES = 2 * 1024 * 1024


def _as_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if dtype not in DTYPES:
        names = ", ".join(str(choice).removeprefix("torch.") for choice in DTYPES)
        raise ValueError(f"dtype: expected one of {names}, got {dtype!r}")
    return dtype


def _check_profiles(rows: Any, cols: Any) -> tuple[torch.Tensor, torch.Tensor]:
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
        if value.dtype != torch.float32:
            raise ValueError(f"{name}: expected float32 profiles, got {value.dtype}")
        if value.dim() != 4:
            raise ValueError(
                f"{name}: expected 4 dimensions (B, N, K, L), got {tuple(value.shape)}"
            )
    if rows.shape[:3] != cols.shape[:3]:
        raise ValueError(
            f"cols: (B, N, K) {tuple(cols.shape[:3])} differs from rows' {tuple(rows.shape[:3])}"
        )
    if cols.device != rows.device:
        raise ValueError(f"cols: on {cols.device}, rows on {rows.device}; expected one device")
    return rows, cols


def _check_out(out: Any, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out: expected a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"out: expected shape {shape}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise ValueError(f"out: expected dtype {dtype}, got {out.dtype}")
    if out.device != device:
        raise ValueError(f"out: expected device {device}, got {out.device}")
    if not out.is_contiguous():
        raise ValueError("out: must be contiguous")


def _outer_max(rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> None:
    """``out[b, k] = max_n rows[b, n, k, :, None] * cols[b, n, k, None, :]``, one multiply per
    instance over the whole batch."""
    instances = rows.shape[1]
    if instances == 0 or out.numel() == 0:
        out.zero_()
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
        TypeError: ``rows``, ``cols`` or ``out`` is not a tensor.
        ValueError: naming the argument: wrong dtype, shape or device.
    """
    rows, cols = _check_profiles(rows, cols)
    dtype = _as_dtype(dtype)
    batch, _, keypoints, height = rows.shape
    shape = (batch, keypoints, height, cols.shape[-1])
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=rows.device)
    else:
        _check_out(out, shape, dtype, rows.device)
    if dtype == torch.float32 or rows.device.type != "cpu":
        _outer_max(rows, cols, out)  # off the CPU the multiply casts as it writes
    else:
        _outer_max_via_scratch(rows, cols, out)
    return out
