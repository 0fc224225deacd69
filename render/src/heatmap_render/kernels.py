"""Cached kernel tables: every 1D profile a keypoint's integer centre can produce along one axis.

For the windowed methods (``seed``, ``msra``, ``udp``) the profile along an axis of length ``L``
depends only on the keypoint's integer centre ``mu`` (and, for ``udp``, on a sub-pixel offset that
enters the exponent). So instead of pasting a kernel per keypoint, we tabulate, once per
``(sigmas, kind, L, device)``, the profile of every centre whose window can touch the axis:

    left(mu)  = int(mu - 3 sigma)            (Python's int: truncation toward zero)
    right(mu) = int(mu + 3 sigma + 1)        (exclusive)
    kernel    = 2 * 3 sigma + 1 samples, centred at (2 * 3 sigma + 1) // 2
    row(mu)[p] = kernel[p - left]   for left <= p < right, p - left < len(kernel), 0 <= p < L

These are the seed's and mmpose's window rules verbatim, including the asymmetric window for a
non-integer ``3 sigma`` and the peak shift that truncation toward zero causes left of the origin.
Rendering then reduces to one gather for both axes at once (:class:`WindowPlan` stacks the two
axes' tables, padded to the longer side). Centres beyond the tabulated range all map to the first or
last row of their block, which is empty and flagged "outside".
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import RenderArgumentError

__all__ = [
    "PLAN_MAX_ELEMENTS",
    "WindowPlan",
    "axis_profiles",
    "cached_table",
    "clear_table_cache",
    "plan_elements",
    "table_cache_info",
    "window_plan",
]

# Plans grow with (side + 6 sigma) * side per distinct sigma: a large heatmap with a large sigma,
# or many distinct sigmas, would need gigabytes. Beyond this many elements the profiles are
# computed for the request's own centres instead (see profiles.py), with the same formula.
PLAN_MAX_ELEMENTS = 4 * 1024 * 1024

# Bounded by bytes, not entries: a per-keypoint-sigma plan for a large heatmap can be tens of MB.
_CACHE_BUDGET_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class _AxisTable:
    """All profiles along one axis for a set of distinct sigmas (a block of :class:`WindowPlan`).

    Attributes:
        lowest_centre: the integer centre of row 0 of each sigma's block.
        rows_per_sigma: R, the rows of each sigma's block; sigma ``s`` owns rows
            ``[s * R, (s+1) * R)``.
        rows: ``(S * R, L)``. For ``kind="window"`` float32 kernel values; for ``kind="offset"``
            float64 distances from the kernel centre, ``+inf`` outside the window (so that
            ``exp(-(d - f)^2 / (2 sigma^2))`` is exactly 0 there).
        outside: ``(S * R,)`` bool, mmpose's weight rule ``left >= L or right < 0``.
    """

    lowest_centre: int
    rows_per_sigma: int
    rows: torch.Tensor
    outside: torch.Tensor


_cache: OrderedDict[tuple, Any] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def axis_profiles(
    centres: torch.Tensor, sigma: torch.Tensor, length: int, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The windowed profiles of integer ``centres`` along an axis of ``length`` pixels.

    Args:
        centres: float64 integer-valued centres ``mu``, shape ``(..., 1)``.
        sigma: float64, broadcastable against ``centres``.
        length: the axis length.
        kind: ``"window"`` (float32 kernel values, 0 off the window) or ``"offset"`` (float64
            distances from the kernel centre, ``+inf`` off the window).

    Returns:
        ``(profiles (..., length), outside (...))`` with mmpose's weight rule as ``outside``.
    """
    radius = sigma * 3
    pixels = torch.arange(length, dtype=torch.float64, device=centres.device)
    left = torch.trunc(centres - radius)
    right = torch.trunc(centres + radius + 1)
    kernel_size = 2 * radius + 1
    kernel_len = torch.ceil(kernel_size)  # np.arange(0, kernel_size) has ceil(kernel_size) samples
    kernel_centre = torch.floor(kernel_size / 2)
    index = pixels - left  # position inside the kernel
    in_window = (index >= 0) & (index < kernel_len) & (pixels < right)
    distance = index - kernel_centre
    if kind == "window":
        values = torch.exp(-(distance**2) / (2 * sigma**2)).to(torch.float32)
        profiles = torch.where(in_window, values, torch.zeros((), dtype=torch.float32))
    elif kind == "offset":
        profiles = torch.where(in_window, distance, torch.full((), math.inf, dtype=torch.float64))
    else:
        raise RenderArgumentError("kind", f"expected 'window' or 'offset', got {kind!r}")
    outside = ((left >= length) | (right < 0)).squeeze(-1)
    return profiles, outside


def _build(sigmas: tuple[float, ...], kind: str, length: int, device: torch.device) -> _AxisTable:
    # Tables are computed on the CPU and then moved, so every device renders from the very same
    # float32 values (device exp() implementations may differ in the last bit).
    radius_max = 3 * max(sigmas)
    lowest = -math.ceil(radius_max) - 2
    highest = length + math.ceil(radius_max) + 1
    sigma = torch.tensor(sigmas, dtype=torch.float64)[:, None, None]  # (S, 1, 1)
    centres = torch.arange(lowest, highest + 1, dtype=torch.float64)[None, :, None]  # (1, R, 1)
    rows, outside = axis_profiles(centres, sigma, length, kind)
    return _AxisTable(
        lowest_centre=lowest,
        rows_per_sigma=highest - lowest + 1,
        rows=rows.reshape(-1, length).to(device),
        outside=outside.reshape(-1).to(device),
    )


