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
Rendering then reduces to one gather per axis (:class:`AxisPlan`: the axis's table, one block per
distinct sigma, and one empty row). Centres beyond the tabulated range all map to the first or
last row of their block, which is empty and flagged "outside".

The cache is bounded in bytes, counting everything an entry holds (its tables, its per-keypoint
offsets and its key, which may name one sigma per keypoint), and in entries.
"""

from __future__ import annotations

import functools
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
    "AxisPlan",
    "WindowPlan",
    "axis_outside",
    "axis_plan",
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

# Bounded by bytes, not entries alone: a per-keypoint-sigma plan for a large heatmap can be tens
# of MB; and by entries, so that a flood of tiny distinct configurations cannot grow the index.
_CACHE_BUDGET_BYTES = 256 * 1024 * 1024
_CACHE_MAX_ENTRIES = 4096


def axis_outside(centres: torch.Tensor, sigma: torch.Tensor, length: int) -> torch.Tensor:
    """mmpose's weight rule for integer ``centres`` (float64) on an axis of ``length`` pixels: the
    window ``[int(mu - 3 sigma), int(mu + 3 sigma + 1))`` misses it."""
    radius = sigma * 3
    return (torch.trunc(centres - radius) >= length) | (torch.trunc(centres + radius + 1) < 0)


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


def _centre_range(sigmas: tuple[float, ...], length: int) -> tuple[int, int]:
    """Integer centres beyond ``[lowest, highest]`` leave every window of these sigmas outside."""
    reach = math.ceil(3 * max(sigmas))
    return -reach - 2, length + reach + 1


@functools.lru_cache(maxsize=1024)
def plan_elements(sigmas: tuple[float, ...], size: tuple[int, int]) -> int:
    """Elements the two axes' plans for ``sigmas`` and ``size`` would hold together."""
    rows = len(set(sigmas)) or 1
    reach = 2 * math.ceil(3 * max(sigmas, default=1.0)) + 4
    return rows * sum((length + reach) * length for length in size)


@dataclass(frozen=True)
class AxisPlan:
    """One axis's profile table for one render configuration, for a single gather per axis.

    Row of keypoint k's profile for integer centre ``mu``::

        clamp(mu, lowest, highest) + offsets[k or 0]

    Attributes:
        table: ``(rows, L)``: float32 kernel values (``kind="window"``) or float64 distances,
            ``+inf`` off the window (``"offset"``); the last row is empty.
        outside: ``(rows,)`` bool, mmpose's weight rule.
        lowest, highest: the clamp bounds for the centres (the block's first and last centre).
        offsets: ``(K or 1,)`` int64: the row of centre 0 in each keypoint's sigma block.
        empty_row: the index of the empty row, for keypoints that are not drawn.
        key_bytes: what the cache key holds beside (one float per sigma).
    """

    table: torch.Tensor
    outside: torch.Tensor
    lowest: int
    highest: int
    offsets: torch.Tensor
    empty_row: int
    key_bytes: int = 0

    @property
    def nbytes(self) -> int:
        return (self.table.numel() * self.table.element_size() + self.outside.numel()
                + self.offsets.numel() * 8 + self.key_bytes)


def _build(
    sigmas: tuple[float, ...], kind: str, length: int, device: torch.device
) -> AxisPlan:
    # Tables are computed on the CPU and then moved, so every device renders from the very same
    # values (device exp() implementations may differ in the last bit).
    distinct = tuple(dict.fromkeys(sigmas)) or (1.0,)  # K = 0: a table nobody indexes
    slot_of = {sigma: slot for slot, sigma in enumerate(distinct)}
    lowest, highest = _centre_range(distinct, length)
    per_sigma = highest - lowest + 1
    sigma = torch.tensor(distinct, dtype=torch.float64)[:, None, None]  # (S, 1, 1)
    centres = torch.arange(lowest, highest + 1, dtype=torch.float64)[None, :, None]  # (1, R, 1)
    rows, outside = axis_profiles(centres, sigma, length, kind)
    fill = 0.0 if kind == "window" else math.inf
    empty = torch.full((1, length), fill, dtype=rows.dtype)
    slots = torch.tensor([slot_of[value] for value in sigmas] or [0], dtype=torch.int64)
    return AxisPlan(
        table=torch.cat([rows.reshape(-1, length), empty]).to(device),
        outside=torch.cat([outside.reshape(-1), torch.ones(1, dtype=torch.bool)]).to(device),
        lowest=lowest,
        highest=highest,
        offsets=(slots * per_sigma - lowest).to(device),
        empty_row=len(distinct) * per_sigma,
        key_bytes=8 * len(sigmas),
    )


