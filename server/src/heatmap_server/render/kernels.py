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
Rendering then reduces to one gather per axis. Centres beyond the tabulated range all map to the
first or last row, which is empty and flagged "outside".
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

__all__ = [
    "AxisTable",
    "axis_table",
    "clear_table_cache",
    "table_cache_info",
]

# Bounded by bytes, not entries: a per-keypoint-sigma table of a large heatmap can be tens of MB.
_CACHE_BUDGET_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class AxisTable:
    """All profiles along one axis for a set of distinct sigmas.

    Attributes:
        lowest_centre: the integer centre of row 0 of each sigma's block.
        rows_per_sigma: R, the rows of each sigma's block; sigma ``s`` owns rows ``[s * R, (s+1) * R)``.
        rows: ``(S * R + 1, L)``. For ``kind="window"`` float32 kernel values; for ``kind="offset"``
            float64 distances from the kernel centre, ``+inf`` outside the window (so that
            ``exp(-(d - f)^2 / (2 sigma^2))`` is exactly 0 there). The last row is the empty row.
        outside: ``(S * R + 1,)`` bool, mmpose's weight rule ``left >= L or right < 0``.
    """

    lowest_centre: int
    rows_per_sigma: int
    rows: torch.Tensor
    outside: torch.Tensor

    @property
    def empty_row(self) -> int:
        return self.rows.shape[0] - 1

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size() + self.outside.numel()


_cache: OrderedDict[tuple, AxisTable] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def _build(sigmas: tuple[float, ...], kind: str, length: int, device: torch.device) -> AxisTable:
    radius_max = 3 * max(sigmas)
    lowest = -math.ceil(radius_max) - 2
    highest = length + math.ceil(radius_max) + 1
    f64 = torch.float64
    sigma = torch.tensor(sigmas, dtype=f64, device=device)[:, None, None]  # (S, 1, 1)
    radius = sigma * 3
    centres = torch.arange(lowest, highest + 1, dtype=f64, device=device)[None, :, None]  # (1, R, 1)
    pixels = torch.arange(length, dtype=f64, device=device)  # (L,)
    left = torch.trunc(centres - radius)  # (S, R, 1)
    right = torch.trunc(centres + radius + 1)
    kernel_size = 2 * radius + 1
    kernel_len = torch.ceil(kernel_size)  # np.arange(0, kernel_size) has ceil(kernel_size) samples
    kernel_centre = torch.floor(kernel_size / 2)
    index = pixels - left  # (S, R, L): position inside the kernel
    in_window = (index >= 0) & (index < kernel_len) & (pixels < right)
    distance = index - kernel_centre
    if kind == "window":
        values = torch.exp(-(distance**2) / (2 * sigma**2)).to(torch.float32)
        rows = torch.where(in_window, values, torch.zeros((), dtype=torch.float32, device=device))
        empty = torch.zeros(1, length, dtype=torch.float32, device=device)
    elif kind == "offset":
        rows = torch.where(in_window, distance, torch.full((), math.inf, dtype=f64, device=device))
        empty = torch.full((1, length), math.inf, dtype=f64, device=device)
    else:
        raise ValueError(f"kind: expected 'window' or 'offset', got {kind!r}")
    outside = ((left >= length) | (right < 0)).reshape(-1)
    return AxisTable(
        lowest_centre=lowest,
        rows_per_sigma=highest - lowest + 1,
        rows=torch.cat([rows.reshape(-1, length), empty]),
        outside=torch.cat([outside, torch.ones(1, dtype=torch.bool, device=device)]),
    )


def axis_table(sigmas: tuple[float, ...], kind: str, length: int, device: torch.device) -> AxisTable:
    """Returns the (cached) table of profiles along an axis of ``length`` pixels.

    Args:
        sigmas: the distinct sigmas, in the order their blocks appear in the table.
        kind: ``"window"`` (kernel values, ``seed``/``msra``) or ``"offset"`` (distances, ``udp``).
        length: the axis length (W for x, H for y).
        device: where the table lives.
    """
    global _cache_bytes
    key = (sigmas, kind, length, str(device))
    with _cache_lock:
        table = _cache.get(key)
        if table is not None:
            _cache.move_to_end(key)
            return table
    table = _build(sigmas, kind, length, device)
    with _cache_lock:
        if key not in _cache and table.nbytes <= _CACHE_BUDGET_BYTES:
            _cache[key] = table
            _cache_bytes += table.nbytes
            while _cache_bytes > _CACHE_BUDGET_BYTES:
                _, evicted = _cache.popitem(last=False)
                _cache_bytes -= evicted.nbytes
    return table


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
