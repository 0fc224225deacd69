"""Profiles evaluated at a request's own centres, rather than gathered from a cached kernel table.

Three cases need it: ``udp`` (its Gaussian sits at the sub-pixel centre, so no two keypoints
share a row), ``dark`` (a Gaussian over the whole axis, no window), and ``seed``/``msra`` whose
table would be too large to keep or whose per-element sigmas take too many distinct values.

A windowed profile is zero outside ``ceil(6 sigma) + 1`` pixels, so only those are evaluated: a
keypoint costs its window's exponentials and one store per pixel of its (zeroed) row, whatever the
axis length, and the formula, element for element, is that of ``kernels.axis_profiles``. The
exponents run in float64 in blocks of at most ``BLOCK_ELEMENTS``, so a request's scratch memory
stays bounded whatever its size; only the float32 rows grow with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .kernels import axis_outside, axis_profiles
from .sigma import max_sigma
from .validate import RenderArgs

__all__ = [
    "BLOCK_ELEMENTS",
    "dark_axes",
    "flat",
    "sigma_field",
    "udp_from_distances",
    "windowed_axes",
]

# float64 scratch elements per block of a directly evaluated axis (8 MB each).
BLOCK_ELEMENTS = 1 << 20


def sigma_field(args: RenderArgs, device: torch.device) -> torch.Tensor:
    """Sigma in float64, broadcastable against ``(B, N, K)``: ``(K or 1,)`` or ``(B, N, K)``."""
    if args.sample_sigmas is not None:
        return args.sample_sigmas.to(device)
    return torch.tensor(args.sigmas, dtype=torch.float64, device=device)


def flat(values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``values`` broadcast to ``shape`` and flattened to one element per keypoint."""
    return values.expand(shape).reshape(-1)


