"""The separable core of the renderer: two 1D profiles and a weight per keypoint and instance.

Every method renders a Gaussian that factorises, ``g(x, y) = gx(x) * gy(y)``, so a keypoint's
whole heatmap is fixed by its row profile ``gy`` (length H) and column profile ``gx`` (length W).
This module computes those profiles for a whole batch at once; ``dense.py`` multiplies them out and
the ``separable`` wire codec ships them as they are.

Per method, with ``u`` the keypoint in heatmap pixels (see :func:`heatmap_coordinates`):

- ``seed``: centre ``mu = int(u)``; windowed kernel sampled at integers around ``mu``.
- ``msra``: centre ``mu = int(u + 0.5)``; same window and kernel (mmpose ``MSRAHeatmap``).
- ``udp``: window placed at ``mu = int(u + 0.5)``, Gaussian evaluated at the float centre ``u``
  (mmpose ``UDPHeatmap``).
- ``dark``: Gaussian at the float centre over the whole heatmap, no window (mmpose's unbiased
  encoding).

``int`` truncates toward zero, as Python's ``int()`` and numpy's ``astype(int64)`` do. Coordinate
arithmetic is done in the keypoints' precision (float32 on the wire), like mmpose on float32
keypoints, so that truncation edges fall exactly where theirs do.

Sigma is one value, one per keypoint, or one per sample, instance and keypoint
(``RenderArgs.sample_sigmas``). Per-element sigmas with few distinct values (real data: a handful
of box sizes or classes) still render from cached tables, one block per distinct value; many
distinct values are evaluated directly at the request's own centres, with the same formula.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch

from .errors import RenderArgumentError
from .kernels import PLAN_MAX_ELEMENTS, axis_profiles, plan_elements, window_plan
from .sigma import max_sigma
from .validate import RenderArgs, check_render_args

__all__ = [
    "Profiles",
    "TABLE_MAX_SIGMAS",
    "coordinate_limit",
    "heatmap_coordinates",
    "profiles_from_args",
    "render_profiles",
]


class Profiles(NamedTuple):
    """Per keypoint and instance, the two 1D profiles whose outer product is its heatmap.

    Attributes:
        rows: ``(B, N, K, H)`` float32, ``gy``; zero for keypoints that are not drawn.
        cols: ``(B, N, K, W)`` float32, ``gx``; zero for keypoints that are not drawn.
        weights: float32, ``(B, K)`` or ``(B, N, K)`` as the keypoints were given: the visibility,
            or 1 where none was given, and 0 for a drawn keypoint whose window misses the heatmap.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    weights: torch.Tensor


@functools.lru_cache(maxsize=256)
def _coordinate_scale(
    coords: str, method: str, size: tuple[int, int], input_size: tuple[int, int] | None,
    dtype: torch.dtype, device: torch.device,
) -> torch.Tensor:
    """The (x, y) factor of a coordinate space, as mmpose and the seed compute it."""
    height, width = size
    if coords == "normalized":
        ratio = [width, height]
    elif method == "udp":
        # UDP maps corner pixel to corner pixel: (input - 1) / (heatmap - 1).
        in_height, in_width = input_size
        ratio = [(in_width - 1) / (width - 1), (in_height - 1) / (height - 1)]
    else:
        in_height, in_width = input_size
        ratio = [in_width / width, in_height / height]
    # mmpose computes the ratio in float64 and divides float32 keypoints by its float32 rounding.
    return torch.tensor(ratio, dtype=torch.float64).to(dtype).to(device)


def coordinate_limit(size: tuple[int, int]) -> float:
    """A bound on heatmap coordinates beyond which every method leaves a keypoint outside.

    Sigma is at most ``max(H, W)``, so a window reaches at most ``3 sigma + 2`` pixels past an
    edge, ``4 max(H, W) + 2`` from the origin; anything farther is outside for every method,
    clamped or not.
    """
    return float(8 * max(size) + 16)


def heatmap_coordinates(args: RenderArgs) -> torch.Tensor:
    """Keypoints ``(B, N, K, 2)`` converted to heatmap pixels (pixel centres at integers).

    Coordinates farther than :func:`coordinate_limit` from the origin are clamped to it: they are
    off the heatmap either way, and finite keypoints near the float range (3.4e38 in float32)
    would otherwise scale to infinity and later to ``inf - inf = NaN``.
    """
    points = args.keypoints
    limit = coordinate_limit(args.size)
    if args.coords == "heatmap":
        return points.clamp(-limit, limit)
    if args.coords == "pixel" and args.input_size is None:
        raise RenderArgumentError("input_size", "required when coords='pixel'")
    scale = _coordinate_scale(
        args.coords, args.method, args.size, args.input_size, points.dtype, points.device
    )
    if args.coords == "normalized":
        # The seed's convention: x in [-1, 1], -1 the left edge, 0.5 * (x + 1) * W.
        converted = (points + 1) * 0.5 * scale
    else:
        converted = points / scale
    # Finite in, so the only non-finite values are overflows to +-inf, which clamp to +-limit.
    return converted.clamp_(-limit, limit)