def axis_plan(
    sigmas: tuple[float, ...], kind: str, length: int, device: torch.device
) -> AxisPlan:
    """The (cached) :class:`AxisPlan` of one axis.

    Args:
        sigmas: one sigma, or one per keypoint (distinct values share a table block).
        kind: ``"window"`` (kernel values, ``seed``/``msra``) or ``"offset"`` (distances, ``udp``).
        length: the axis's length in pixels.
        device: where the tables live.
    """
    key = ("axis", sigmas, kind, length, str(device))
    return cached_table(key, lambda: _build(sigmas, kind, length, device))


@dataclass(frozen=True)
class WindowPlan:
    """Both axes' plans (x along W, then y along H), and what finds both axes' rows in one pass:
    the centres ``(..., 2)`` are clamped to ``(lowest, highest)`` and offset by ``offsets``
    ``(K or 1, 2)``, giving rows of the two tables stacked (y's after x's), whose ``outside``
    flags and ``empty`` rows are stacked alike."""

    axes: tuple[AxisPlan, AxisPlan]
    lowest: torch.Tensor
    highest: torch.Tensor
    offsets: torch.Tensor
    outside: torch.Tensor
    empty: torch.Tensor
    y_base: int

    @property
    def nbytes(self) -> int:
        return sum(axis.nbytes for axis in self.axes) + self.offsets.numel() * 8 \
            + self.outside.numel()


def _pair(sigmas: tuple[float, ...], kind: str, size: tuple[int, int], device: torch.device,
          dtype: torch.dtype) -> WindowPlan:
    x_axis, y_axis = (_build(sigmas, kind, length, device) for length in (size[1], size[0]))
    base = x_axis.table.shape[0]

    def pair(x, y):
        return torch.tensor([x, y], dtype=dtype, device=device)

    return WindowPlan(
        axes=(x_axis, y_axis),
        lowest=pair(x_axis.lowest, y_axis.lowest),
        highest=pair(x_axis.highest, y_axis.highest),
        offsets=torch.stack([x_axis.offsets, y_axis.offsets + base], dim=-1),
        outside=torch.cat([x_axis.outside, y_axis.outside]),
        empty=torch.tensor([x_axis.empty_row, y_axis.empty_row + base], device=device),
        y_base=base,
    )


def window_plan(sigmas: tuple[float, ...], kind: str, size: tuple[int, int],
                device: torch.device, dtype: torch.dtype) -> WindowPlan:
    """The (cached) :class:`WindowPlan` of a heatmap of ``size`` (H, W), for centres of ``dtype``.

    Args: as :func:`axis_plan`, with both axes' lengths.
    """
    key = ("window", sigmas, kind, size, str(device), dtype)
    return cached_table(key, lambda: _pair(sigmas, kind, size, device, dtype))


_cache: OrderedDict[tuple, Any] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def cached_table(key: tuple, build: Callable[[], Any]) -> Any:
    """The cached value for ``key``, else ``build()`` (cached when it fits the byte budget).

    Values must have ``nbytes`` (tensors and the plans here do; a plan counts its key). Builds run
    outside the lock, so two threads may build the same table once each; the first stored wins.
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
            while _cache_bytes > _CACHE_BUDGET_BYTES or len(_cache) > _CACHE_MAX_ENTRIES:
                _, evicted = _cache.popitem(last=False)
                _cache_bytes -= evicted.nbytes
    return value


def table_cache_info() -> dict[str, int]:
    """Entries and bytes held by the kernel-table cache, and its bounds."""
    with _cache_lock:
        return {"entries": len(_cache), "bytes": _cache_bytes, "budget_bytes": _CACHE_BUDGET_BYTES,
                "max_entries": _CACHE_MAX_ENTRIES}


def clear_table_cache() -> None:
    """Drops every cached table (tests, or after moving work off a device)."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0