def _blocked(count: int, length: int, make: Callable[[slice], torch.Tensor],
             device: torch.device, per_row: int | None = None) -> torch.Tensor:
    """``(count, length)`` float32 made ``make(block)`` by blocks of at most ``BLOCK_ELEMENTS``
    float64 scratch elements (``per_row`` of them per row; ``length`` by default)."""
    out = torch.empty((count, length), dtype=torch.float32, device=device)
    step = max(1, BLOCK_ELEMENTS // max(per_row or length, 1))
    for start in range(0, count, step):
        block = slice(start, min(start + step, count))
        out[block] = make(block)
    return out


def _window_rows(mu: torch.Tensor, sigma: torch.Tensor, length: int, drawn: torch.Tensor,
                 fraction: torch.Tensor | None, span: int) -> torch.Tensor:
    """``(M, length)`` float32 windowed profiles, ``span`` pixels evaluated per row from its
    window's left edge and added into a zeroed row (each pixel once: an exact store).

    ``fraction`` is udp's sub-pixel offset ``u - mu`` per row (None: the kernel at integers).
    """
    radius = sigma * 3
    left = torch.trunc(mu - radius)
    right = torch.trunc(mu + radius + 1)
    kernel_size = 2 * radius + 1
    kernel_len = torch.ceil(kernel_size)  # np.arange(0, kernel_size) has ceil(kernel_size) samples
    kernel_centre = torch.floor(kernel_size / 2)
    index = torch.arange(span, dtype=torch.float64, device=mu.device)  # position in the kernel
    pixels = left + index
    in_window = (index < kernel_len) & (pixels < right) & (pixels >= 0) & (pixels < length)
    distance = index - kernel_centre
    if fraction is None:
        values = torch.exp(-(distance**2) / (2 * sigma**2)).to(torch.float32)
    else:
        values = torch.exp(-((distance - fraction) ** 2) / (2 * sigma**2)).to(torch.float32)
    values = torch.where(in_window & drawn, values, torch.zeros((), dtype=torch.float32))
    rows = torch.zeros((mu.shape[0], length), dtype=torch.float32, device=mu.device)
    # Pixels off the axis add 0 to a clamped column; each pixel of the axis gets one value.
    return rows.scatter_add_(1, pixels.clamp(0, length - 1).long(), values)


def windowed_axes(args: RenderArgs, kind: str, coords: torch.Tensor, centre: torch.Tensor,
                  draw_ok: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Both axes' float32 profiles ``(B*N*K, length)`` of ``seed``/``msra`` (``kind`` "window")
    or ``udp`` ("offset") at the request's own centres, and whether each keypoint is outside."""
    shape = centre.shape[:-1]
    # Farther centres all give empty, outside rows.
    largest = max_sigma(args.sigmas, args.sample_sigmas)
    reach = max(args.size) + 3 * largest + 2
    mu = torch.trunc(centre).clamp(-reach, reach).to(torch.float64)
    sigma = flat(sigma_field(args, centre.device), shape)
    count = sigma.numel()
    lengths = (args.size[1], args.size[0])
    missed = [axis_outside(mu[..., axis].reshape(-1), sigma, length).view(shape)
              for axis, length in enumerate(lengths)]
    outside = missed[0] | missed[1]
    drawn = flat(~outside if draw_ok is None else draw_ok & ~outside, shape)
    span = math.ceil(6 * largest) + 2  # kernel_len = ceil(6 sigma + 1), with room for rounding
    tables = []
    for axis, length in enumerate(lengths):
        centres = mu[..., axis].reshape(-1)
        fraction = None
        if kind == "offset":
            # udp: the Gaussian at the float centre u, placed in the window of mu = int(u + 0.5).
            fraction = (coords[..., axis] - torch.trunc(centre[..., axis])).to(torch.float64)
            fraction = fraction.reshape(-1)

        def block(rows: slice, centres=centres, length=length, fraction=fraction):
            part = None if fraction is None else fraction[rows, None]
            if span < length:
                return _window_rows(centres[rows, None], sigma[rows, None], length,
                                    drawn[rows, None], part, span)
            # The window covers the axis: evaluate every pixel (same values, fewer operations).
            distance, _ = axis_profiles(centres[rows, None], sigma[rows, None], length, "offset")
            if part is not None:
                distance = distance - part
            values = torch.exp(-(distance**2) / (2 * sigma[rows, None] ** 2)).to(torch.float32)
            return torch.where(drawn[rows, None], values, torch.zeros((), dtype=torch.float32))

        tables.append(_blocked(count, length, block, centre.device, per_row=min(span, length)))
    return tables, outside


def udp_from_distances(args: RenderArgs, coords: torch.Tensor, centre: torch.Tensor, axis: int,
                       distances: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """udp's float32 rows ``exp(-(d - f)^2 / (2 sigma^2))``, one per keypoint, from a plan's
    ``distances`` table (``d`` from the kernel centre, ``+inf`` off the window: exactly 0) at
    ``index`` ``(B, N, K)``, with ``f = u - mu`` the sub-pixel offset. For maps small enough to
    tabulate, where evaluating the row whole costs fewer operations than placing a window."""
    shape = coords.shape[:-1]
    fraction = (coords[..., axis] - torch.trunc(centre[..., axis])).to(torch.float64).reshape(-1)
    two_var = flat(2 * sigma_field(args, coords.device) ** 2, shape)
    flat_index = index.reshape(-1)

    def block(rows: slice) -> torch.Tensor:
        values = distances.index_select(0, flat_index[rows])
        values = torch.exp(-((values - fraction[rows, None]) ** 2) / two_var[rows, None])
        return values.to(torch.float32)

    return _blocked(flat_index.numel(), distances.shape[1], block, coords.device)


def dark_axes(args: RenderArgs, coords: torch.Tensor,
              draw_ok: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Both axes of ``dark``: the Gaussian at the float centre over the whole axis.

    There is no window to tabulate (the centre is continuous), but the work is O(K * (H + W)),
    negligible beside the O(K * H * W) product.
    """
    device, shape = coords.device, coords.shape[:-1]
    sigma = sigma_field(args, device)
    # 3 sigma in float64, then rounded to the keypoints' dtype, as mmpose's radius.
    radius = (3 * sigma).to(coords.dtype)
    lengths = (args.size[1], args.size[0])
    outside = None
    for axis, length in enumerate(lengths):
        # mmpose tests the 3-sigma box in the keypoints' precision: left >= L, right < 0.
        left = coords[..., axis] - radius
        right = coords[..., axis] + radius + 1
        missed = (left >= length) | (right < 0)
        outside = missed if outside is None else outside | missed
    drawn = flat(~outside if draw_ok is None else draw_ok & ~outside, shape)
    two_var = flat(2 * sigma**2, shape)
    count = drawn.numel()
    tables = []
    for axis, length in enumerate(lengths):
        pixels = torch.arange(length, dtype=torch.float64, device=device)
        centres = coords[..., axis].to(torch.float64).reshape(-1)

        def block(rows: slice, pixels=pixels, centres=centres) -> torch.Tensor:
            values = torch.exp(-((pixels - centres[rows, None]) ** 2) / two_var[rows, None])
            return values.to(torch.float32) * drawn[rows, None]

        tables.append(_blocked(count, length, block, device))
    return tables, outside