def plan_elements(sigmas: tuple[float, ...], size: tuple[int, int]) -> int:
    """Elements a :class:`WindowPlan` for ``sigmas`` and ``size`` would hold."""
    rows = len(set(sigmas)) or 1
    reach = 2 * math.ceil(3 * max(sigmas, default=1.0)) + 4
    return rows * sum((length + reach) * length for length in size)


@dataclass(frozen=True)
class WindowPlan:
    """Both axes' profile tables for one render configuration, for a single gather per call.

    Row of keypoint k's profile along axis a (0: x, 1: y) for integer centre ``mu``::

        clamp(mu, lowest, highest[a]) + offsets[k or 0, a]

    Attributes:
        table: ``(rows, max(H, W))``; x profiles use the first W columns, y the first H. Float32
            kernel values (``kind="window"``) or float64 distances, ``+inf`` off-window
            (``"offset"``).
        outside: ``(rows,)`` bool, mmpose's weight rule per axis.
        lowest, highest: ``(2,)`` clamp bounds for the centres, in the keypoints' dtype.
        offsets: ``(K or 1, 2)`` int64.
        empty_row: a row of zeros (of +inf for ``"offset"``), for keypoints that are not drawn.
    """

    table: torch.Tensor
    outside: torch.Tensor
    lowest: torch.Tensor
    highest: torch.Tensor
    offsets: torch.Tensor
    empty_row: int

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size() + self.outside.numel()


def _plan(
    sigmas: tuple[float, ...], kind: str, size: tuple[int, int], device: torch.device,
    dtype: torch.dtype,
) -> WindowPlan:
    height, width = size
    distinct = tuple(dict.fromkeys(sigmas)) or (1.0,)  # K = 0: a table nobody indexes
    slots = torch.tensor([distinct.index(sigma) for sigma in sigmas], dtype=torch.int64)
    axes = [_build(distinct, kind, length, device) for length in (width, height)]
    widest = max(size)
    fill = 0.0 if kind == "window" else math.inf
    blocks, outside, bases = [], [], []
    base = 0
    for axis in axes:
        body = axis.rows
        pad = torch.full(
            (body.shape[0], widest - body.shape[1]), fill, dtype=body.dtype, device=device
        )
        blocks.append(torch.cat([body, pad], dim=1))
        outside.append(axis.outside)
        bases.append(base - axis.lowest_centre + slots * axis.rows_per_sigma)
        base += body.shape[0]
    # One empty row, shared by both axes, for keypoints that are not drawn.
    blocks.append(torch.full((1, widest), fill, dtype=blocks[0].dtype, device=device))
    outside.append(torch.ones(1, dtype=torch.bool, device=device))
    lowest = axes[0].lowest_centre
    return WindowPlan(
        table=torch.cat(blocks),
        outside=torch.cat(outside),
        lowest=torch.tensor([lowest, lowest], dtype=dtype, device=device),
        highest=torch.tensor(
            [axis.lowest_centre + axis.rows_per_sigma - 1 for axis in axes],
            dtype=dtype,
            device=device,
        ),
        offsets=torch.stack(bases, dim=1).to(device),
        empty_row=base,
    )


def window_plan(
    sigmas: tuple[float, ...],
    kind: str,
    size: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> WindowPlan:
    """Returns the (cached) :class:`WindowPlan`.

    Args:
        sigmas: one sigma, or one per keypoint (distinct values share a table block).
        kind: ``"window"`` (kernel values, ``seed``/``msra``) or ``"offset"`` (distances, ``udp``).
        size: ``(H, W)`` of the heatmap.
        device: where the tables live.
        dtype: the keypoints' dtype (the clamp bounds are compared with centres in it).
    """
    key = ("window", sigmas, kind, size, str(device), dtype)
    return cached_table(key, lambda: _plan(sigmas, kind, size, device, dtype))


def cached_table(key: tuple, build: Callable[[], Any]) -> Any:
    """The cached value for ``key``, else ``build()`` (cached when it fits the byte budget).

    Values must have ``nbytes`` (tensors and the plans here do). Builds run outside the lock, so
    two threads may build the same table once each; the first one stored wins.
    """
    global _cache_bytes
    with _cache_lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
            return value
    value = build()
    with _cache_lock:
        if key not in _cache and value.nbytes <= _CACHE_BUDGET_BYTES:
            _cache[key] = value
            _cache_bytes += value.nbytes
            while _cache_bytes > _CACHE_BUDGET_BYTES:
                _, evicted = _cache.popitem(last=False)
                _cache_bytes -= evicted.nbytes
    return value


def table_cache_info() -> dict[str, int]:
    """Entries and bytes held by the kernel-table cache."""
    with _cache_lock:
        return {"entries": len(_cache), "bytes": _cache_bytes, "budget_bytes": _CACHE_BUDGET_BYTES}


def clear_table_cache() -> None:
    """Drops every cached table (tests, or after moving work off a device)."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0