# Per-element sigmas render from a table while they have at most this many distinct values.
TABLE_MAX_SIGMAS = 16


def _table_sigmas(args: RenderArgs) -> tuple[tuple[float, ...], torch.Tensor | None] | None:
    """The sigmas a table is built for and each element's slot in them, or None for direct.

    Shared sigmas: ``(args.sigmas, None)`` (slots are the keypoint index, built into the plan).
    Per element: the sorted distinct values and the ``(B, N, K)`` index of each, if few.
    """
    if args.sample_sigmas is None:
        return args.sigmas, None
    distinct, inverse = torch.unique(args.sample_sigmas, return_inverse=True)
    if distinct.numel() > TABLE_MAX_SIGMAS:
        return None
    return tuple(distinct.tolist()), inverse


def _windowed(args: RenderArgs, coords: torch.Tensor, draw_ok: torch.Tensor | None):
    """Profiles of ``seed``, ``msra`` and ``udp``: one table gather keyed by the integer centre.

    Returns ``(profiles (B, N, K, 2, max(H, W)), outside (B, N, K))``.
    """
    kind = "offset" if args.method == "udp" else "window"
    centre = coords if args.method == "seed" else coords + 0.5
    tabled = _table_sigmas(args)
    if tabled is None or plan_elements(tabled[0], args.size) > PLAN_MAX_ELEMENTS:
        profiles, outside = _windowed_directly(args, kind, centre, draw_ok)
    else:
        sigmas, slots = tabled
        plan = window_plan(sigmas, kind, args.size, coords.device, coords.dtype)
        if slots is None:
            offsets = plan.offsets  # (K or 1, 2)
        else:
            offsets = plan.offsets[slots.to(coords.device)]  # (B, N, K, 2)
        # .long() truncates toward zero, like int(); clamping first keeps far centres in range.
        rows = torch.clamp(centre, plan.lowest, plan.highest).long() + offsets
        outside = plan.outside[rows].any(dim=-1)
        if draw_ok is not None:
            rows = torch.where((draw_ok & ~outside)[..., None], rows, plan.empty_row)
        # Without visibility no masking is needed: a window that misses the heatmap is an
        # all-zero row on at least one axis, so its product is zero anyway.
        table = plan.table
        profiles = table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])
    if kind == "offset":
        # UDP: exp(-(d - f)^2 / (2 sigma^2)) with d the distance from the kernel centre and
        # f = u - mu the sub-pixel offset. +inf off the window gives exactly 0.
        fraction = (coords - torch.trunc(centre)).to(torch.float64)
        two_var = _two_variance(args, coords.device)
        profiles = torch.exp(-((profiles - fraction[..., None]) ** 2) / two_var).to(torch.float32)
    return profiles, outside


def _windowed_directly(
    args: RenderArgs, kind: str, centre: torch.Tensor, draw_ok: torch.Tensor | None
):
    """The windowed profiles evaluated at the request's own centres, for configurations whose
    table would be too large to keep (see ``PLAN_MAX_ELEMENTS``) or per-element sigmas with many
    distinct values; same formula, same values."""
    widest = max(args.size)
    # Farther centres all give empty, outside rows.
    reach = widest + 3 * max_sigma(args.sigmas, args.sample_sigmas) + 2
    mu = torch.trunc(centre).clamp(-reach, reach).to(torch.float64)
    sigma = _sigma_field(args, centre.device)[..., None]  # (K, 1) or (B, N, K, 1)
    fill = 0.0 if kind == "window" else math.inf
    profiles, outside = [], []
    for axis, length in enumerate(reversed(args.size)):  # x runs along W, y along H
        values, missed = axis_profiles(mu[..., axis, None], sigma, length, kind)
        profiles.append(torch.nn.functional.pad(values, (0, widest - length), value=fill))
        outside.append(missed)
    outside = outside[0] | outside[1]
    profiles = torch.stack(profiles, dim=-2)  # (B, N, K, 2, max(H, W)), as the table gives
    if draw_ok is not None:
        profiles = torch.where((draw_ok & ~outside)[..., None, None], profiles, fill)
    return profiles, outside


def _sigma_field(args: RenderArgs, device: torch.device) -> torch.Tensor:
    """Sigma in float64, broadcastable against ``(B, N, K)``: ``(K or 1,)`` or ``(B, N, K)``."""
    if args.sample_sigmas is not None:
        return args.sample_sigmas.to(device)
    return torch.tensor(args.sigmas, dtype=torch.float64, device=device)


def _two_variance(args: RenderArgs, device: torch.device) -> torch.Tensor:
    """``2 sigma^2`` in float64, broadcastable against profiles ``(B, N, K, 2, L)``."""
    return (2 * _sigma_field(args, device) ** 2)[..., None, None]


def _dark(args: RenderArgs, coords: torch.Tensor, draw_ok: torch.Tensor | None):
    """Profiles of ``dark``: the Gaussian at the float centre over the whole axis.

    There is no window to tabulate (the centre is continuous), but the work is O(K * (H + W)),
    negligible beside the O(K * H * W) product. Returns the same layout as :func:`_windowed`.
    """
    device = coords.device
    height, width = args.size
    # 3 sigma in float64, then rounded to the keypoints' dtype, as mmpose's radius.
    radius = (3 * _sigma_field(args, device)).to(coords.dtype)[..., None]
    # mmpose tests the 3-sigma box in the keypoints' precision: left >= W, right < 0.
    lengths = torch.tensor([width, height], dtype=coords.dtype, device=device)
    left = coords - radius
    right = coords + radius + 1
    outside = ((left >= lengths) | (right < 0)).any(dim=-1)
    drawn = ~outside if draw_ok is None else draw_ok & ~outside
    pixels = torch.arange(max(height, width), dtype=torch.float64, device=device)
    centre = coords.to(torch.float64)[..., None]  # (B, N, K, 2, 1)
    two_var = _two_variance(args, device)
    profiles = torch.exp(-((pixels - centre) ** 2) / two_var).to(torch.float32)
    return profiles * drawn[..., None, None], outside


def profiles_from_args(args: RenderArgs) -> Profiles:
    """:func:`render_profiles` on already checked arguments."""
    height, width = args.size
    coords = heatmap_coordinates(args)
    draw_ok = None if args.visibility is None else args.visibility >= 0.5
    method = _dark if args.method == "dark" else _windowed
    profiles, outside = method(args, coords, draw_ok)
    if args.visibility is None:
        weights = (~outside).to(torch.float32)
    else:
        weights = torch.where(draw_ok & outside, 0.0, args.visibility)
    if not args.has_instances:
        weights = weights.squeeze(1)
    return Profiles(rows=profiles[..., 1, :height], cols=profiles[..., 0, :width], weights=weights)


def render_profiles(
    keypoints: Any,
    size: tuple[int, int],
    sigma: Any,
    *,
    method: str = "msra",
    coords: str = "heatmap",
    input_size: tuple[int, int] | None = None,
    visibility: Any = None,
) -> Profiles:
    """Renders the 1D profiles of every keypoint without their dense product.

    ``heatmap[b, k] = max_n rows[b, n, k, :, None] * cols[b, n, k, None, :]`` is exactly what
    :func:`render_heatmaps` returns in float32.

    Args:
        keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y), torch tensor or numpy array.
        size: ``(H, W)`` of the heatmap (mmpose configs write ``(W, H)``).
        sigma: in heatmap pixels; broadcasts against ``keypoints.shape[:-1]``: a scalar, ``(K,)``
            per keypoint, ``(B, N, 1)`` per instance, ``(B, 1, 1)`` per sample, ``(B, N, K)``
            (for ``(B, K, 2)`` keypoints: ``(K,)``, ``(B, 1)``, ``(B, K)``).
        method: ``seed``, ``msra``, ``udp`` or ``dark``.
        coords: ``heatmap``, ``pixel`` (needs ``input_size``) or ``normalized``.
        input_size: ``(H_in, W_in)`` of the input image, for ``coords="pixel"``.
        visibility: ``(B, K)`` or ``(B, N, K)``; a keypoint is drawn when it is at least 0.5.

    Returns:
        :class:`Profiles` on the keypoints' device.
    """
    args = check_render_args(
        keypoints,
        size,
        sigma,
        method=method,
        coords=coords,
        input_size=input_size,
        visibility=visibility,
        dtype=torch.float32,
    )
    return profiles_from_args(args)
